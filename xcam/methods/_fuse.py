"""Maps of several layers fused into one (``layer=[...]`` of the CAM family).

Both peers normalize each layer's map before fusing, because raw maps of different layers are on
unrelated scales:

- pytorch-grad-cam (``target_layers=[...]``, ``BaseCAM.aggregate_multi_layers``): each layer's
  map (after ReLU) is min-max scaled per sample and resized to the input, the maps are averaged,
  and the mean is min-max scaled again. That is ``fuse="mean"`` here, the default.
- torch-cam (``CAM.fuse_cams``): each layer's map is min-max scaled (``normalized=True``), upsampled
  to the largest layer's size, and the element-wise maximum is taken. That is ``fuse="max"`` here,
  except that xcam upsamples to the input size (bilinear, ``align_corners=False``, as both do).

Fused maps are therefore in [0, 1] (not raw); :attr:`Explanation.low_res` is None (no single layer)
and :attr:`Explanation.layer` joins the layers' labels with ``+``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from ..postprocess import normalize, upsample

__all__ = ["FUSE_MODES", "check_fuse", "fuse_maps"]

FUSE_MODES = ("mean", "max")


def check_fuse(fuse: object) -> str:
    """``fuse=``: ``"mean"`` (pytorch-grad-cam) or ``"max"`` (torch-cam)."""
    if fuse not in FUSE_MODES:
        raise InputError(f"fuse must be one of {FUSE_MODES} (how maps of several layers combine: "
                         f"mean as pytorch-grad-cam, max as torch-cam), got {fuse!r}")
    return str(fuse)


def fuse_maps(low_res: list[Tensor], size: tuple[int, int], fuse: str) -> Tensor:
    """Fuse per-layer (B, h_l, w_l) maps into one (B, H, W) map at ``size``.

    ``mean``: ``n( (1/L) sum_l Up(n(M_l)) )``; ``max``: ``max_l Up(n(M_l))``, with ``n`` the
    per-sample min-max normalization and ``Up`` bilinear upsampling.
    """
    scaled = torch.stack([upsample(normalize(m.float()), size) for m in low_res])
    if fuse == "max":
        return scaled.amax(dim=0)
    return normalize(scaled.mean(dim=0))
