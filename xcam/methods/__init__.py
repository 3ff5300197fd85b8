"""Explainers. Every module in this package registers its classes on import.

Public names (stable API)::

    from xcam.methods import (CAM, GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus, SmoothGrad,
                              Occlusion, LFICAM, ScoreCAM, LayerCAM, XGradCAM, HiResCAM, EigenCAM,
                              CaptumAttribution, InputGradient, RandomMap, CenterGaussian, SobelEdges)
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import CAMExplainer, Explainer
from .cam import CAM
from .gradcam import GradCAM
from .gradcampp import GradCAMPlusPlus
from .smooth_gradcampp import SmoothGradCAMPlusPlus

__all__ = ["Explainer", "CAMExplainer", "CAM", "GradCAM", "GradCAMPlusPlus", "SmoothGradCAMPlusPlus"]

# Import every other module of the package so that a new method is one new file: its
# @register_explainer class reaches xcam.create() and the contract tests without edits here.
for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_module, "__all__", ()):
            globals()[_name] = getattr(_module, _name)
            if _name not in __all__:
                __all__.append(_name)
