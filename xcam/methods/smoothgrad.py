"""SmoothGrad (Smilkov et al., 2017), its squared form and VarGrad (Adebayo et al., 2018)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import (
    check_channels_last,
    check_noise_level,
    check_positive_int,
    check_seed,
    make_generator,
)
from ..errors import InputError, InputTypeError
from ..explanation import Explanation
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from ._perturb import channels_last_for, clean_pass
from .base import Explainer
from .gradient import InputGradient, check_reduction, input_gradients, reduce_channels
from .smooth_gradcampp import noise_sigma

__all__ = ["SmoothGrad", "VarGrad"]


@register_explainer("smoothgrad")
class SmoothGrad(Explainer):
    """SmoothGrad: an explainer's maps averaged over noisy copies of the input.

    Smilkov, Thorat, Kim, Viegas & Wattenberg, "SmoothGrad: removing noise by adding noise", 2017.
    With ``n = n_samples`` copies ``x + eps_i``, ``eps_i ~ N(0, sigma^2)`` and
    ``sigma = noise_level * (max(x) - min(x))`` per sample::

        plain     M(x) = 1/n sum_i G(x + eps_i)
        squared   M(x) = 1/n sum_i G(x + eps_i)^2          (SmoothGrad-Squared, Hooker et al. 2019)
        VarGrad   M(x) = 1/n sum_i (G(x + eps_i) - 1/n sum_j G(x + eps_j))^2   (Adebayo et al.)

    For the default wrapped explainer, the input gradient, ``G = dS^c/dx`` is the (B, C, H, W)
    gradient and the statistic is taken per pixel and channel *before* the channel reduction
    (``abs_sum`` by default: ``|M|.sum(channel)``; ``abs_max`` and ``sum`` as options), as in the
    authors' code (captum's ``NoiseTunnel(Saliency())`` with its default ``abs=True`` averages
    ``|g|`` instead). For any other wrapped explainer (Grad-CAM, ...) ``G`` is its (B, H, W)
    map, and ``low_res`` is the same statistic of its low-resolution maps. With ``n_samples=1`` and
    ``noise_level=0`` the plain form equals the wrapped explainer.

    The class explained is chosen on the clean input (one forward pass without gradients, which also
    gives ``scores``) and kept for every copy. Noise is drawn one copy at a time from a generator
    seeded with ``seed``, so two calls with the same seed are bit-identical; the copies then run in
    batches of at most ``batch_size`` images.

    Args:
        model: the model to explain.
        explainer: a gradient explainer built on the same model; ``None`` = the input gradient.
        n_samples: number of noisy copies per image (default 25).
        noise_level: noise standard deviation relative to the input's value range (default 0.15).
        squared: average the squares (SmoothGrad-Squared).
        batch_size: most images per forward/backward pass (default 32).
        seed: seed of the noise; ``None`` draws one from torch's global RNG.
        vargrad: return the variance over the copies (VarGrad) instead of the mean.
        reduction: channel reduction of the default input gradient: ``"abs_sum"`` (default),
            ``"abs_max"`` or ``"sum"``. With another explainer, set it on that explainer.
        channels_last: memory format of the default input gradient's batches (``None``: automatic,
            channels-last for float32 on the CPU, where it is faster, and the plain layout for a
            model that cannot run in it).
        output: see :class:`~xcam.methods.Explainer`; passed on to the default input gradient.
    """

    needs_layer = False
    deterministic = False

    def __init__(
        self,
        model: nn.Module,
        explainer: Explainer | None = None,
        n_samples: int = 25,
        noise_level: float = 0.15,
        squared: bool = False,
        batch_size: int = 32,
        seed: int | None = None,
        *,
        vargrad: bool = False,
        reduction: str | None = None,
        channels_last: bool | None = None,
        output: OutputFn | None = None,
    ) -> None:
        super().__init__(model, output=output)
        check_channels_last(channels_last)
        if explainer is None:
            explainer = InputGradient(model, check_reduction("abs_sum" if reduction is None else reduction),
                                      channels_last=channels_last, output=output)
        else:
            if not isinstance(explainer, Explainer):
                raise InputTypeError(
                    f"explainer must be an xcam explainer (e.g. xcam.methods.GradCAM(model)) or None "
                    f"for the input gradient, got {type(explainer).__name__}"
                )
            if explainer.model is not model:
                raise InputError(
                    "explainer was built on a different model than the one SmoothGrad explains; "
                    "build both on the same model instance"
                )
            for arg, value in (("reduction", reduction), ("channels_last", channels_last)):
                if value is not None:
                    raise InputError(
                        f"{arg}={value!r} applies to the default input gradient only; for another "
                        f"explainer set it there, e.g. explainer=InputGradient(model, {arg}={value!r})"
                    )
        if squared and vargrad:
            raise InputError("squared=True and vargrad=True exclude each other; choose one statistic")
        self.explainer = explainer
        self.n_samples = check_positive_int("n_samples", n_samples)
        self.noise_level = check_noise_level(noise_level)
        self.squared = bool(squared)
        self.vargrad = bool(vargrad)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = check_seed(seed)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"explainer": self.explainer.name, **self.explainer.params(),
                "n_samples": self.n_samples, "noise_level": self.noise_level,
                "squared": self.squared, "vargrad": self.vargrad,
                "batch_size": self.batch_size, "seed": self.seed}

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model: one clean pass plus ``n_samples`` explainer passes."""
        return batch_size + self.n_samples * self.explainer.forward_passes(batch_size)

    def _noisy_batches(self, inputs: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``(copies, samples)`` of at most ``batch_size`` noisy copies, copy by copy."""
        b = inputs.shape[0]
        sigma = noise_sigma(inputs, self.noise_level)
        gen = make_generator(self.seed, inputs.device)
        rows = torch.arange(b, device=inputs.device)
        parts: list[Tensor] = []
        samples: list[Tensor] = []
        size = 0
        for _ in range(self.n_samples):
            noise = torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=inputs.dtype)
            noisy = inputs + noise * sigma
            start = 0
            while start < b:
                take = min(b - start, self.batch_size - size)
                parts.append(noisy[start:start + take])
                samples.append(rows[start:start + take])
                size += take
                start += take
                if size == self.batch_size:
                    yield torch.cat(parts), torch.cat(samples)
                    parts, samples, size = [], [], 0
        if parts:
            yield torch.cat(parts), torch.cat(samples)

    def _statistic(self, s1: Tensor, s2: Tensor) -> Tensor:
        n = float(self.n_samples)
        if self.vargrad:
            return (s2 / n - (s1 / n) ** 2).clamp_min(0)
        return s2 / n if self.squared else s1 / n

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Average (or the variance of) the explainer's maps over noisy copies of the batch."""
        indices, scores, fixed = clean_pass(self.model, inputs, target)
        fixed = fixed.with_output(self.explainer.output)
        b = inputs.shape[0]
        sums: dict[str, Tensor] = {}

        def add(key: str, value: Tensor, samples: Tensor) -> None:
            for suffix, v in (("1", value), ("2", value * value)):
                acc = sums.get(key + suffix)
                if acc is None:
                    acc = sums[key + suffix] = value.new_zeros((b, *value.shape[1:]))
                acc.index_add_(0, samples, v)

        layer = None
        fast = isinstance(self.explainer, InputGradient)
        flag = getattr(self.explainer, "channels_last", None)
        for copies, samples in self._noisy_batches(inputs):
            if fast:
                cl = channels_last_for(flag, inputs, self.model)  # the plain layout after a fallback
                _, _, grads = input_gradients(self.model, copies, fixed.follow(samples), cl,
                                              explicit=flag is True)
                add("g", grads, samples)
            else:
                # explain(), not __call__: the copies need no input checks, and a noisy copy's
                # constant map is no news (the averaged map is checked by SmoothGrad's own call)
                exp = self.explainer.explain(copies, fixed.follow(samples))
                add("m", exp.maps, samples)
                if exp.low_res is not None:
                    add("l", exp.low_res, samples)
                layer = exp.layer

        if fast:
            stat = self._statistic(sums["g1"], sums["g2"])
            maps, low_res = reduce_channels(stat, self.explainer.reduction), None  # type: ignore[attr-defined]
        else:
            maps = self._statistic(sums["m1"], sums["m2"])
            low_res = self._statistic(sums["l1"], sums["l2"]).float() if "l1" in sums else None
        return self.make_explanation(maps, indices, scores, low_res=low_res, layer=layer)


@register_explainer("vargrad")
class VarGrad(SmoothGrad):
    """VarGrad: the variance of an explainer's maps over noisy copies of the input.

    Adebayo, Gilmer, Goodfellow & Kim, "Local explanation methods for deep neural networks lack
    sensitivity to parameter values", ICLR workshop 2018:
    ``M(x) = 1/n sum_i (G(x + eps_i) - 1/n sum_j G(x + eps_j))^2`` (population variance), with the
    noise of :class:`SmoothGrad`. Same as ``SmoothGrad(..., vargrad=True)``.
    """

    def __init__(
        self,
        model: nn.Module,
        explainer: Explainer | None = None,
        n_samples: int = 25,
        noise_level: float = 0.15,
        batch_size: int = 32,
        seed: int | None = None,
        *,
        reduction: str | None = None,
        channels_last: bool | None = None,
        output: OutputFn | None = None,
    ) -> None:
        super().__init__(model, explainer, n_samples=n_samples, noise_level=noise_level,
                         batch_size=batch_size, seed=seed, vargrad=True, reduction=reduction,
                         channels_last=channels_last, output=output)
