"""LFI-CAM (Lee et al., ICCV 2021): the network wrapper, its data and its training.

Public names (stable API)::

    from xcam.lfi import LFICAMNet, fit
    net = LFICAMNet(backbone, depth=4, width=None)     # backbone: a torchvision CNN classifier
    history = fit(net, train_data, mode="scratch" | "finetune" | "posthoc",
                  epochs=..., lr=..., seed=...)
    xcam.methods.LFICAM(net)(x) -> Explanation         # maps = attention upsampled to the input size

The LFI-CAM paper's stability metric (mean pairwise IoU of thresholded maps across models) is
:func:`xcam.metrics.stability`. Also: :class:`~xcam.lfi.data.ShapesDataset` (shapes on clutter
with object masks, generated offline), :func:`train_imagefolder` (behind ``xcam lfi train``),
:func:`load_checkpoint`, :func:`evaluate`.
"""

from __future__ import annotations

from .data import SHAPES, ShapesDataset, write_image_folder
from .network import (
    SUPPORTED_FAMILIES,
    AttentionMap,
    Cost,
    FeatureImportanceNetwork,
    LFICAMNet,
    channel_minmax,
    fin_input,
)
from .train import (
    MODES,
    History,
    TrainingError,
    build_backbone,
    evaluate,
    fit,
    load_checkpoint,
    train_imagefolder,
)

__all__ = [
    "LFICAMNet",
    "FeatureImportanceNetwork",
    "AttentionMap",
    "Cost",
    "SUPPORTED_FAMILIES",
    "channel_minmax",
    "fin_input",
    "fit",
    "evaluate",
    "History",
    "TrainingError",
    "MODES",
    "build_backbone",
    "load_checkpoint",
    "train_imagefolder",
    "ShapesDataset",
    "SHAPES",
    "write_image_folder",
]
