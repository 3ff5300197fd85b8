"""xcam: explain what PyTorch vision models look at.

Quick start::

    import xcam
    x, images = xcam.load_images(["cat.jpg"], preprocess=weights.transforms())
    explainer = xcam.create("gradcam", model, layer="layer4")
    explanation = explainer(x, targets=None)        # maps (B, H, W), raw
    xcam.viz.overlay(images[0], explanation.maps[0])

Public names are imported lazily, so ``import xcam`` stays cheap.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Literal, cast, overload

try:
    __version__ = version("xcam")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# `capture` is both a module and the function it defines: bind the function eagerly, after
# the submodule import has set the package attribute, so that `xcam.capture(...)` is callable.
from .capture import Capture, capture  # noqa: E402

if TYPE_CHECKING:  # what the lazy exports resolve to, for type checkers and IDEs
    from torch import nn

    from . import autolayer as autolayer
    from . import errors as errors
    from . import explanation as explanation
    from . import layers as layers
    from . import lfi as lfi
    from . import methods as methods
    from . import metrics as metrics
    from . import outputs as outputs
    from . import postprocess as postprocess
    from . import registry as _registry
    from . import registry as registry
    from . import targets as targets
    from . import viz as viz
    from .autolayer import find_gap_head as find_gap_head
    from .errors import DeadEndWarning as DeadEndWarning
    from .errors import DisconnectedError as DisconnectedError
    from .errors import InputRangeWarning as InputRangeWarning
    from .errors import NonFiniteError as NonFiniteError
    from .errors import OutputError as OutputError
    from .errors import XcamError as XcamError
    from .evaluation.data import LoadedImages as LoadedImages
    from .evaluation.data import load_images as load_images
    from .evaluation.models import Preprocess as Preprocess
    from .explanation import Explanation as Explanation
    from .layers import list_layers as list_layers
    from .layers import resolve_layer as resolve_layer
    from .methods.ablationcam import AblationCAM as AblationCAM
    from .methods.base import Explainer
    from .methods.cam import CAM as CAM
    from .methods.captum_adapter import CaptumAttribution as CaptumAttribution
    from .methods.captum_adapter import CaptumGradientShap, CaptumIntegratedGradients, CaptumSaliency
    from .methods.chefer import CheferRelevance as CheferRelevance
    from .methods.controls import BlankMap as BlankMap
    from .methods.controls import CenterGaussian as CenterGaussian
    from .methods.controls import RandomMap as RandomMap
    from .methods.controls import SobelEdges as SobelEdges
    from .methods.drise import DRISE as DRISE
    from .methods.eigencam import EigenCAM as EigenCAM
    from .methods.gradcam import GradCAM as GradCAM
    from .methods.gradcampp import GradCAMPlusPlus as GradCAMPlusPlus
    from .methods.gradient import InputGradient as InputGradient
    from .methods.hirescam import HiResCAM as HiResCAM
    from .methods.layercam import LayerCAM as LayerCAM
    from .methods.legrad import LeGrad as LeGrad
    from .methods.lficam import LFICAM as LFICAM
    from .methods.occlusion import Occlusion as Occlusion
    from .methods.onepass import explain as explain
    from .methods.opticam import OptiCAM as OptiCAM
    from .methods.polycam import PolyCAM as PolyCAM
    from .methods.rise import RISE as RISE
    from .methods.rollout import AttentionRollout as AttentionRollout
    from .methods.scorecam import ScoreCAM as ScoreCAM
    from .methods.shapleycam import ShapleyCAM as ShapleyCAM
    from .methods.smooth_gradcampp import SmoothGradCAMPlusPlus as SmoothGradCAMPlusPlus
    from .methods.smoothgrad import SmoothGrad as SmoothGrad
    from .methods.smoothgrad import VarGrad as VarGrad
    from .methods.xgradcam import XGradCAM as XGradCAM
    from .postprocess import normalize as normalize
    from .postprocess import upsample as upsample
    from .registry import list_explainers as list_explainers
    from .registry import list_metrics as list_metrics
    from .registry import register_explainer as register_explainer
    from .registry import register_metric as register_metric

    # `create` typed per registered name (tests/test_typing.py keeps this list in sync with the
    # registry); any other spelling (aliases, plug-ins) types as an Explainer.
    @overload
    def create(name: Literal["ablationcam"], model: nn.Module, **kwargs: Any) -> AblationCAM: ...
    @overload
    def create(name: Literal["blank"], model: nn.Module, **kwargs: Any) -> BlankMap: ...
    @overload
    def create(name: Literal["cam"], model: nn.Module, **kwargs: Any) -> CAM: ...
    @overload
    def create(name: Literal["center"], model: nn.Module, **kwargs: Any) -> CenterGaussian: ...
    @overload
    def create(name: Literal["chefer"], model: nn.Module, **kwargs: Any) -> CheferRelevance: ...
    @overload
    def create(name: Literal["drise"], model: nn.Module, **kwargs: Any) -> DRISE: ...
    @overload
    def create(name: Literal["edges"], model: nn.Module, **kwargs: Any) -> SobelEdges: ...
    @overload
    def create(name: Literal["eigencam"], model: nn.Module, **kwargs: Any) -> EigenCAM: ...
    @overload
    def create(name: Literal["gradcam"], model: nn.Module, **kwargs: Any) -> GradCAM: ...
    @overload
    def create(name: Literal["gradcampp"], model: nn.Module, **kwargs: Any) -> GradCAMPlusPlus: ...
    @overload
    def create(name: Literal["gradient"], model: nn.Module, **kwargs: Any) -> InputGradient: ...
    @overload
    def create(name: Literal["gradient_shap"], model: nn.Module, **kwargs: Any) -> CaptumGradientShap: ...
    @overload
    def create(name: Literal["hirescam"], model: nn.Module, **kwargs: Any) -> HiResCAM: ...
    @overload
    def create(
        name: Literal["integrated_gradients"], model: nn.Module, **kwargs: Any
    ) -> CaptumIntegratedGradients: ...
    @overload
    def create(name: Literal["layercam"], model: nn.Module, **kwargs: Any) -> LayerCAM: ...
    @overload
    def create(name: Literal["legrad"], model: nn.Module, **kwargs: Any) -> LeGrad: ...
    @overload
    def create(name: Literal["lficam"], model: nn.Module, **kwargs: Any) -> LFICAM: ...
    @overload
    def create(name: Literal["occlusion"], model: nn.Module, **kwargs: Any) -> Occlusion: ...
    @overload
    def create(name: Literal["opticam"], model: nn.Module, **kwargs: Any) -> OptiCAM: ...
    @overload
    def create(name: Literal["polycam"], model: nn.Module, **kwargs: Any) -> PolyCAM: ...
    @overload
    def create(name: Literal["random"], model: nn.Module, **kwargs: Any) -> RandomMap: ...
    @overload
    def create(name: Literal["rise"], model: nn.Module, **kwargs: Any) -> RISE: ...
    @overload
    def create(name: Literal["rollout"], model: nn.Module, **kwargs: Any) -> AttentionRollout: ...
    @overload
    def create(name: Literal["saliency"], model: nn.Module, **kwargs: Any) -> CaptumSaliency: ...
    @overload
    def create(name: Literal["scorecam"], model: nn.Module, **kwargs: Any) -> ScoreCAM: ...
    @overload
    def create(name: Literal["shapleycam"], model: nn.Module, **kwargs: Any) -> ShapleyCAM: ...
    @overload
    def create(name: Literal["smoothgrad"], model: nn.Module, **kwargs: Any) -> SmoothGrad: ...
    @overload
    def create(
        name: Literal["smoothgradcampp"], model: nn.Module, **kwargs: Any
    ) -> SmoothGradCAMPlusPlus: ...
    @overload
    def create(name: Literal["vargrad"], model: nn.Module, **kwargs: Any) -> VarGrad: ...
    @overload
    def create(name: Literal["xgradcam"], model: nn.Module, **kwargs: Any) -> XGradCAM: ...
    @overload
    def create(name: str, model: nn.Module, **kwargs: Any) -> Explainer: ...
    def create(name: str, model: nn.Module, **kwargs: Any) -> Explainer:
        """Build the explainer registered as ``name`` (see :func:`xcam.registry.create`)."""
        return cast(Explainer, _registry.create(name, model, **kwargs))

_EXPORTS = {
    "Explanation": "xcam.explanation",
    "explain": "xcam.methods.onepass",
    "normalize": "xcam.postprocess",
    "upsample": "xcam.postprocess",
    "create": "xcam.registry",
    "list_explainers": "xcam.registry",
    "list_metrics": "xcam.registry",
    "register_explainer": "xcam.registry",
    "register_metric": "xcam.registry",
    "list_layers": "xcam.layers",
    "resolve_layer": "xcam.layers",
    "find_gap_head": "xcam.autolayer",
    "XcamError": "xcam.errors",
    "OutputError": "xcam.errors",
    "DisconnectedError": "xcam.errors",
    "NonFiniteError": "xcam.errors",
    "InputRangeWarning": "xcam.errors",
    "DeadEndWarning": "xcam.errors",
    "load_images": "xcam.evaluation.data",
    "LoadedImages": "xcam.evaluation.data",
    "Preprocess": "xcam.evaluation.models",
    "CAM": "xcam.methods",
    "GradCAM": "xcam.methods",
    "AblationCAM": "xcam.methods",
    "ShapleyCAM": "xcam.methods",
    "PolyCAM": "xcam.methods",
    "OptiCAM": "xcam.methods",
    "RISE": "xcam.methods",
    "DRISE": "xcam.methods",
    "AttentionRollout": "xcam.methods",
    "CheferRelevance": "xcam.methods",
    "LeGrad": "xcam.methods",
    "GradCAMPlusPlus": "xcam.methods",
    "SmoothGradCAMPlusPlus": "xcam.methods",
    "LFICAM": "xcam.methods",
    "Occlusion": "xcam.methods",
    "SmoothGrad": "xcam.methods",
    "VarGrad": "xcam.methods",
    "InputGradient": "xcam.methods",
    "ScoreCAM": "xcam.methods",
    "LayerCAM": "xcam.methods",
    "XGradCAM": "xcam.methods",
    "HiResCAM": "xcam.methods",
    "EigenCAM": "xcam.methods",
    "CaptumAttribution": "xcam.methods",
    "BlankMap": "xcam.methods",
    "RandomMap": "xcam.methods",
    "CenterGaussian": "xcam.methods",
    "SobelEdges": "xcam.methods",
}
_SUBMODULES = {"evaluation", "methods", "metrics", "targets", "viz", "layers", "autolayer", "errors",
               "lfi", "registry", "postprocess", "explanation", "outputs", "compare", "cli", "data",
               "report", "models"}

__all__ = sorted(_EXPORTS) + ["Capture", "capture", "__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name or submodule on first use (PEP 562)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"xcam.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'xcam' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names and submodules."""
    return sorted(set(__all__) | _SUBMODULES)
