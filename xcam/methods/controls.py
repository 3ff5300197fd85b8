"""Control explainers: maps that ignore the model, to calibrate metrics and sanity checks.

A metric that scores these as well as a real explainer does not measure faithfulness: a blank
(all-zero) map carries no information at all and must score at the bottom of every localization
metric, a random map is the floor, a centered Gaussian exposes a center bias in the data, and the
Sobel edge magnitude exposes metrics that reward image structure rather than the model's evidence
(Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, show that several methods behave
like an edge detector). Each runs the model once, without gradients, only to report ``targets``
and ``scores``; in :func:`xcam.explain` they read those of the pass they share with the others.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_seed, make_generator
from ..errors import InputError
from ..explanation import Explanation
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from .base import Explainer, SharedPass, run_pass

__all__ = ["BlankMap", "RandomMap", "CenterGaussian", "SobelEdges"]

class _Control(Explainer):
    """Base of the controls: one clean pass for ``targets`` and ``scores``, maps from the input."""

    needs_gradients = False
    needs_layer = False
    is_control = True

    def control_maps(self, inputs: Tensor) -> Tensor:
        """(B, H, W) maps for a batch; independent of the model."""
        raise NotImplementedError

    shares_pass = True

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """The control's maps; the model runs once, only for ``targets`` and ``scores``."""
        return self.explain_pass(inputs, target, run_pass(self.model, inputs, target, []))

    def explain_pass(self, inputs: Tensor, target: Target, shared: SharedPass) -> Explanation:
        """The control's maps, with ``targets`` and ``scores`` of the (shared) clean pass."""
        return self.make_explanation(self.control_maps(inputs), shared.indices, shared.scores)


@register_explainer("blank")
class BlankMap(_Control):
    """A constant all-zero map: no evidence anywhere, the bottom row of every table.

    Localization metrics score it as having no answer: the pointing game 0 (a constant map has no
    maximum), MaxBoxAcc 0 (no pixel lies strictly above any threshold), the energy pointing game
    and relevance mass at chance (the ground truth's share of the image). A metric that gives it
    more has a definition problem (issue 12: MaxBoxAcc with ``>=`` gave a blank map 0.476 on
    ImageNet). The map itself needs no forward pass; the model runs once, as for every control,
    only to report ``targets`` and ``scores``.

    Args:
        model: the model (run once for ``targets`` and ``scores`` only).
    """

    constant_maps = True  # constant by design: no dead-end warning

    def control_maps(self, inputs: Tensor) -> Tensor:
        """The (B, H, W) control maps of the class docstring; the model is not used."""
        b, _, h, w = inputs.shape
        return torch.zeros((b, h, w), dtype=torch.float32, device=inputs.device)


@register_explainer("random")
class RandomMap(_Control):
    """Uniform random noise in [0, 1), i.i.d. per pixel: the floor every explainer must beat.

    Args:
        model: the model (run once for ``targets`` and ``scores`` only).
        seed: seed of the noise; the same seed gives bit-identical maps. ``None`` draws one from
            torch's global RNG.
    """

    deterministic = False

    def __init__(self, model: nn.Module, seed: int | None = None, *, output: OutputFn | None = None) -> None:
        super().__init__(model, output=output)
        self.seed = check_seed(seed)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"seed": self.seed}

    def control_maps(self, inputs: Tensor) -> Tensor:
        """The (B, H, W) control maps of the class docstring; the model is not used."""
        b, _, h, w = inputs.shape
        gen = make_generator(self.seed, inputs.device)
        return torch.rand((b, h, w), generator=gen, device=inputs.device, dtype=torch.float32)


@register_explainer("center")
class CenterGaussian(_Control):
    """A Gaussian centered on the image, the same for every sample (center-bias control).

    ``map[i, j] = exp( -(i - c_y)^2 / (2 (sigma H)^2) - (j - c_x)^2 / (2 (sigma W)^2) )`` with
    ``c = ((H - 1) / 2, (W - 1) / 2)``, so the peak is 1 at the center.

    Args:
        model: the model (run once for ``targets`` and ``scores`` only).
        sigma: standard deviation as a fraction of the image height and width (default 0.25).
    """

    def __init__(self, model: nn.Module, sigma: float = 0.25, *, output: OutputFn | None = None) -> None:
        super().__init__(model, output=output)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise InputError(f"sigma must be a number > 0 (a fraction of the image size), got {sigma!r}")
        self.sigma = float(sigma)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"sigma": self.sigma}

    def control_maps(self, inputs: Tensor) -> Tensor:
        """The (B, H, W) control maps of the class docstring; the model is not used."""
        b, _, h, w = inputs.shape
        dev = inputs.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) - (h - 1) / 2) / (self.sigma * h)
        xs = (torch.arange(w, device=dev, dtype=torch.float32) - (w - 1) / 2) / (self.sigma * w)
        gauss = torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
        return gauss.expand(b, h, w).clone()


@register_explainer("edges")
class SobelEdges(_Control):
    """Sobel edge magnitude of the image: ``sqrt(G_x^2 + G_y^2)`` of the channel mean.

    ``G_x`` and ``G_y`` are the 3x3 Sobel responses (``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` and its
    transpose) of the gray image ``mean_c x_c``, with the border replicated (``scipy.ndimage.sobel``
    with ``mode="nearest"``), so a constant image gives 0 everywhere, borders included.

    Args:
        model: the model (run once for ``targets`` and ``scores`` only).
    """

    def control_maps(self, inputs: Tensor) -> Tensor:
        """The (B, H, W) control maps of the class docstring; the model is not used."""
        gray = inputs.float().mean(dim=1, keepdim=True)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=inputs.device)
        kernels = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3)
        grads = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
        return torch.sqrt((grads * grads).sum(dim=1))


#: Registered names of the control explainers (maps that ignore the model), derived from the
#: ``is_control`` flag; prefer :func:`xcam.registry.list_controls`, which also sees new controls.
CONTROL_NAMES = tuple(
    cls.name for cls in (BlankMap, RandomMap, CenterGaussian, SobelEdges) if cls.is_control
)
