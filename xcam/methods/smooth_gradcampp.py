"""Smooth Grad-CAM++ (Omeiza et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import make_generator
from ..errors import InputError, InputTypeError
from ..explanation import Explanation
from ..layers import LayerSpec
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from .base import CAMExplainer
from .gradcampp import gradcampp_weights

__all__ = ["SmoothGradCAMPlusPlus", "noise_sigma"]


def noise_sigma(inputs: Tensor, noise_level: float) -> Tensor:
    """Per-sample noise standard deviation ``noise_level * (max(x) - min(x))``, shape (B, 1, 1, 1)."""
    flat = inputs.reshape(inputs.shape[0], -1)
    span = flat.max(dim=1).values - flat.min(dim=1).values
    return (noise_level * span)[:, None, None, None]


@register_explainer("smoothgradcampp")
class SmoothGradCAMPlusPlus(CAMExplainer):
    """Smooth Grad-CAM++: Grad-CAM++ with gradients averaged over noisy copies of the input.

    For ``n_samples`` copies ``x + N(0, sigma^2)`` with ``sigma = noise_level * (max(x) - min(x))``
    per sample, the first, second and third powers of ``g = dS^c/dF_k`` and the activations ``F``
    are averaged over the copies. Alphas and weights follow Grad-CAM++ from those averages::

        alpha = mean(g^2) / (2 mean(g^2) + sum_ab mean(F)_k[a,b] * mean(g^3))
        w_k   = sum_ij alpha * ReLU(mean(g))

    and the map is ``ReLU( sum_k w_k F_k )`` with ``F`` from the *clean* input, so ``noise_level=0``
    gives exactly Grad-CAM++. (torch-cam instead uses the last noisy sample's gradient in the final
    map; other implementations average finished maps.) The class explained is chosen on the clean
    input and kept for every copy.

    The copies run as batched forward/backward passes of at most ``batch_size`` images. Noise is
    drawn one copy at a time from a generator seeded with ``seed``, so results do not depend on
    ``batch_size`` and two calls with the same seed are bit-identical.

    Args:
        model, layer, channels, fuse: as for :class:`~xcam.methods.GradCAM`.
        n_samples: number of noisy copies per image (default 16).
        noise_level: noise standard deviation relative to the input's value range (default 0.15).
        batch_size: most images per forward/backward pass (default 32).
        seed: seed of the noise generator; ``None`` draws a fresh seed from torch's global RNG.
        output: see :class:`~xcam.methods.Explainer`.
        eigen_smooth, aug_smooth: see :class:`~xcam.methods.CAMExplainer`.
    """

    deterministic = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | Sequence[LayerSpec] | None = None,
        n_samples: int = 16,
        noise_level: float = 0.15,
        batch_size: int = 32,
        seed: int | None = None,
        channels: Sequence[int] | None = None,
        *,
        output: OutputFn | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        fuse: str = "mean",
    ) -> None:
        super().__init__(model, layer=layer, channels=channels, output=output, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth, fuse=fuse)
        for arg, value in (("n_samples", n_samples), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputTypeError(f"{arg} must be an int, got {type(value).__name__}")
            if value < 1:
                raise InputError(f"{arg} must be >= 1, got {value}")
        if not isinstance(noise_level, (int, float)) or noise_level < 0:
            raise InputError(f"noise_level must be a number >= 0, got {noise_level!r}")
        self.n_samples = n_samples
        self.noise_level = float(noise_level)
        self.batch_size = batch_size
        self.seed = seed

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {**super().params(), "n_samples": self.n_samples, "noise_level": self.noise_level,
                "batch_size": self.batch_size, "seed": self.seed}

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model for ``batch_size`` images: ``batch_size * (self.n_samples + 1)``."""
        return batch_size * (self.n_samples + 1)

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Grad-CAM++ weights from gradients averaged over noisy copies (see the class doc)."""
        clean = self.run(inputs, target, gradients=False)
        # Noisy copies explain the class chosen on the clean input (or the same unit / callable).
        fixed = target.fixed(clean.indices)
        b = inputs.shape[0]
        gen = make_generator(self.seed, inputs.device)
        sigma = noise_sigma(inputs, self.noise_level)

        sums: dict[str, Tensor] = {}
        # Work items: (copy, sample range); consecutive items are grouped into passes of at most
        # batch_size images. Noise is drawn for a whole copy at once, in copy order.
        pending: list[tuple[Tensor, slice]] = []
        pending_size = 0

        def flush() -> None:
            nonlocal pending, pending_size
            if not pending:
                return
            xs = torch.cat([x for x, _ in pending])
            idx = torch.cat([torch.arange(b, device=inputs.device)[s] for _, s in pending])
            lp = self.run(xs, fixed.follow(idx), gradients=True)
            assert lp.grads is not None
            g, f = lp.grads, lp.features
            parts = {"g1": g, "g2": g * g, "g3": g * g * g, "f": f}
            for key, value in parts.items():
                acc = sums.setdefault(key, torch.zeros((b, *value.shape[1:]), dtype=value.dtype,
                                                       device=value.device))
                acc.index_add_(0, idx, value)
            pending, pending_size = [], 0

        for _ in range(self.n_samples):
            noise = torch.randn(inputs.shape, generator=gen, device=inputs.device,
                                dtype=inputs.dtype)
            noisy = inputs + noise * sigma
            for start in range(0, b, self.batch_size):
                stop = min(b, start + self.batch_size)
                if pending_size + (stop - start) > self.batch_size:
                    flush()
                pending.append((noisy[start:stop], slice(start, stop)))
                pending_size += stop - start
        flush()

        n = float(self.n_samples)
        g1, g2, g3, f_mean = (self.select(sums[k] / n) for k in ("g1", "g2", "g3", "f"))
        w = gradcampp_weights(f_mean.sum(dim=(2, 3)), g1, g2, g3)
        low = self.combine(w, self.select(clean.features))
        return self.finish(inputs, low, clean)
