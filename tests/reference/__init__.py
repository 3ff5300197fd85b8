"""Slow, obviously-correct references written from the papers' equations (nothing shared with xcam).

One sample, one window, one channel or one noisy copy at a time; plain ``torch.autograd.grad``;
float64 accumulation. ``from tests import reference as ref`` gives every reference.
"""

from .cams import cam, eigencam, gradcam, gradcampp, hirescam, layercam, scorecam, xgradcam
from .capture import features_and_grad
from .perturbation import input_gradient, occlusion, score

__all__ = ["cam", "eigencam", "features_and_grad", "gradcam", "gradcampp", "hirescam", "input_gradient",
           "layercam", "occlusion", "score", "scorecam", "xgradcam"]
