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
from typing import Any

try:
    __version__ = version("xcam")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# `capture` is both a module and the function it defines: bind the function eagerly, after
# the submodule import has set the package attribute, so that `xcam.capture(...)` is callable.
from .capture import Capture, capture  # noqa: E402

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
    "find_gap_head": "xcam.layers",
    "XcamError": "xcam.errors",
    "OutputError": "xcam.errors",
    "DisconnectedError": "xcam.errors",
    "NonFiniteError": "xcam.errors",
    "InputRangeWarning": "xcam.errors",
    "DeadEndWarning": "xcam.errors",
    "load_images": "xcam.data",
    "LoadedImages": "xcam.data",
    "Preprocess": "xcam.models",
    "CAM": "xcam.methods",
    "GradCAM": "xcam.methods",
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
_SUBMODULES = {"methods", "metrics", "targets", "viz", "layers", "errors", "lfi", "registry",
               "postprocess", "explanation", "outputs", "compare", "cli", "data", "report", "models", "incremental"}

__all__ = sorted(_EXPORTS) + ["Capture", "capture", "__version__"]


def __getattr__(name: str) -> Any:
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
    return sorted(set(__all__) | _SUBMODULES)
