"""Opti-CAM (Zhang, Torres, Sicre, Avrithis & Ayache, CVIU 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_number, check_positive_int, check_seed, eval_mode, make_generator
from ..capture import capture
from ..explanation import Explanation
from ..layers import LayerSpec
from ..outputs import OutputFn
from ..postprocess import upsample
from ..registry import register_explainer
from ..targets import Target
from .base import CAMExplainer

__all__ = ["OptiCAM", "minmax"]


def minmax(maps: Tensor) -> Tensor:
    """Per-sample min-max normalization of (B, H, W) maps to [0, 1]; a constant map becomes 0."""
    flat = maps.flatten(1)
    lo = flat.amin(dim=1)[:, None, None]
    span = flat.amax(dim=1)[:, None, None] - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, 1.0), 0.0)


@register_explainer("opticam")
class OptiCAM(CAMExplainer):
    """Opti-CAM: channel weights optimized per image so that the masked input keeps its score.

    Zhang, Torres, Sicre, Avrithis & Ayache, "Opti-CAM: Optimizing saliency maps for
    interpretability", Computer Vision and Image Understanding, 2024 (arXiv 2301.07002). With
    ``F_k`` the layer's feature maps on the clean input, ``Up`` bilinear upsampling to the input
    size and ``n`` the per-image min-max normalization to [0, 1] (eq. 4-6)::

        S(u) = sum_k softmax(u)_k F_k
        u* = argmax_u  S_c( x ⊙ n(Up(S(u))) )          (Adam, ``steps`` steps, rate ``lr``)
        map = n(Up(S(u*)))

    ``S_c`` is the target score (the logit for class targets, the paper's choice; a unit's or a
    callable's score otherwise), on the masked input; ``targets=None`` explains the clean input's
    top class throughout. ``u`` starts at 0 (uniform channel weights, as in the paper) plus, when
    ``init_std > 0``, Gaussian noise of that deviation from a generator seeded with ``seed``. Every
    sample has its own ``u``; Adam acts element-wise, so a batch equals its samples one by one.
    Gradients flow to ``u`` only: the model's ``.grad`` are left as they were.

    Cost: one forward pass, then ``steps`` forward and backward passes of the batch.

    Args:
        model, layer, channels, fuse: as for :class:`~xcam.methods.GradCAM`.
        steps: optimization steps (default 100, the paper's).
        lr: Adam's learning rate (default 0.1, the paper's).
        init_std: deviation of the random start of ``u`` (default 0: the paper's uniform start).
        seed: seed of that random start; ``None`` draws one from torch's global RNG.
        output: see :class:`~xcam.methods.Explainer`.
        eigen_smooth, aug_smooth: see :class:`~xcam.methods.CAMExplainer`.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | Sequence[LayerSpec] | None = None,
        channels: Sequence[int] | None = None,
        steps: int = 100,
        lr: float = 0.1,
        init_std: float = 0.0,
        seed: int | None = None,
        *,
        output: OutputFn | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        fuse: str = "mean",
    ) -> None:
        super().__init__(model, layer, channels, output=output, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth, fuse=fuse)
        self.steps = check_positive_int("steps", steps)
        self.lr = check_number("lr", lr, minimum=0.0)
        self.init_std = check_number("init_std", init_std, minimum=0.0)
        self.seed = check_seed(seed)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {**super().params(), "steps": self.steps, "lr": self.lr, "init_std": self.init_std,
                "seed": self.seed}

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model for a batch of ``batch_size``: ``B * (steps + 1)``."""
        return batch_size * (self.steps + 1)

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Optimize the channel weights with Adam, then build the normalized map."""
        lp = self.run(inputs, target, gradients=False)
        features = self.select(lp.features).float()
        b, c = features.shape[:2]
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        u0 = torch.zeros((b, c), device=inputs.device)
        if self.init_std > 0:
            gen = make_generator(self.seed, inputs.device)
            u0 = u0 + self.init_std * torch.randn((b, c), generator=gen, device=inputs.device)
        u = u0.requires_grad_(True)
        optimizer = torch.optim.Adam([u], lr=self.lr)
        fixed = target.fixed(lp.indices)
        taps = fixed.taps(self.model)
        with torch.enable_grad(), eval_mode(self.model):
            for _ in range(self.steps):
                mask = minmax(upsample(torch.einsum("bc,bchw->bhw", torch.softmax(u, dim=1), features),
                                       size))
                with capture(self.model, taps, eval_mode=False) as cap:
                    output = self.model(inputs * mask[:, None].to(inputs.dtype))
                    score = fixed.score(output, cap)
                (grad,) = torch.autograd.grad(-score.sum(), u)
                optimizer.zero_grad(set_to_none=True)
                u.grad = grad
                optimizer.step()
        with torch.no_grad():
            weights = torch.softmax(u, dim=1)
            # the paper's map has no ReLU (softmax weights); eigen_smooth projects the weighted features
            low = (self.combine(weights, features) if self.eigen_smooth
                   else torch.einsum("bc,bchw->bhw", weights, features))
            maps = minmax(upsample(low, size))
        return self.make_explanation(maps, lp.indices, lp.scores, low_res=low,
                                     layer=self._tap.label if self._tap else None)
