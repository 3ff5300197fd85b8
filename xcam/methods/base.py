"""Base classes shared by every explainer.

An explainer takes its hyper-parameters in the constructor and is called the same way whatever the
method: ``explainer(inputs, targets=None) -> Explanation``. The call owns forward, backward, grad
mode and hook lifetime; nothing survives between calls except a cached automatic layer choice.

Every call checks its inputs against the model (:func:`xcam._checks.check_inputs`: dtype, device,
channels, empty sizes) and its result (NaN maps are an error; a constant map or a 1 x 1 layer is a
:class:`~xcam.errors.DeadEndWarning`). The first call of each explainer instance also looks for
un-normalized inputs (:class:`~xcam.errors.InputRangeWarning`); later calls skip that check, which
costs a device sync. Model outputs are read through :func:`xcam.outputs.logits`, which the
keyword-only ``output=`` of every explainer replaces.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from .._checks import check_input_range, check_inputs, check_later, deferred_checks
from ..autolayer import auto_layer
from ..capture import Capture, capture
from ..embeddings import image_model
from ..errors import (
    DeadEndWarning,
    GradientModeError,
    InputError,
    InputTypeError,
    NonFiniteError,
    TargetError,
    warn,
)
from ..explanation import Explanation
from ..layers import LayerSpec, Tap, resolve_layer, to_nchw
from ..outputs import OutputFn
from ..postprocess import normalize, upsample
from ..targets import Target, Targets, resolve
from ._fuse import check_fuse, fuse_maps

__all__ = [
    "Explainer", "CAMExplainer", "check_inputs", "LayerPass", "SharedPass", "run_pass", "check_unit_order",
    "weighted_sum", "eigen_smooth", "AUGMENTATIONS",
]

#: pytorch-grad-cam's test-time augmentations for ``aug_smooth=True`` (its default ``ttach``
#: Compose): (horizontal flip, multiplicative factor), every combination of the two.
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


def weighted_sum(weights: Tensor, features: Tensor) -> Tensor:
    """``ReLU( sum_k w_k F_k )``: (B, C) weights and (B, C, h, w) features -> (B, h, w)."""
    return torch.relu(torch.einsum("bc,bchw->bhw", weights, features))


def eigen_smooth(weighted: Tensor) -> Tensor:
    """``ReLU`` of the weighted features' projection on their first principal component.

    pytorch-grad-cam's ``eigen_smooth=True``: with ``A`` the (h*w, C) matrix of the weighted
    features ``w_k F_k`` of one sample, centered over the positions, and ``v_1`` its first right
    singular vector, the map is ``ReLU( (A - mean A) v_1 )``. The sign of ``v_1`` is arbitrary;
    xcam takes the one whose projection correlates positively with the unsmoothed sum
    ``sum_k w_k F_k`` (pytorch-grad-cam keeps LAPACK's sign, so its map can be the ReLU of the
    opposite projection). (B, C, h, w) -> (B, h, w).
    """
    b, c, h, w = weighted.shape
    a = weighted.reshape(b, c, h * w).transpose(1, 2)
    a = a - a.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(a, full_matrices=False)
    projection = torch.einsum("bpc,bc->bp", a, vh[:, 0, :])
    plain = a.sum(dim=2)
    sign = torch.where((projection * plain).sum(dim=1) < 0, -1.0, 1.0).to(projection.dtype)
    return torch.relu(projection * sign[:, None]).reshape(b, h, w)


class Explainer(abc.ABC):
    """Base class of every explainer.

    Subclasses implement :meth:`explain` on a validated (B, C, H, W) batch and declare their
    capabilities as class attributes.

    Args:
        model: the model to explain.
        output: keyword-only; a callable ``f(model_output) -> (B, classes) Tensor`` that replaces
            the rules of :func:`xcam.outputs.logits` (tensor, ``.logits``, ``"logits"`` /
            ``"out"``, first element of a tuple) for class targets, and those of
            :func:`xcam.embeddings.embedding` for similarity targets. A callable ``targets=``
            still receives the raw model output.

    A two-tower model (Hugging Face ``CLIPModel``, open_clip's ``CLIP``: a ``get_image_features``
    or ``encode_image`` method) is explained through its image tower
    (:func:`xcam.embeddings.image_model`; ``self.model`` is then that tower, whose layers carry
    the model's names).
    """

    name: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = True
    needs_layer: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True
    constant_maps: ClassVar[bool] = False
    """True for explainers whose maps are constant by design (a blank control): no warning."""
    is_control: ClassVar[bool] = False
    """True for the controls (maps that ignore the model: blank, random, center, edges); the
    evaluation lists them with :func:`xcam.registry.list_controls` instead of by name."""
    model_type: ClassVar[type | None] = None
    """The kind of model the explainer needs, or ``None`` for any classifier (class scores out):
    :class:`~xcam.explanation.AttentionModel` for LFI-CAM, :class:`~xcam.explanation.Detector`
    for D-RISE. The test suites, ``compare --methods all`` and the coverage table read it."""
    needs_class_targets: ClassVar[bool] = False
    """True for explainers that explain classes only (CAM reads the classifier's weight row):
    callable, unit, Finer and similarity targets are refused with a TargetError."""

    shares_pass: ClassVar[bool] = False
    """Declared need: the map is a function of ONE forward pass on the clean inputs (the scores and
    classes of the target, the features at :meth:`pass_layers`, and their gradients when
    ``needs_gradients``), computed by :meth:`explain_pass`. :func:`xcam.explain` runs that pass once
    for every explainer that declares it (same model, ``output`` and target). A subclass that
    overrides :meth:`explain` without declaring ``shares_pass`` itself does not share (its
    ``explain`` does more than the one pass)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "explain" in cls.__dict__ and "shares_pass" not in cls.__dict__:
            cls.shares_pass = False
        if cls.shares_pass and cls.explain_pass is Explainer.explain_pass:
            raise TypeError(f"{cls.__name__} declares shares_pass but does not implement explain_pass")

    def __init__(self, model: nn.Module, *, output: OutputFn | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if output is not None and not callable(output):
            raise InputTypeError(
                f"output must be a callable model_output -> (B, classes) tensor, or None for "
                f"xcam's rules (see xcam.outputs); got {type(output).__name__}"
            )
        self.model = image_model(model)  # a two-tower model (CLIP): its image tower
        self.output = output
        self._range_checked = False

    def __call__(self, inputs: Tensor, targets: Targets | Target = None) -> Explanation:
        """Explain ``inputs`` (B, C, H, W) for ``targets`` (see :mod:`xcam.targets`).

        The checks of tensor values (NaN inputs, NaN scores, NaN or constant maps) cost no device
        sync on an accelerator: they are read when the explanation's maps, scores or targets are
        first accessed (:func:`xcam._checks.deferred_checks`); on the CPU they run in the call.
        """
        device = inputs.device if isinstance(inputs, Tensor) else None
        with deferred_checks(device) as pending:
            x = check_inputs(inputs, model=self.model)
            if self.needs_gradients and (torch.is_inference_mode_enabled() or x.is_inference()):
                raise GradientModeError(
                    f"{type(self).__name__} needs gradients, which torch.inference_mode() forbids; "
                    "call it outside inference_mode (and pass a tensor created outside it)"
                )
            self.check_range_once(x)
            target = resolve(targets, int(x.shape[0]), self.output, self.model)
            explanation = self.within_call(lambda: self.explain(x, target))
            self._check_result(explanation)
        return explanation.checked_on_read(pending)

    def check_range_once(self, inputs: Tensor) -> None:
        """Look for un-normalized inputs on this explainer's first call only (one device sync)."""
        if not getattr(self, "_range_checked", False):
            self._range_checked = True
            check_input_range(inputs, model=self.model)

    def mark_range_checked(self) -> None:
        """Skip the range check of the next calls (another explainer checked these inputs)."""
        self._range_checked = True

    def within_call(self, compute: Callable[[], Explanation]) -> Explanation:
        """Run ``compute`` (the explain step of a call) inside the call's context; see CAMExplainer."""
        return compute()

    def pass_layers(self, inputs: Tensor, target: Target) -> list[Tap]:
        """The layers whose features the shared pass records for this explainer ([] for none).

        Called before the pass, so it also does any first-call set-up (the automatic layer, CAM's
        head) and raises what :meth:`explain` would raise for this target.
        """
        return []

    def explain_pass(self, inputs: Tensor, target: Target, shared: SharedPass) -> Explanation:
        """The explanation from a shared pass (explainers that declare ``shares_pass``)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare shares_pass")

    def explain_shared(self, inputs: Tensor, target: Target, shared: SharedPass) -> Explanation:
        """What ``self(inputs, targets)`` returns, from a pass shared with other explainers.

        ``inputs`` are the checked inputs, ``target`` the resolved target and ``shared`` a
        :class:`SharedPass` that recorded :meth:`pass_layers` (used by :func:`xcam.explain`).
        """
        with deferred_checks(inputs.device) as pending:
            explanation = self.within_call(lambda: self.explain_pass(inputs, target, shared))
            self._check_result(explanation)
        return explanation.checked_on_read(pending)

    def _check_result(self, explanation: Explanation) -> None:
        """NaN maps are an error; a 1 x 1 layer or a constant map is a warning.

        The flags are computed on the device and read by :func:`xcam._checks.check_later` (at
        once on the CPU, at the first read of the explanation elsewhere).
        """
        maps, low = explanation.maps, explanation.low_res
        name = type(self).__name__
        flat = maps.detach().flatten(1)
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)
        finite = torch.isfinite(lo) & torch.isfinite(hi)

        def nonfinite() -> None:
            bad = (~finite).nonzero().flatten().tolist()
            raise NonFiniteError(
                f"{name} produced NaN or infinite maps for samples {bad[:8]}; the model's gradients "
                "or activations overflow there: check the weights and the inputs' scale (normalized "
                "inputs), or explain another layer"
            )

        zero = explanation.scores.detach().reshape(-1) == 0

        def constant() -> None:
            const_mask = (hi == lo) & finite
            if bool(zero.any()):
                zeros = zero.nonzero().flatten().tolist()
                warn(
                    f"{name}: the explained score is exactly 0 for samples {zeros[:8]}: nothing to "
                    "attribute, so their maps are all zeros by definition for gradient methods "
                    "(typically a unit target whose ReLU is off on that image); explain another "
                    "channel, neuron or image", DeadEndWarning,
                )
                const_mask = const_mask & ~zero.to(const_mask.device)
                if not bool(const_mask.any()):
                    return
            const = const_mask.nonzero().flatten().tolist()
            warn(
                f"{name} returned a constant map (value {float(lo[const[0]]):.3g}) for samples "
                f"{const[:8]}: it shows nothing. For CAM methods the weighted sum is often negative "
                "everywhere and the ReLU removes it; try another layer or target, and check that "
                "the inputs are normalized", DeadEndWarning,
            )

        check_later((~finite).any(), nonfinite)
        if low is not None and low.shape[-1] * low.shape[-2] == 1:
            warn(
                f"{name}: layer {explanation.layer!r} has a 1 x 1 feature map, so every map is "
                "constant over the image; explain an earlier layer with a spatial map (see "
                "xcam.list_layers(model, x))", DeadEndWarning,
            )
        elif not self.constant_maps:  # a constant map, or a zero score (said first)
            check_later(((finite & (hi == lo)) | zero.to(finite.device)).any(), constant)

    @abc.abstractmethod
    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Compute the explanation of a validated batch for a resolved :class:`~xcam.targets.Target`."""

    def make_explanation(
        self, maps: Tensor, indices: Tensor | None, scores: Tensor, *,
        low_res: Tensor | None = None, layer: str | None = None,
    ) -> Explanation:
        """The :class:`Explanation` of this explainer: float32 maps, its name and parameters.

        The one constructor of the methods without a layer (``low_res`` and ``layer`` None) and
        of those that report one of their own.
        """
        return Explanation(
            maps=maps.float(),
            low_res=low_res,
            targets=indices,
            scores=scores,
            layer=layer,
            method=self.name,
            params=self.params(),
        )

    def forward_passes(self, batch_size: int) -> int:
        """Images run through the model for a batch of ``batch_size`` (cost estimate)."""
        return batch_size

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`Explanation` for provenance."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


@dataclass
class LayerPass:
    """What one forward (and backward) pass recorded at the explained layer."""

    features: Tensor  # (B, C, h, w), detached
    grads: Tensor | None  # (B, C, h, w) or None
    indices: Tensor | None  # (B,) class per sample, None for callable / unit targets
    scores: Tensor  # (B,) detached


@dataclass
class SharedPass:
    """What one forward (and backward) pass recorded for every explainer that reads it.

    ``features`` and ``grads`` hold (B, C, h, w) tensors by tap (token grids and channels-last maps
    viewed as NCHW by :func:`xcam.layers.to_nchw`), detached; ``grads`` only at the taps that were
    differentiated.
    """

    indices: Tensor | None  # (B,) class per sample, None for callable / unit targets
    scores: Tensor  # (B,) detached
    features: dict[Tap, Tensor]
    grads: dict[Tap, Tensor]

    def at(self, tap: Tap) -> LayerPass:
        """The :class:`LayerPass` of one recorded layer."""
        return LayerPass(self.features[tap], self.grads.get(tap), self.indices, self.scores)


def check_unit_order(cap: Capture, taps: Sequence[Tap], unit_taps: Sequence[Tap]) -> None:
    """Refuse a unit target (``targets.channel`` / ``neuron``) whose layer runs before an explained one.

    ``cap`` recorded one forward pass over ``taps`` and ``unit_taps``; the unit's score cannot depend
    on an explained layer that runs after it.
    """
    for tap in taps:
        for unit_tap in unit_taps:
            if cap.order(unit_tap) < cap.order(tap):
                raise TargetError(
                    f"unit target layer {unit_tap.label!r} runs before the explained layer "
                    f"{tap.label!r}; choose a unit at or after the explained layer"
                )


def run_pass(
    model: nn.Module, inputs: Tensor, target: Target, taps: Sequence[Tap],
    grad_taps: Sequence[Tap] = (),
) -> SharedPass:
    """One forward pass recording ``taps``, and one backward pass to ``grad_taps`` (if any).

    Gradients are enabled only when ``grad_taps`` is not empty; they come from one
    :meth:`xcam.capture.Capture.gradients` call (``torch.autograd.grad``) for all of them, so every
    tap gets the gradient a pass for it alone would give.
    """
    unit_taps = target.taps(model)
    size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
    with torch.set_grad_enabled(bool(grad_taps)), capture(model, [*taps, *unit_taps]) as cap:
        output = model(inputs)
        check_unit_order(cap, taps, unit_taps)
        indices, scores = target.evaluate(output, cap, size=size)
        raw = {tap: cap[tap] for tap in taps}
        grads = cap.gradients(scores, list(grad_taps)) if grad_taps else {}
    return SharedPass(
        indices, scores.detach(),
        {tap: to_nchw(value.detach(), size, tap) for tap, value in raw.items()},
        {tap: to_nchw(grads[tap.label], size, tap) for tap in grad_taps},
    )


class CAMExplainer(Explainer):
    """Base of the CAM family: a map ``ReLU( sum_k w_k F_k )`` over one layer's feature maps.

    A subclass that only implements :meth:`low_res` shares its pass (``shares_pass``):
    :func:`xcam.explain` gives it the features (and gradients) of a pass it shares with the others.

    Args:
        model: a CNN (or any model whose ``layer`` outputs (B, C, h, w)).
        layer: dotted name (``"layer4"``, ``"avgpool:input"``), module, or ``None`` to choose
            automatically (announced with a warning); or a list of them (pytorch-grad-cam's
            ``target_layers``): the method runs on each layer and the maps are fused (``fuse``).
        channels: restrict the weighted sum to these feature maps (indices into C).
        output: keyword-only; reads the class scores in the model output (see :class:`Explainer`).
        eigen_smooth: keyword-only; replace ``ReLU( sum_k w_k F_k )`` by the ReLU of the weighted
            features' projection on their first principal component (pytorch-grad-cam's option,
            see :func:`eigen_smooth` and :meth:`combine`). Methods whose map is not a per-channel
            weighted sum (class flag ``channel_weights`` False: HiResCAM, LayerCAM, Eigen-CAM)
            refuse it with an :class:`~xcam.errors.InputError`.
        aug_smooth: keyword-only; test-time augmentation smoothing (pytorch-grad-cam's option):
            the map of each augmented input (:data:`AUGMENTATIONS`: horizontal flip or not, times
            0.9, 1 or 1.1), min-max normalized, un-flipped and averaged (see :meth:`__call__`).
        fuse: keyword-only; with several layers, ``"mean"`` (pytorch-grad-cam: mean of the
            per-layer min-max normalized, upsampled maps, normalized again) or ``"max"`` (torch-cam:
            their element-wise maximum). Fused maps are in [0, 1]; ``low_res`` is None.
    """

    shares_pass = True

    channel_weights: ClassVar[bool] = True
    """The map is ``ReLU( sum_k w_k F_k )`` with per-sample channel weights ``w``, built by
    :meth:`combine`; False where it is not (``eigen_smooth=True`` is then refused)."""

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | Sequence[LayerSpec] | None = None,
        channels: Sequence[int] | None = None,
        *,
        output: OutputFn | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        fuse: str = "mean",
    ) -> None:
        super().__init__(model, output=output)
        for name, value in (("eigen_smooth", eigen_smooth), ("aug_smooth", aug_smooth)):
            if not isinstance(value, bool):
                raise InputTypeError(f"{name} must be True or False, got {value!r}")
        if eigen_smooth and not self.channel_weights:
            raise InputError(
                f"{type(self).__name__} does not build its map as a per-channel weighted sum "
                "sum_k w_k F_k, so eigen_smooth=True has nothing to project; use eigen_smooth=False, "
                "or a method with channel weights (gradcam, gradcampp, xgradcam, scorecam, ...)"
            )
        self.eigen_smooth = eigen_smooth
        self.aug_smooth = aug_smooth
        if aug_smooth:  # six passes, one per augmentation: nothing to share with other explainers
            self.shares_pass = False  # type: ignore[misc]
        self.layer = layer
        self.fuse = check_fuse(fuse)
        # layer=[a, b, ...]: one map per layer, fused (see xcam.methods._fuse); one layer is that layer
        layers = list(layer) if isinstance(layer, (list, tuple)) else None
        if layers is not None and not layers:
            raise InputError("layer is an empty list; pass a layer, a list of layers, or None")
        self._taps = [resolve_layer(model, x) for x in layers] if layers and len(layers) > 1 else None
        single = cast(LayerSpec | None, layers[0] if layers is not None else layer)
        self._tap: Tap | None = None if single is None or self._taps else resolve_layer(model, single)
        if self._taps:
            self.shares_pass = False  # type: ignore[misc]  # one pass per layer: xcam.explain calls it
        if channels is not None:
            if isinstance(channels, (str, bytes)) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in channels
            ):
                raise InputTypeError("channels must be a sequence of ints (feature-map indices)")
            if len(channels) == 0:
                raise InputError("channels is empty; pass at least one feature-map index or None")
        self.channels = None if channels is None else [int(c) for c in channels]

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        out: dict[str, Any] = {"layer": self._tap.label if self._tap else self.layer}
        if getattr(self, "_taps", None):
            out["layer"] = [tap.label for tap in self._taps or []]
            out["fuse"] = self.fuse
        if self.channels is not None:
            out["channels"] = self.channels
        for flag in ("eigen_smooth", "aug_smooth"):
            if getattr(self, flag, False):
                out[flag] = True
        return out

    def combine(self, weights: Tensor, features: Tensor) -> Tensor:
        """The (B, h, w) map from (B, C) channel weights and (B, C, h, w) features.

        ``ReLU( sum_k w_k F_k )``; with ``eigen_smooth=True`` the channel sum is replaced by the
        projection of the weighted features ``w_k F_k`` on their first principal component
        (:func:`eigen_smooth`). Every method with channel weights builds its map here.
        """
        if self.eigen_smooth:
            return eigen_smooth(weights[:, :, None, None].to(features.dtype) * features)
        return weighted_sum(weights.to(features.dtype), features)

    def __call__(self, inputs: Tensor, targets: Targets | Target = None) -> Explanation:
        """See :meth:`Explainer.__call__`; ``layer=[...]``: one call per layer, the maps fused.

        With ``aug_smooth`` the maps of augmented inputs are averaged (per layer when fused):

        pytorch-grad-cam's test-time augmentation: for each ``(flip, factor)`` of
        :data:`AUGMENTATIONS` the method explains ``factor * x`` (flipped left-right when
        ``flip``) for the target chosen on the clean input, and the map is

            map = 1 / 6 * sum_a  unflip_a( minmax( map(aug_a(x)) ) )

        (``low_res`` alike at the layer's resolution), so the maps are in [0, 1]; each
        augmented map is min-max normalized before the mean, as pytorch-grad-cam does, so that
        the brighter copies do not weigh more. ``scores`` and ``targets`` are the clean input's.
        Cost: six explanations.
        """
        if getattr(self, "_taps", None):
            return self._fused(inputs, targets)
        if not getattr(self, "aug_smooth", False):
            return super().__call__(inputs, targets)
        clean = super().__call__(inputs, targets)
        x = inputs
        target = resolve(targets, int(x.shape[0]), self.output, self.model).fixed(clean.targets)
        maps: list[Tensor] = []
        lows: list[Tensor] = []
        for flip, factor in AUGMENTATIONS:
            if not flip and factor == 1.0:
                exp = clean
            else:
                augmented = x * factor
                exp = super().__call__(augmented.flip(-1) if flip else augmented, target)
            for out, part in ((maps, exp.maps), (lows, exp.low_res)):
                if part is not None:
                    part = normalize(part)
                    out.append(part.flip(-1) if flip else part)
        low_res = torch.stack(lows).mean(dim=0) if len(lows) == len(AUGMENTATIONS) else None
        return self.make_explanation(torch.stack(maps).mean(dim=0), clean.targets, clean.scores,
                                     low_res=low_res, layer=clean.layer)

    def _fused(self, inputs: Tensor, targets: Targets | Target) -> Explanation:
        """``layer=[...]``: this method on each layer, the maps fused (see :mod:`._fuse`)."""
        per_layer = []
        for tap in self._taps or []:
            one = copy.copy(self)
            one._taps, one._tap = None, tap
            per_layer.append(one(inputs, targets))
            self.mark_range_checked()
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        maps = fuse_maps([e.low_res if e.low_res is not None else e.maps for e in per_layer], size,
                         self.fuse)
        return replace(per_layer[0], maps=maps, low_res=None, params=self.params(),
                       layer="+".join(e.layer or "?" for e in per_layer))

    def tap(self, inputs: Tensor) -> Tap:
        """The explained layer; chosen automatically on the first call when ``layer=None``."""
        if self._tap is None:
            self._tap = auto_layer(self.model, inputs[:1], self.output)
        return self._tap

    def select(self, tensor: Tensor) -> Tensor:
        """Keep only the chosen ``channels`` of a (B, C, ...) tensor."""
        if self.channels is None:
            return tensor
        c = tensor.shape[1]
        bad = [k for k in self.channels if not 0 <= k < c]
        if bad:
            raise InputError(
                f"channels {bad} out of range: layer {self._tap.label if self._tap else '?'} "
                f"has {c} feature maps (valid 0..{c - 1})"
            )
        return tensor[:, self.channels]

    def run(self, inputs: Tensor, target: Target, *, gradients: bool) -> LayerPass:
        """One forward pass (and a backward pass to the layer when ``gradients``)."""
        tap = self.tap(inputs)
        return run_pass(self.model, inputs, target, [tap], [tap] if gradients else []).at(tap)

    def finish(self, inputs: Tensor, low_res: Tensor, lp: LayerPass) -> Explanation:
        """Upsample the (B, h, w) map to the input size and build the :class:`Explanation`."""
        low_res = low_res.float()
        maps = upsample(low_res, (int(inputs.shape[-2]), int(inputs.shape[-1])))
        return self.make_explanation(maps, lp.indices, lp.scores, low_res=low_res,
                                     layer=self._tap.label if self._tap else None)

    def pass_layers(self, inputs: Tensor, target: Target) -> list[Tap]:
        """See :meth:`Explainer.pass_layers`: the explained layer."""
        return [self.tap(inputs)]

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """One :func:`run_pass` at :meth:`pass_layers`, then :meth:`explain_pass`."""
        taps = self.pass_layers(inputs, target)
        shared = run_pass(self.model, inputs, target, taps, taps if self.needs_gradients else [])
        return self.explain_pass(inputs, target, shared)

    def explain_pass(self, inputs: Tensor, target: Target, shared: SharedPass) -> Explanation:
        """Select the channels at the explained layer and build the map with :meth:`low_res`."""
        lp = shared.at(self.tap(inputs))
        features = self.select(lp.features)
        grads = None if lp.grads is None else self.select(lp.grads)
        return self.finish(inputs, self.low_res(features, grads, lp), lp)

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map from the (channel-selected) features and gradients."""
        raise NotImplementedError(f"{type(self).__name__} must implement low_res or explain")
