"""Occlusion (Zeiler & Fergus, ECCV 2014)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_channels_last, check_positive_int, eval_mode
from ..capture import Capture, capture
from ..errors import DeadEndWarning, InputError, InputTypeError, warn
from ..explanation import Explanation
from ..outputs import OutputFn, logits
from ..registry import register_explainer
from ..targets import Target
from ._perturb import channels_last_for, layout_fallback, run_model
from .base import Explainer

__all__ = ["Occlusion"]


def _pair(name: str, value: object) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise InputTypeError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")
    if min(value) < 1:
        raise InputError(f"{name} must be positive, got {tuple(value)}")
    return int(value[0]), int(value[1])


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start of each window along one dimension: ``ceil((size - window) / stride) + 1`` positions."""
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def _coverage(size: int, starts: list[int], window: int, device: torch.device) -> Tensor:
    """(n_windows, size) bool: which positions each window covers (cropped at the border)."""
    pos = torch.arange(size, device=device)
    lo = torch.tensor(starts, device=device)[:, None]
    return (pos >= lo) & (pos < lo + window)


def _average(totals: Tensor, cov_y: Tensor, cov_x: Tensor) -> Tensor:
    """Per-pixel mean of the summed score drops over the windows that cover the pixel (0 if none)."""
    counts = cov_y.sum(0).to(totals.dtype)[:, None] * cov_x.sum(0).to(totals.dtype)[None, :]
    return torch.where(counts > 0, totals / counts.clamp_min(1), torch.zeros_like(totals))


@dataclass
class _Plan:
    """What one plain occlusion call runs: window coverage, baseline, batch bounds, layout."""

    cov_y: Tensor  # (ny, H) bool
    cov_x: Tensor  # (nx, W) bool
    nx: int
    n_windows: int
    base: Tensor
    base_rows: bool  # one baseline per sample
    bounds: list[int]  # work-item boundaries of the batches
    channels_last: bool


@dataclass
class _Scores:
    """The targets and the clean scores, filled by the batch that holds the clean images."""

    target: Target
    fixed: Target = field(init=False)
    indices: Tensor | None = None
    clean: Tensor | None = None

    def __post_init__(self) -> None:
        self.fixed = self.target


def incremental_pays(device: torch.device) -> bool:
    """Whether ``Occlusion(incremental=True)`` runs the incremental engine on ``device``.

    The rule: on the CPU only. There the engine was measured 2.2x (ResNet-50) to 4.7x (VGG-16)
    faster than plain occlusion (224 px, window 32, stride 16; ``docs/benchmarks.md``): the
    convolutions dominate and it runs fewer of their MACs. On an accelerator plain occlusion runs
    a few large batched passes while the engine launches many small kernels per layer and window,
    and was measured 16x slower (H200, ResNet-50, 224 px: 456 ms vs 28 ms, issue 15), so
    ``incremental=True`` runs plain occlusion there (once-per-instance warning). Plain occlusion is
    the exact map, which the engine reproduces up to float rounding (``approximate`` trades
    accuracy for CPU speed, and is exact there too).
    """
    return device.type == "cpu"


@register_explainer("occlusion")
class Occlusion(Explainer):
    """Occlusion: how much the score drops when a window of the image is replaced by a baseline.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014. A window of
    ``window = (h, w)`` pixels, all channels, slides with ``stride = (s_y, s_x)``;
    ``ceil((D - w) / s) + 1`` positions per dimension, the last window cropped at the border. Each
    pixel gets the mean over the windows ``W`` that cover it::

        map[i, j] = mean_{W ∋ (i, j)} ( S^c(x) - S^c(x with W filled by the baseline) )

    Pixels no window covers (only when ``stride > window``) get 0. This equals captum ``Occlusion``
    with ``sliding_window_shapes=(C, h, w)`` and ``strides=(C, s_y, s_x)`` (whose window spans all
    channels, so every channel of its output holds this map). The maps are raw: positive where
    occluding lowers the score, negative where it raises it.

    Cost: ``B * (n_windows + 1)`` images, evaluated without gradients in batches of at most
    ``batch_size``; the clean images ride in the first batch (a batch of more than ``batch_size``
    images runs its clean pass on its own). A progress bar (tqdm) appears when a call runs longer
    than two seconds.

    Args:
        model: the model to explain.
        window: window height and width in pixels (an int for a square); a window larger than the
            input is cropped to it, with a warning.
        stride: step between windows (an int for both dimensions).
        baseline: fill value: a number, or a tensor broadcastable to the input (B, C, H, W), e.g. a
            per-channel mean of shape (C, 1, 1) or a blurred copy of the batch.
        batch_size: most images per forward pass (default 64).
        progress: ``True`` always shows the progress bar, ``False`` never; ``None`` (default) shows
            it only when the call takes longer than two seconds.
        incremental: compute each occluded copy as an incremental update of the clean image's
            activations (:mod:`xcam.methods._incremental`): every layer runs only on the region the window
            can change. Exact up to float rounding; for class (index) targets on models that
            ``torch.fx`` can trace, otherwise plain occlusion runs, with a warning saying why. On
            the CPU only (:func:`incremental_pays`): elsewhere plain occlusion is faster, and runs.
        approximate: approximate incremental mode (implies ``incremental``): the changed region
            may grow to at most this fraction of each layer's height and width; changes beyond
            are ignored (the paper's projective-field threshold). Faster, not exact: at 0.6 the
            maps of ResNet-50 and VGG-16 stayed within 3-7 % of the exact map's range
            (``python -m benchmarks incremental``); at 0.5 the error reached 15-42 %.
        channels_last: run the occluded batches in channels-last memory format. ``None`` (default)
            does so for float32 input on the CPU, where oneDNN's convolutions are 25 to 35 % faster
            on it (ResNet-50); values differ from NCHW only by float rounding. A model that cannot
            run in it (``.view()`` on a feature map) falls back to the plain layout, with a
            warning, and is remembered; ``True`` makes that failure an error.
        output: see :class:`~xcam.methods.Explainer`.

    A stride larger than the window leaves pixels that no window covers (their map value is 0):
    the constructor warns (:class:`~xcam.errors.DeadEndWarning`).
    """

    needs_gradients = False
    needs_layer = False

    def __init__(
        self,
        model: nn.Module,
        window: int | tuple[int, int] = (32, 32),
        stride: int | tuple[int, int] = (16, 16),
        baseline: float | Tensor = 0.0,
        batch_size: int = 64,
        progress: bool | None = None,
        channels_last: bool | None = None,
        incremental: bool = False,
        approximate: float | None = None,
        *,
        output: OutputFn | None = None,
    ) -> None:
        super().__init__(model, output=output)
        if not isinstance(incremental, bool):
            raise InputTypeError(f"incremental must be True or False, got {incremental!r}")
        if approximate is not None and not (isinstance(approximate, Real) and 0 < approximate <= 1):
            raise InputError(f"approximate must be None or a number in (0, 1], got {approximate!r}")
        self.incremental = incremental or approximate is not None
        self.approximate = None if approximate is None else float(approximate)
        self._engine: Any = None
        self._plain_announced = False
        self.channels_last = check_channels_last(channels_last)
        self.window = _pair("window", window)
        self.stride = _pair("stride", stride)
        if self.stride[0] > self.window[0] or self.stride[1] > self.window[1]:
            warn(
                f"Occlusion: stride={self.stride} is larger than window={self.window}, so pixels "
                "between windows are never occluded and get 0 in every map; use a stride <= the "
                "window", DeadEndWarning,
            )
        if isinstance(baseline, bool) or not isinstance(baseline, (Real, Tensor)):
            raise InputTypeError(
                f"baseline must be a number or a tensor broadcastable to the input, got "
                f"{type(baseline).__name__}"
            )
        self.baseline = baseline
        self.batch_size = check_positive_int("batch_size", batch_size)
        if progress is not None and not isinstance(progress, bool):
            raise InputTypeError(f"progress must be True, False or None, got {progress!r}")
        self.progress = progress

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        base: object = self.baseline
        if isinstance(base, Tensor):
            base = f"tensor{tuple(base.shape)}"
        out = {"window": self.window, "stride": self.stride, "baseline": base,
               "batch_size": self.batch_size}
        if self.incremental:
            out.update(incremental=True, approximate=self.approximate)
        return out

    def _layout(self, height: int, width: int) -> tuple[tuple[int, int], list[int], list[int]]:
        window = (min(self.window[0], height), min(self.window[1], width))
        starts_y = window_starts(height, window[0], self.stride[0])
        starts_x = window_starts(width, window[1], self.stride[1])
        return window, starts_y, starts_x

    def forward_passes(self, batch_size: int, image_size: tuple[int, int] = (224, 224)) -> int:
        """Images run through the model for ``batch_size`` images of ``image_size`` (H, W)."""
        _, starts_y, starts_x = self._layout(*image_size)
        return batch_size * (len(starts_y) * len(starts_x) + 1)

    def _baseline(self, inputs: Tensor) -> Tensor:
        base = torch.as_tensor(self.baseline, dtype=inputs.dtype, device=inputs.device)
        try:
            shape = torch.broadcast_shapes(base.shape, inputs.shape)  # type: ignore[no-untyped-call]
        except RuntimeError:
            shape = None
        if shape != inputs.shape:
            raise InputError(
                f"baseline of shape {tuple(base.shape)} does not broadcast to the input "
                f"{tuple(inputs.shape)}; pass a number, a (C, 1, 1) tensor or one shaped like the input"
            )
        return base

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Slide the window over the batch, score every occluded copy, average per pixel."""
        if self.incremental and incremental_pays(inputs.device):
            result = self._explain_incremental(inputs, target)
            if result is not None:
                return result
        elif self.incremental and not self._plain_announced:
            self._plain_announced = True
            warn(
                f"Occlusion(incremental=True) on {inputs.device.type}: running plain occlusion, "
                "which is faster there (the incremental engine's many small per-layer updates "
                "cost more than the batched full passes they save on an accelerator; H200, "
                "ResNet-50: 456 ms vs 28 ms) and exact; pass incremental=False to silence this"
            )
        plan = self._plan(inputs)
        b, _, height, width = inputs.shape
        totals = inputs.new_zeros((b, height, width))
        state = _Scores(target)
        show = self.progress is not False and len(plan.bounds) > 2
        bar = tqdm(total=len(plan.bounds) - 1, desc=f"occlusion {height}x{width}", unit="batch",
                   disable=not show, delay=0.0 if self.progress else 2.0, leave=False)
        try:
            with torch.no_grad(), eval_mode(self.model):
                for t0, t1 in zip(plan.bounds[:-1], plan.bounds[1:]):
                    self._run_batch(inputs, plan, t0, t1, state, totals)
                    bar.update(1)
        finally:
            bar.close()
        assert state.clean is not None
        maps = _average(totals, plan.cov_y, plan.cov_x)
        return self.make_explanation(maps, state.indices, state.clean.detach())

    def _plan(self, inputs: Tensor) -> _Plan:
        """The windows, their coverage, the baseline and the batches of one call."""
        b, _, height, width = inputs.shape
        window, starts_y, starts_x = self._layout(height, width)
        if window != self.window:
            warn(f"window={self.window} is larger than the {height}x{width} input; using {window}")
        dev = inputs.device
        base = self._baseline(inputs)
        n_windows = len(starts_y) * len(starts_x)
        # Work items: the B clean images first, then every (sample, window) pair, sample-major.
        # The clean images ride in the first batch; more than batch_size of them run on their own.
        total_items = b + b * n_windows
        fold = b <= self.batch_size
        bounds = (list(range(0, total_items, self.batch_size)) if fold
                  else [0, *range(b, total_items, self.batch_size)])
        bounds.append(total_items)
        return _Plan(
            cov_y=_coverage(height, starts_y, window[0], dev),  # (ny, H)
            cov_x=_coverage(width, starts_x, window[1], dev),  # (nx, W)
            nx=len(starts_x),
            n_windows=n_windows,
            base=base,
            base_rows=base.dim() == 4 and base.shape[0] == b and b > 1,
            bounds=bounds,
            channels_last=channels_last_for(self.channels_last, inputs, self.model),
        )

    def _run_batch(self, inputs: Tensor, plan: _Plan, t0: int, t1: int, state: _Scores,
                   totals: Tensor) -> None:
        """Run work items ``t0:t1`` (clean images, then occluded copies) and add their drops."""
        b = inputs.shape[0]
        dev = inputs.device
        items = torch.arange(t0, t1, device=dev)
        occ = (items - b).clamp_min(0)
        samples = torch.where(items < b, items, occ // plan.n_windows)
        win = occ % plan.n_windows
        is_occ = items >= b
        rows_y = plan.cov_y[win // plan.nx] & is_occ[:, None]  # (N, H)
        rows_x = plan.cov_x[win % plan.nx]  # (N, W)
        mask = (rows_y[:, :, None] & rows_x[:, None, :])[:, None]  # (N, 1, H, W)
        src = inputs.expand(len(items), -1, -1, -1) if b == 1 else inputs[samples]
        fill = plan.base[samples] if plan.base_rows else plan.base
        n_clean = int((items < b).sum())
        occ_samples = samples[n_clean:]
        with capture(self.model, state.fixed.taps(self.model), eval_mode=False) as cap:
            output = run_model(self.model, torch.where(mask, fill, src), plan.channels_last,
                               explicit=self.channels_last is True)
            if n_clean:
                state.indices, state.clean = self._scores(state.target, output, cap,
                                                          slice(0, n_clean), samples)
                state.fixed = state.target.fixed(state.indices)
            if len(occ_samples):
                _, scores = self._scores(state.fixed.follow(occ_samples), output, cap,
                                         slice(n_clean, None), samples, state.fixed)
        if len(occ_samples):
            assert state.clean is not None
            diff = (state.clean[occ_samples] - scores).to(totals.dtype)
            weights = torch.zeros((len(occ_samples), b), dtype=totals.dtype, device=dev)
            weights[torch.arange(len(occ_samples), device=dev), occ_samples] = diff
            totals += torch.einsum("nb,nh,nw->bhw", weights, rows_y[n_clean:].to(totals.dtype),
                                   rows_x[n_clean:].to(totals.dtype))

    def _explain_incremental(self, inputs: Tensor, target: Target) -> Explanation | None:
        """Occlusion through :mod:`xcam.methods._incremental`.

        Returns None (after a warning) where it cannot run: the caller runs plain occlusion.
        """
        from ._incremental import IncrementalModel, IncrementalUnsupported

        if not target.is_class:
            warn("incremental=True supports class targets only; running plain occlusion")
            return None
        if self._engine is None:
            try:
                self._engine = IncrementalModel(self.model, cap=self.approximate)
            except IncrementalUnsupported as err:
                warn(f"incremental=True: {err}; running plain occlusion")
                self.incremental = False
                return None
        b, _, height, width = inputs.shape
        window, starts_y, starts_x = self._layout(height, width)
        with torch.no_grad(), eval_mode(self.model):
            output = logits(self.model(inputs), self.output)
            if output.dim() != 2:
                warn("incremental=True needs a (B, classes) model output; running plain occlusion")
                return None
            indices, clean = target.on_logits(output)
            occluded = self._occluded_incremental(inputs, indices, window, starts_y, starts_x)
        dev, dt = inputs.device, inputs.dtype
        cov_y = _coverage(height, starts_y, window[0], dev)
        cov_x = _coverage(width, starts_x, window[1], dev)
        diff = (clean[:, None] - occluded).reshape(b, len(starts_y), len(starts_x)).to(dt)
        totals = torch.einsum("byx,yh,xw->bhw", diff, cov_y.to(dt), cov_x.to(dt))
        return self.make_explanation(_average(totals, cov_y, cov_x), indices, clean.detach())

    def _occluded_incremental(self, inputs: Tensor, indices: Tensor, window: tuple[int, int],
                              starts_y: list[int], starts_x: list[int]) -> Tensor:
        """(B, windows) target scores of every occluded copy, through the incremental engine."""
        from ._incremental import occluded_outputs

        b = inputs.shape[0]
        windows = torch.tensor([[y, y + window[0], x, x + window[1]] for y in starts_y for x in starts_x],
                               device=inputs.device)
        base = self._baseline(inputs)
        base_rows = base.dim() == 4 and base.shape[0] == b and b > 1
        cl = channels_last_for(self.channels_last, inputs, self.model)

        def run(layout: bool) -> Tensor:
            return torch.stack([
                occluded_outputs(self.model, inputs[i:i + 1], windows,
                                 base[i:i + 1] if base_rows else base, self.batch_size,
                                 self._engine, layout, self.output)[:, indices[i]]
                for i in range(b)
            ])  # (B, windows)

        return layout_fallback(self.model, run, cl, self.channels_last is True)

    def cost(self, image_size: tuple[int, int] = (224, 224)) -> Any:
        """Convolution MACs per window position, plain vs incremental, for this window and stride.

        Returns an :class:`xcam.methods._incremental.Cost` (``plain_macs``, ``incremental_macs``,
        ``speedup``).
        """
        from ._incremental import IncrementalModel

        engine = self._engine or IncrementalModel(self.model, cap=self.approximate)
        param = next(self.model.parameters(), None)
        image = torch.zeros(1, 3, *image_size, device=param.device if param is not None else None)
        window, starts_y, starts_x = self._layout(*image_size)
        windows = torch.tensor([[y, y + window[0], x, x + window[1]] for y in starts_y for x in starts_x],
                               device=image.device)
        with torch.no_grad(), eval_mode(self.model):
            env = engine.clean(image)
            engine.plan(env, windows, image_size)
            return engine.cost(env)

    def _scores(self, target: Target, output: object, cap: Capture, rows: slice, samples: Tensor,
                whole: Target | None = None) -> tuple[Tensor | None, Tensor]:
        """Class indices and scores of the rows ``rows`` of a batch just run inside ``cap``.

        Row ``r`` of the batch copies sample ``samples[r]``. A callable or unit target scores the
        whole raw output (it may be a dict or a tuple), following every row's sample
        (``whole``, the target of the samples, defaults to ``target``), then the rows are taken
        from its scores; class targets read the rows of :func:`xcam.outputs.logits`.
        """
        if not target.is_class:
            return None, (whole or target).follow(samples).score(output, cap)[rows]
        return target.on_logits(logits(output, self.output)[rows])
