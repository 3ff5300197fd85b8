"""Ablation-CAM (Desai and Ramaswamy, WACV 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_channels_last, check_positive_int, eval_mode
from ..capture import capture
from ..explanation import Explanation
from ..layers import LayerSpec, Tap, to_nchw
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from ._perturb import channels_last_for, run_model
from .base import CAMExplainer, LayerPass

__all__ = ["AblationCAM"]


class _Replace:
    """Replaces the tensor at ``tap`` by :attr:`tensor` (unless None) in the model's forward passes.

    Only the layer's last call in a pass is replaced (the call that :mod:`xcam.capture` records,
    for a module such as a shared pooling layer that runs several times); :attr:`calls` counts the
    calls of the latest pass. For a module's output the module itself is not run when replaced
    (its ``forward`` is swapped inside the block, as pytorch-grad-cam swaps the whole layer), so
    the ablated passes skip the explained layer's own cost.
    """

    def __init__(self, model: nn.Module, tap: Tap) -> None:
        self.model, self.tap = model, tap
        self.tensor: Tensor | None = None
        self.calls = 0
        self.last = 1
        self._handles: list[Any] = []
        self._forward: Any = None

    def _new(self, like: Tensor | None) -> Tensor | None:
        self.calls += 1
        if self.tensor is None or self.calls != self.last:
            return None
        if like is not None and like.dim() == 4 and self.tensor.dim() == 4 \
                and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
            return self.tensor.contiguous(memory_format=torch.channels_last)  # the pass's layout
        return self.tensor

    def __enter__(self) -> _Replace:
        def reset(module: nn.Module, args: tuple[Any, ...]) -> None:
            self.calls = 0

        self._handles.append(self.model.register_forward_pre_hook(reset, prepend=True))
        module = self.tap.module
        if self.tap.kind == "input":
            def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
                new = self._new(args[0] if args and isinstance(args[0], Tensor) else None)
                return None if new is None else (new, *args[1:])

            self._handles.append(module.register_forward_pre_hook(pre_hook))
        else:  # "output", and "relu" (the rectified output; downstream ReLUs are idempotent)
            had = "forward" in module.__dict__
            self._forward = (had, module.__dict__.get("forward"))
            original = module.forward

            def forward(*args: Any, **kwargs: Any) -> Any:
                first = args[0] if args and isinstance(args[0], Tensor) else None
                like = first if first is not None and first.dim() == 4 else None
                new = self._new(like)
                return original(*args, **kwargs) if new is None else new

            module.forward = forward
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._forward is not None:
            had, previous = self._forward
            if had:
                self.tap.module.forward = previous
            else:
                del self.tap.module.forward
            self._forward = None


def _replays(new: Tensor | None, n: int, clean: Tensor) -> bool:
    """Whether a one-copy pass gave ``n`` scores whose row -1 (the unablated copy) is the clean score.

    Row -1 replays the recorded activation, so it equals the clean pass's score up to the rounding
    of another batch shape and layout; anything farther means the model does not broadcast the
    layers before the explained one as assumed, and the copies run in full instead.
    """
    if new is None or new.shape != (n,) or not bool(torch.isfinite(new).all()):
        return False
    return bool((new[0] - clean).abs() <= 1e-3 * max(1.0, float(clean.abs())))


@register_explainer("ablationcam")
class AblationCAM(CAMExplainer):
    """Ablation-CAM: each feature map weighted by the relative score drop when it is zeroed.

    Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020, equations (3)-(4). With ``y_c`` the score on the
    clean input and ``y_c^k`` the score when feature map ``k`` of the explained layer is set to
    zero (everything else unchanged)::

        w_k = (y_c - y_c^k) / y_c
        map = ReLU( sum_k w_k F_k )

    No gradients. The layer's activations are recorded once; each ablated pass runs the model on
    the sample again and replaces the layer's output by the recorded one with map ``k`` zeroed.
    The maps of a sample are batched, at most ``batch_size`` copies per pass; the first pass of a
    sample also rescores the unablated copy, so that ``y_c`` and ``y_c^k`` come from the same
    pipeline (their difference is small: mixing the rounding of two batch shapes would show) and
    a sample's map does not depend on the rest of the batch. The copies of a pass are one image,
    so the layers before the explained one run on a single copy and the replaced layer hands all
    the ablated copies to the rest of the model (pytorch-grad-cam runs them on every copy): on a
    ResNet explained at ``layer4`` only the pooling and the classifier run per copy. The first pass
    checks that its unablated copy replays the clean score; a model that cannot take the one
    copy (a concatenation with an earlier tensor, say) runs the copies in full instead.
    Feature maps that are zero everywhere are not run (zeroing them changes nothing: ``w_k = 0``).
    For a callable or unit target ``y_c`` is that score; a score of exactly 0 leaves the drop
    undivided (``w_k = y_c - y_c^k``) instead of dividing by zero.

    Agreement with pytorch-grad-cam's ``AblationCAM``: the same weights, equal to float rounding,
    wherever the explained layer's minimum activation is 0 (a layer after a ReLU, the usual case).
    Elsewhere pytorch-grad-cam deviates from the paper and sets the ablated map to ``min - 1e7``
    instead of 0; xcam always zeroes it, as in the paper. Its ``ratio_channels_to_ablate < 1``
    (an experimental skip of channels) has no counterpart here.

    Args:
        model, layer, channels, fuse: as for :class:`~xcam.methods.GradCAM`.
        batch_size: most ablated copies per forward pass.
        progress: ``True`` always shows a progress bar, ``False`` never, ``None`` after 2 s.
        channels_last: memory format of the ablated batches (see :class:`~xcam.methods.ScoreCAM`).
        output: see :class:`~xcam.methods.Explainer`.
        eigen_smooth, aug_smooth: see :class:`~xcam.methods.CAMExplainer`.

    Example:
        >>> explanation = AblationCAM(model, layer="layer4", batch_size=64)(x, targets=281)
    """

    needs_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | Sequence[LayerSpec] | None = None,
        batch_size: int = 32,
        channels: Sequence[int] | None = None,
        progress: bool | None = None,
        channels_last: bool | None = None,
        *,
        output: OutputFn | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        fuse: str = "mean",
    ) -> None:
        super().__init__(model, layer=layer, channels=channels, output=output, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth, fuse=fuse)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.channels_last = check_channels_last(channels_last)
        self.progress = progress
        self._n_maps: int | None = None if channels is None else len(channels)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {**super().params(), "batch_size": self.batch_size}

    def forward_passes(self, batch_size: int) -> int:
        """``batch_size * (maps + 1)``: the maps seen in the last call (estimate: 1 before any)."""
        return batch_size * ((self._n_maps or 1) + 1)

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Weigh each feature map by the relative score drop when it is zeroed (see the class doc)."""
        tap = self.tap(inputs)
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        with torch.no_grad(), capture(self.model, [tap, *target.taps(self.model)]) as cap:
            output = self.model(inputs)
            indices, scores = target.evaluate(output, cap, size=size)
            raw = cap[tap].detach()
        scores = scores.detach()
        all_features = to_nchw(raw, size, tap)
        features = self.select(all_features)
        b, k = features.shape[:2]
        self._n_maps = k
        picked = torch.arange(all_features.shape[1], device=raw.device)
        if self.channels is not None:
            picked = picked[self.channels]
        nonzero = (features.flatten(2) != 0).any(dim=2)  # (B, k)
        fixed = target.fixed(indices)
        taps = fixed.taps(self.model)
        cl = channels_last_for(self.channels_last, inputs, self.model)
        # Per sample: row -1 is the recorded activation itself (y_c, scored in the same pipeline
        # as the ablated copies, so that y_c - y_c^k does not mix the rounding of two batch shapes:
        # a sample's weights do not depend on the other samples of the batch).
        plan = [torch.cat([nonzero.new_full((1,), -1, dtype=torch.long), nonzero[s].nonzero()[:, 0]])
                for s in range(b)]
        n_batches = sum(-(-int(rows.shape[0]) // self.batch_size) for rows in plan)
        ablated = features.new_zeros((b, k))
        base = features.new_zeros((b,))
        bar = tqdm(total=n_batches, desc=f"ablation-cam {tap.label}", unit="batch",
                   disable=self.progress is False or n_batches < 2,
                   delay=0.0 if self.progress else 2.0, leave=False)
        once: bool | None = None  # None: not tried yet (see _scores)
        try:
            with torch.no_grad(), eval_mode(self.model), _Replace(self.model, tap) as replace:
                for s, rows in enumerate(plan):
                    # the sample's activation alone, as in a call on that sample only (and the
                    # number of calls of the layer in one pass)
                    replace.tensor = None
                    if b > 1 or s == 0:
                        with capture(self.model, [tap], eval_mode=False) as cap:
                            run_model(self.model, inputs[s:s + 1], False)
                            own = cap[tap].detach() if b > 1 else raw
                        replace.last = replace.calls
                    for start in range(0, int(rows.shape[0]), self.batch_size):
                        maps = rows[start:start + self.batch_size]
                        n = int(maps.shape[0])
                        samples = maps.new_full((n,), s)
                        copy = own.expand(n, *own.shape[1:]).clone()
                        view = to_nchw(copy, size, tap)
                        real = maps >= 0
                        view[torch.arange(n, device=raw.device)[real], picked[maps[real]]] = 0
                        replace.tensor = copy
                        new = None
                        if once is not False:  # the unchanged layers before `tap` on one copy
                            new = self._scores(inputs[s:s + 1], samples, fixed, taps, cl, size)
                            if once is None:  # first pass: row -1 must replay the clean score
                                once = _replays(new, n, scores[s])
                            if not once or new is None or new.shape != (n,):
                                once, new = False, None
                        if new is None:
                            new = self._scores(inputs[samples], samples, fixed, taps, cl, size)
                            assert new is not None
                        new = new.to(ablated.dtype)
                        ablated[s, maps[real]] = new[real]
                        if start == 0:
                            base[s] = new[0]
                        bar.update(1)
        finally:
            bar.close()
        y = base[:, None]
        drop = torch.where(nonzero, y - ablated, 0.0)  # an all-zero map: y_c^k = y_c
        weights = drop / torch.where(y == 0, 1.0, y)
        lp = LayerPass(features, None, indices, scores)
        return self.finish(inputs, self.combine(weights, features), lp)

    def _scores(self, batch: Tensor, samples: Tensor, fixed: Target, taps: list[Tap], cl: bool,
                size: tuple[int, int]) -> Tensor | None:
        """Target scores of one pass whose explained layer is replaced by the ablated copies.

        Every copy of a pass is the same image, so everything computed before the explained layer
        is the same for all of them. ``batch`` may then be that image once: the replaced layer
        returns all the copies and the rest of the model runs on them, with any tensor from before
        the layer broadcast along the batch (equal rows, so the same values). A model that cannot
        take that (a concatenation along the batch, a shape fixed by the input's batch) raises or
        returns another number of scores: None, and the caller runs the copies in full.
        """
        try:
            with capture(self.model, taps, eval_mode=False) as cap:
                out = run_model(self.model, batch, cl, explicit=self.channels_last is True)
                return fixed.follow(samples).score(out, cap, size=size)
        except Exception:  # noqa: BLE001 - only the one-copy pass may fail here; see the caller
            if batch.shape[0] == samples.shape[0]:
                raise
            return None
