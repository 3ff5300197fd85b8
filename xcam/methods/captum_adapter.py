"""An adapter that turns any captum attribution method into an xcam explainer."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_positive_int, check_seed, eval_mode
from ..capture import capture
from ..errors import InputError, InputTypeError, XcamError
from ..explanation import Explanation
from ..layers import resolve_layer
from ..outputs import OutputFn, logits
from ..postprocess import upsample
from ..registry import register_explainer
from ..targets import Target
from ._perturb import clean_pass, disconnected_error
from .base import Explainer
from .gradient import check_reduction, reduce_channels

__all__ = ["CaptumAttribution", "CaptumSaliency", "CaptumIntegratedGradients", "CaptumGradientShap"]


class _Logits(nn.Module):
    """``model`` with its output read through :func:`xcam.outputs.logits` (captum needs a tensor).

    A module, not a function, so that captum methods that hook the model's modules (guided
    backprop, DeepLift, layer methods) find them: they are this wrapper's submodules.
    """

    def __init__(self, model: nn.Module, output_fn: OutputFn | None) -> None:
        super().__init__()
        self.model = model
        self.output_fn = output_fn

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return logits(self.model(*args, **kwargs), self.output_fn)


def _autograd_dead_end(err: RuntimeError) -> bool:
    text = str(err)
    return ("does not require grad" in text or "not have been used in the graph" in text
            or "does not have a grad_fn" in text)


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's and numpy's global RNGs inside the block (captum draws from both), then restore."""
    if seed is None:
        yield
        return
    import numpy as np  # captum's own dependency; used only to save and restore its RNG state

    state = np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(state)


class CaptumAttribution(Explainer):
    """Any captum attribution method as an xcam explainer returning an :class:`Explanation`.

    The captum object is built on every call as ``attribution_cls(forward_func, **init_kwargs)``
    and run as ``.attribute(inputs, target=..., **attribute_kwargs)``; its (B, C, H, W) result is
    reduced over channels (``reduction``, default ``"sum"``, which keeps captum's signs and the
    completeness of integrated gradients). A layer attribution with a smaller spatial size (e.g.
    ``LayerGradCam``) is reduced the same way, kept as ``low_res`` and upsampled bilinearly.

    Targets: class targets (``None`` = the clean input's top class) become captum's ``target``;
    a callable or a unit target (:func:`xcam.targets.channel`) becomes the forward function's
    output, so captum explains exactly that score. The model runs in eval mode; captum computes
    gradients with ``torch.autograd.grad``, so no parameter's ``.grad`` changes.

    Args:
        model: the model to explain.
        attribution_cls: a captum class such as ``captum.attr.IntegratedGradients``, or any callable
            ``forward_func -> object with .attribute`` (e.g. ``lambda f: NoiseTunnel(Saliency(f))``).
        reduction: ``"sum"`` (default), ``"abs_sum"`` or ``"abs_max"`` over channels.
        init_kwargs: extra constructor arguments (e.g. ``{"layer": model.layer4}``).
        seed: seed of torch's and numpy's global RNGs during the call (restored afterwards), which
            makes the stochastic captum methods (GradientShap, NoiseTunnel) reproducible.
        output: see :class:`~xcam.methods.Explainer`; for class targets captum runs the model
            wrapped so that it returns :func:`xcam.outputs.logits` of its output.
        **attribute_kwargs: passed to ``attribute`` (``n_steps=``, ``baselines=``, ...).

    Example:
        >>> from captum.attr import IntegratedGradients
        >>> ig = CaptumAttribution(model, IntegratedGradients, n_steps=32)
        >>> ig(x, targets=[3, 5]).maps.shape  # (2, H, W)
    """

    needs_layer = False
    deterministic = False

    def __init__(
        self,
        model: nn.Module,
        attribution_cls: Callable[..., Any],
        *,
        reduction: str = "sum",
        init_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        output: OutputFn | None = None,
        **attribute_kwargs: Any,
    ) -> None:
        super().__init__(model, output=output)
        if not callable(attribution_cls):
            raise InputTypeError(
                f"attribution_cls must be a captum attribution class (e.g. captum.attr.Saliency) "
                f"or a callable forward_func -> attribution, got {type(attribution_cls).__name__}"
            )
        if "target" in attribute_kwargs:
            raise InputError(
                "target is set by xcam from the call's targets=; pass it as explainer(x, targets=...)"
            )
        self.attribution_cls = attribution_cls
        self.reduction = check_reduction(reduction)
        self.init_kwargs = dict(init_kwargs or {})
        self.seed = check_seed(seed)
        self.attribute_kwargs = attribute_kwargs

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        name = getattr(self.attribution_cls, "__name__", repr(self.attribution_cls))
        kwargs = {k: v for k, v in self.attribute_kwargs.items() if not isinstance(v, Tensor)}
        return {"attribution": name, "reduction": self.reduction, "seed": self.seed, **kwargs}

    def forward_passes(self, batch_size: int) -> int:
        """One clean pass plus, at least, one attribution pass (captum methods differ)."""
        return 2 * batch_size

    def _attribute_kwargs(self, inputs: Tensor) -> dict[str, Any]:
        """Keyword arguments of ``attribute`` for this batch (subclasses fill defaults)."""
        return dict(self.attribute_kwargs)

    def _forward_func(self, target: Target, indices: Tensor | None) -> tuple[Any, Tensor | None]:
        """Captum's ``(forward_func, target)``.

        The logits and the class per sample, or the score of a unit or callable target as a
        function of the input (captum batches it).
        """
        if indices is not None:
            return _Logits(self.model, self.output), indices
        taps = target.taps(self.model)

        def forward_func(x: Tensor) -> Tensor:
            if not taps:  # a callable: the raw output, unchecked (captum sizes the batches)
                return target.raw_score(self.model(x))  # type: ignore[return-value]
            with capture(self.model, taps, eval_mode=False) as cap:
                return target.raw_score(self.model(x), cap)  # type: ignore[return-value]

        return forward_func, target.columns  # per-image columns (similarity), else None

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """The captum attribution of the batch, reduced over channels (see the class doc)."""
        indices, scores, _ = clean_pass(self.model, inputs, target)
        with eval_mode(self.model), _seeded(self.seed):
            forward_func, class_target = self._forward_func(target, indices)
            method = self.attribution_cls(forward_func, **self.init_kwargs)
            if not hasattr(method, "attribute"):
                raise InputTypeError(
                    f"attribution_cls returned {type(method).__name__}, which has no .attribute(); "
                    "pass a captum attribution class"
                )
            # captum's gradient methods switch requires_grad on for the call (and warn that they
            # do): give them a detached alias, so that the caller's tensor is never touched
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require")
                try:
                    attr = method.attribute(inputs.detach(), target=class_target,
                                            **self._attribute_kwargs(inputs))
                except RuntimeError as err:
                    if isinstance(err, XcamError) or not _autograd_dead_end(err):
                        raise
                    raise disconnected_error(self.model, inputs[:1], "the input") from err
        if isinstance(attr, tuple):
            attr = attr[0]
        if not isinstance(attr, Tensor) or attr.shape[0] != inputs.shape[0] or attr.dim() not in (3, 4):
            got = tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__
            raise InputError(
                f"attribution_cls: {getattr(self.attribution_cls, '__name__', 'attribution')} "
                f"returned {got}; xcam needs a (B, C, H, W) or (B, H, W) attribution per input"
            )
        attr = attr.detach()
        reduced = reduce_channels(attr, self.reduction) if attr.dim() == 4 else attr
        low_res: Tensor | None = None
        size = tuple(inputs.shape[-2:])
        if tuple(reduced.shape[-2:]) != size:
            low_res = reduced.float()
            reduced = upsample(low_res, size)  # type: ignore[arg-type]
        layer = self.init_kwargs.get("layer")
        return Explanation(
            maps=reduced.float(),
            low_res=low_res,
            targets=indices,
            scores=scores,
            layer=resolve_layer(self.model, layer).label if isinstance(layer, nn.Module) else None,
            method=self.name or "captum",
            params=self.params(),
        )


def _captum_attr(name: str) -> Any:
    import captum.attr

    return getattr(captum.attr, name)


@register_explainer("saliency")
class CaptumSaliency(CaptumAttribution):
    """captum ``Saliency`` (Simonyan et al., 2014): ``|dS^c/dx|`` summed over channels.

    Same map as :class:`~xcam.methods.InputGradient` with ``reduction="abs_sum"``; here for
    comparisons through captum. One clean pass, one forward and one backward pass.
    """

    deterministic = True

    def __init__(self, model: nn.Module, abs: bool = True, reduction: str = "sum", *,
                 output: OutputFn | None = None) -> None:
        super().__init__(model, _captum_attr("Saliency"), reduction=reduction, output=output, abs=abs)

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model for ``batch_size`` images: ``2 * batch_size``."""
        return 2 * batch_size


@register_explainer("integrated_gradients")
class CaptumIntegratedGradients(CaptumAttribution):
    """captum ``IntegratedGradients`` (Sundararajan et al., ICML 2017), summed over channels.

    ``IG_i(x) = (x_i - x'_i) * int_0^1 dS^c(x' + a (x - x')) / dx_i da``, approximated with
    ``n_steps`` points (Gauss-Legendre by default), from ``baselines`` (default 0). With the default
    ``reduction="sum"`` the map sums to ``S^c(x) - S^c(x')`` up to the quadrature error.

    Args:
        model: the model to explain.
        n_steps: points of the path integral (default 50).
        baselines: the reference input ``x'`` (a number or a tensor broadcastable to the input).
        internal_batch_size: most path points per pass (default: all at once).
        method: captum's quadrature (``"gausslegendre"``, ``"riemann_trapezoid"``, ...).
        reduction: ``"sum"`` (default), ``"abs_sum"`` or ``"abs_max"``.
    """

    deterministic = True

    def __init__(
        self,
        model: nn.Module,
        n_steps: int = 50,
        baselines: float | Tensor = 0.0,
        internal_batch_size: int | None = None,
        method: str = "gausslegendre",
        reduction: str = "sum",
        *,
        output: OutputFn | None = None,
    ) -> None:
        check_positive_int("n_steps", n_steps)
        if internal_batch_size is not None:
            check_positive_int("internal_batch_size", internal_batch_size)
        super().__init__(model, _captum_attr("IntegratedGradients"), reduction=reduction, output=output,
                         n_steps=n_steps, baselines=baselines, internal_batch_size=internal_batch_size,
                         method=method)
        self.n_steps = n_steps

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model for ``batch_size`` images: ``batch_size * (self.n_steps + 1)``."""
        return batch_size * (self.n_steps + 1)


@register_explainer("gradient_shap")
class CaptumGradientShap(CaptumAttribution):
    """captum ``GradientShap`` (Lundberg & Lee, NeurIPS 2017), summed over channels.

    Expected gradients: ``E[ (x - x') * dS^c(x' + a (x + eps - x')) / dx ]`` over baselines ``x'``
    drawn from ``baselines``, ``a ~ U(0, 1)`` and ``eps ~ N(0, stdevs^2)``, estimated with
    ``n_samples`` draws per input.

    Args:
        model: the model to explain.
        n_samples: draws per input (default 5).
        stdevs: standard deviation of the input noise (default 0).
        baselines: (N, C, H, W) reference inputs to draw from; ``None`` = one all-zero image.
        seed: seed of the draws (bit-identical calls); ``None`` uses the global RNG state.
        reduction: ``"sum"`` (default), ``"abs_sum"`` or ``"abs_max"``.
    """

    def __init__(
        self,
        model: nn.Module,
        n_samples: int = 5,
        stdevs: float = 0.0,
        baselines: Tensor | None = None,
        seed: int | None = None,
        reduction: str = "sum",
        *,
        output: OutputFn | None = None,
    ) -> None:
        check_positive_int("n_samples", n_samples)
        super().__init__(model, _captum_attr("GradientShap"), reduction=reduction, seed=seed, output=output,
                         n_samples=n_samples, stdevs=stdevs)
        self.baselines = baselines
        self.n_samples = n_samples

    def _attribute_kwargs(self, inputs: Tensor) -> dict[str, Any]:
        base = self.baselines if self.baselines is not None else torch.zeros_like(inputs[:1])
        return {**self.attribute_kwargs, "baselines": base.to(inputs)}

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model for ``batch_size`` images: ``batch_size * (self.n_samples + 1)``."""
        return batch_size * (self.n_samples + 1)
