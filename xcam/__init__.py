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
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("xcam")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# `capture` is both a module and the function it defines: bind the function eagerly, after
# the submodule import has set the package attribute, so that `xcam.capture(...)` is callable.
from .capture import Capture, capture  # noqa: E402

if TYPE_CHECKING:  # what the lazy exports resolve to, for type checkers and IDEs
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
    from .methods.cam import CAM as CAM
    from .methods.captum_adapter import CaptumAttribution as CaptumAttribution
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
    from .methods.lficam import LFICAM as LFICAM
    from .methods.occlusion import Occlusion as Occlusion
    from .methods.opticam import OptiCAM as OptiCAM
    from .methods.polycam import PolyCAM as PolyCAM
    from .methods.rise import RISE as RISE
    from .methods.scorecam import ScoreCAM as ScoreCAM
    from .methods.shapleycam import ShapleyCAM as ShapleyCAM
    from .methods.smooth_gradcampp import SmoothGradCAMPlusPlus as SmoothGradCAMPlusPlus
    from .methods.smoothgrad import SmoothGrad as SmoothGrad
    from .methods.smoothgrad import VarGrad as VarGrad
    from .methods.xgradcam import XGradCAM as XGradCAM
    from .postprocess import normalize as normalize
    from .postprocess import upsample as upsample
    from .registry import create as create
    from .registry import list_explainers as list_explainers
    from .registry import list_metrics as list_metrics
    from .registry import register_explainer as register_explainer
    from .registry import register_metric as register_metric

_EXPORTS = {
    "Explanation": "xcam.explanation",
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
