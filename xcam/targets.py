"""Targets: what score an explainer explains.

Accepted everywhere ``targets=`` appears:

- ``None``: the top class of each sample (argmax of the model output);
- an ``int`` (or a numpy integer, or a 0-d integer tensor such as ``model(x).argmax()`` for one
  image): that class for every sample of the batch;
- a sequence of ints, a 1-D integer numpy array or ``LongTensor``: one class per sample (length =
  batch size); bools are refused (``True`` is not class 1);
- a callable ``f(output) -> Tensor (B,)``: any score computed from the model output, which it
  receives as the model returned it (a dict, a list of detections, ...);
- a unit of the network, :func:`channel` or :func:`neuron`: the score is that unit's activation
  (the Smooth Grad-CAM++ paper explains feature maps and neurons as well as classes);
- :class:`finer`: Finer-CAM's score, a class minus its most similar classes (any method);
- :class:`similarity`: the cosine similarity of the model's embedding to a reference vector (a
  caption's CLIP text embedding, another image's embedding; see :mod:`xcam.embeddings`).

:func:`resolve` turns any of these into one :class:`Target` object, once per explainer call (as
zennit's ``Attributor`` resolves its ``attr_output``): it knows the taps it reads, scores a model
output (:meth:`Target.evaluate`, :meth:`Target.score`), fixes the classes chosen on the clean
input (:meth:`Target.fixed`) and follows its samples into perturbed batches
(:meth:`Target.follow`). Nothing outside this module inspects the raw argument. Metrics read class
indices through :func:`class_indices` (against a model output) or :func:`parse_indices` (without
one).
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, ClassVar, Union

import torch
from torch import Tensor

from ._checks import check_later
from .embeddings import embedding
from .errors import NonFiniteError, TargetError
from .layers import Tap, resolve_layer, to_nchw
from .outputs import OutputFn, logits

if TYPE_CHECKING:
    from torch import nn

    from .capture import Capture

__all__ = [
    "Targets",
    "Target",
    "ClassTarget",
    "CallableTarget",
    "UnitScore",
    "UnitTarget",
    "resolve",
    "channel",
    "neuron",
    "class_scores",
    "class_indices",
    "parse_indices",
    "checked_classes",
    "as_indices",
    "segmentation",
    "detection",
    "finer",
    "FinerTarget",
    "similarity",
    "SimilarityTarget",
]


@dataclass(frozen=True)
class UnitTarget:
    """The activation of a unit at ``layer``: a whole feature map (``y``, ``x`` None) or a neuron.

    Score per sample: ``sum_ij F_k[i, j]`` for a feature map, ``F_k[y, x]`` for a neuron.
    """

    layer: object
    k: int
    y: int | None = None
    x: int | None = None

    def score(self, activation: Tensor) -> Tensor:
        """(B,) scores from the activation recorded at ``layer`` (B, C, h, w)."""
        if activation.dim() != 4:
            raise TargetError(
                f"unit target at layer {self.layer!r}: expected a (B, C, h, w) activation, got "
                f"shape {tuple(activation.shape)}"
            )
        c, h, w = activation.shape[1:]
        if not 0 <= self.k < c:
            raise TargetError(
                f"unit target k={self.k} is out of range: layer {self.layer!r} has {c} channels"
            )
        if self.y is None or self.x is None:
            return activation[:, self.k].sum(dim=(1, 2))
        if not (0 <= self.y < h and 0 <= self.x < w):
            raise TargetError(
                f"neuron target (y={self.y}, x={self.x}) is outside layer {self.layer!r}'s "
                f"{h}x{w} feature map"
            )
        return activation[:, self.k, self.y, self.x]


def channel(layer: object, k: int) -> UnitTarget:
    """Explain feature map ``k`` of ``layer``: score = ``sum_ij F_k[i, j]``."""
    return UnitTarget(layer, int(k))


def neuron(layer: object, k: int, y: int, x: int) -> UnitTarget:
    """Explain neuron ``(y, x)`` of feature map ``k`` of ``layer``: score = ``F_k[y, x]``."""
    return UnitTarget(layer, int(k), int(y), int(x))


Targets = Union[None, int, Sequence[int], Tensor, Callable[[Tensor], Tensor], UnitTarget]


def _is_bool(value: object) -> bool:
    """A Python or numpy bool scalar (``numpy.bool_``)."""
    if isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)
    return (type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0
            and getattr(dtype, "kind", "") == "b")


def as_indices(targets: object, batch_size: int, device: torch.device) -> Tensor:
    """(B,) LongTensor of class indices from an int, a sequence, a tensor or a numpy array."""
    if _is_bool(targets):
        raise TargetError(
            f"targets must be a class index, not a bool ({targets!r}); True / False are not classes "
            "0 / 1: pass an int"
        )
    if isinstance(targets, Integral):  # int, numpy.int64, ...
        return torch.full((batch_size,), int(targets), dtype=torch.long, device=device)
    if type(targets).__module__ == "numpy" and hasattr(targets, "dtype"):  # numpy array
        targets = torch.tensor(targets)  # a copy: read-only arrays are fine
    if isinstance(targets, Tensor):
        if targets.dtype == torch.bool:
            raise TargetError(
                f"targets is a bool tensor of shape {tuple(targets.shape)}; True / False are not "
                "classes 0 / 1: pass class indices as an integer tensor, e.g. mask.long() or "
                "mask.nonzero()"
            )
        if targets.dtype.is_floating_point or targets.dtype.is_complex:
            raise TargetError(
                f"targets tensor must be an integer tensor (one class index per sample), got dtype "
                f"{targets.dtype} and shape {tuple(targets.shape)}; use targets.long() if the values "
                "are class indices"
            )
        if targets.dim() == 0:  # model(x).argmax() for one image, or one class for all
            return targets.to(device=device, dtype=torch.long).reshape(1).repeat(batch_size)
        if targets.dim() != 1:
            raise TargetError(
                f"targets tensor must be a 1-D integer tensor of length {batch_size}, got shape "
                f"{tuple(targets.shape)}; for model(x).argmax use model(x).argmax(dim=1)"
            )
        return targets.to(device=device, dtype=torch.long)
    if isinstance(targets, Sequence) and not isinstance(targets, (str, bytes)):
        if any(_is_bool(t) for t in targets) or not all(isinstance(t, Integral) for t in targets):
            raise TargetError(
                "targets sequence must hold ints, one class index per sample; got "
                f"{[type(t).__name__ for t in targets][:4]}"
            )
        return torch.tensor([int(t) for t in targets], dtype=torch.long, device=device)
    raise TargetError(
        "targets must be None, an int, a sequence, numpy array or LongTensor of ints, a callable, "
        f"xcam.targets.channel/neuron or finer; got {type(targets).__name__}"
    )


def _check_finite(values: Tensor, what: str) -> None:
    """Raise :class:`~xcam.errors.NonFiniteError` when ``values`` hold NaN or infinite entries."""
    n_bad = torch.isfinite(values.detach()).logical_not().sum()

    def fail() -> None:
        raise NonFiniteError(
            f"{what} holds {int(n_bad)} NaN or infinite values, so every map of it would be NaN or "
            "meaningless; check the model's weights (e.g. torch.isfinite(p).all() for each "
            "parameter) and the inputs' scale"
        )

    check_later(n_bad > 0, fail)


def _callable_scores(fn: Callable[..., object], output: object, batch_size: int) -> Tensor:
    """The (B,) scores a targets callable returns for ``output``, checked for shape and NaN."""
    scores = fn(output)
    if not isinstance(scores, Tensor) or scores.shape != (batch_size,):
        got: object = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise TargetError(
            f"targets: the callable must return a tensor of shape ({batch_size},), one score "
            f"per image of the {batch_size} in the model output it receives; it returned {got}"
        )
    _check_finite(scores, "the score the targets callable returned")
    return scores


def class_scores(
    targets: Targets, output: object, batch_size: int, output_fn: OutputFn | None = None
) -> tuple[Tensor | None, Tensor]:
    """Resolve class targets against a model output.

    Args:
        targets: ``None``, an int (Python or numpy), a sequence / numpy array / integer tensor
            (one per sample), a 0-d integer tensor (``model(x).argmax()`` for one image: the same
            class for every sample), or a callable.
        output: the model output. A callable target receives it as it is; class targets read the
            (B, K) scores in it through :func:`xcam.outputs.logits` (tensor, ``.logits``,
            ``"logits"`` / ``"out"`` entry, first element of a tuple).
        batch_size: B.
        output_fn: replaces the rules of :func:`xcam.outputs.logits` (the explainers' ``output=``).

    Returns:
        ``(indices, scores)``: the class index per sample as a (B,) LongTensor (``None`` for a
        callable) and the (B,) scores, still connected to autograd.

    Raises:
        TargetError: wrong length, out-of-range class, bool targets, or an output without classes.
        OutputError: no tensor of scores in the output (see :mod:`xcam.outputs`).
        NonFiniteError: NaN or infinite scores.
    """
    if isinstance(targets, UnitTarget):
        raise TargetError("unit targets are resolved by the explainer, not by class_scores")
    if callable(targets) and not isinstance(targets, Tensor):
        return None, _callable_scores(targets, output, batch_size)
    output = logits(output, output_fn)
    if output.dim() != 2 or output.shape[0] != batch_size:
        raise TargetError(
            f"targets: class targets need a model output of shape (B, classes) = ({batch_size}, K), "
            f"got {tuple(output.shape)}; pass a callable targets=lambda out: ... that returns one "
            "score per sample, or output=lambda out: ... that returns the (B, classes) scores"
        )
    _check_finite(output, f"the model output ({tuple(output.shape)})")
    n_classes = output.shape[1]
    if targets is None:
        indices = output.detach().argmax(dim=1)
    else:
        indices = as_indices(targets, batch_size, output.device)
        if indices.shape[0] != batch_size:
            raise TargetError(
                f"targets has {indices.shape[0]} entries for a batch of {batch_size}; pass one "
                "class per sample, or a single int for the same class everywhere"
            )
    if targets is not None:  # argmax is in range; given classes are checked
        indices = checked_classes(targets, indices, n_classes)
    scores = output.gather(1, indices[:, None]).squeeze(1)
    return indices, scores


def checked_classes(targets: object, indices: Tensor, n_classes: int) -> Tensor:
    """``indices``, with a :class:`TargetError` for a class outside ``0..n_classes - 1``.

    Python ints are checked on the host. A tensor of classes is checked with
    :func:`xcam._checks.check_later` (no device sync inside an explainer call on an accelerator)
    and clamped into range meanwhile, so that no out-of-range index reaches a device kernel.
    """

    def fail(bad: int) -> None:
        hint = ""
        if isinstance(targets, Tensor) and targets.dim() == 0 and bad >= n_classes:
            hint = "; model(x).argmax() over a batch is a flat index: use model(x).argmax(dim=1)"
        raise TargetError(
            f"targets: class {bad} is out of range for a model with {n_classes} outputs "
            f"(valid: 0..{n_classes - 1}){hint}"
        )

    if not indices.numel():
        return indices
    if isinstance(targets, (Integral, Sequence)):  # ints given on the host: no device value to read
        values = [int(targets)] if isinstance(targets, Integral) else [int(t) for t in targets]
        for value in values:
            if not 0 <= value < n_classes:
                fail(value)
        return indices
    outside = (indices < 0) | (indices >= n_classes)
    check_later(outside.any(), lambda: fail(int(indices[outside][0])))
    return indices.clamp(0, n_classes - 1)


class Target(abc.ABC):
    """Targets resolved once per call: what score an explainer explains (see :func:`resolve`).

    Attributes:
        batch_size: B, the number of samples the target scores.
        output_fn: the explainer's ``output=`` (reads class scores; see :mod:`xcam.outputs`).
        is_class: the score is a class score (indices known per sample after a pass).
        reads_layer: the score is read at a layer (a unit target): :meth:`taps` is not empty.
    """

    is_class: ClassVar[bool] = False
    reads_layer: ClassVar[bool] = False

    def __init__(self, batch_size: int, output_fn: OutputFn | None = None) -> None:
        self.batch_size = batch_size
        self.output_fn = output_fn

    def taps(self, model: nn.Module) -> list[Tap]:
        """The taps the score reads (one for a unit target), to record inside a capture."""
        return []

    @property
    def classes(self) -> Tensor | None:
        """The (B,) class per sample when already known (a fixed class target), else None."""
        return None

    @property
    def columns(self) -> Tensor | None:
        """For libraries that batch inputs on their own (captum): None, or (B,) column indices.

        When not None, :meth:`raw_score` returns (n, m) scores (every row of any batch against
        each of the m per-image terms, e.g. a :class:`similarity` reference per image) and the
        library picks column ``columns[b]`` for the copies of image ``b``, as it does for classes.
        """
        return None

    @abc.abstractmethod
    def evaluate(
        self, output: object, capture: Capture | None = None, *, size: tuple[int, int] | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """``(indices, scores)`` on a batch just run.

        The class per sample (None if not a class target) and the (B,) scores, still connected
        to autograd.

        Args:
            output: the model output, as the model returned it.
            capture: the capture the batch ran inside (needed by unit targets).
            size: the input's (H, W); unit targets then read the layer through
                :func:`xcam.layers.to_nchw` (token grids, channels-last maps).
        """

    def score(
        self, output: object, capture: Capture | None = None, *, size: tuple[int, int] | None = None
    ) -> Tensor:
        """The (B,) scores of :meth:`evaluate`."""
        return self.evaluate(output, capture, size=size)[1]

    def raw_score(self, output: object, capture: Capture | None = None) -> object:
        """The score of any batch size, as unchecked as possible.

        For libraries such as captum that batch the inputs on their own; :meth:`score` for unit
        targets.
        """
        return self.score(output, capture)

    def on_logits(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """``(indices, scores)`` of class targets on (B, K) class scores already read out."""
        raise TargetError(
            f"this method needs class targets (None, an int or one class per sample); got a "
            f"{self.kind} target"
        )

    def fixed(self, indices: Tensor | None) -> Target:
        """The target for every modified copy, given the clean pass's ``indices``.

        Class targets become the classes chosen on the clean input (so ``targets=None`` explains
        the clean input's top class throughout); callables and unit targets stay as they are.
        """
        return self

    def follow(self, rows: Tensor) -> Target:
        """The target of a batch whose row ``r`` copies sample ``rows[r]``."""
        return self.resized(int(rows.shape[0]))

    @abc.abstractmethod
    def resized(self, batch_size: int) -> Target:
        """The same target for a batch of ``batch_size`` samples."""

    def with_output(self, output_fn: OutputFn | None) -> Target:
        """The same target reading class scores through another explainer's ``output=``."""
        new = copy.copy(self)
        new.output_fn = output_fn
        return new

    @property
    def kind(self) -> str:
        """``"class"``, ``"callable"`` or ``"unit"``, for messages."""
        return "class" if self.is_class else "unit" if self.reads_layer else "callable"

    def require_classes(self, message: str) -> Target:
        """``self`` for class targets; otherwise :class:`~xcam.errors.TargetError` (``message``)."""
        if not self.is_class:
            raise TargetError(message)
        return self

    def indices(self, output: object) -> Tensor:
        """(B,) class indices against a model output (class targets only)."""
        raise TargetError(f"a {self.kind} target has no class indices; pass class targets")


class ClassTarget(Target):
    """Class targets: None (the top class), an int, or one class per sample."""

    is_class: ClassVar[bool] = True

    def __init__(self, spec: object, batch_size: int, output_fn: OutputFn | None = None) -> None:
        super().__init__(batch_size, output_fn)
        self.spec = spec

    @property
    def classes(self) -> Tensor | None:
        """The (B,) class per sample when fixed by :meth:`fixed` (a 1-D tensor), else None."""
        if isinstance(self.spec, Tensor) and self.spec.dim() == 1:
            return self.spec
        return None

    def evaluate(
        self, output: object, capture: Capture | None = None, *, size: tuple[int, int] | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """See :meth:`Target.evaluate`; reads the class scores through ``output_fn``."""
        return class_scores(self.spec, output, self.batch_size, self.output_fn)  # type: ignore[arg-type]

    def on_logits(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """See :meth:`Target.on_logits`."""
        indices, picked = class_scores(self.spec, scores, int(scores.shape[0]))  # type: ignore[arg-type]
        assert indices is not None  # class targets always give indices
        return indices, picked

    def indices(self, output: object) -> Tensor:
        """See :meth:`Target.indices`."""
        indices = self.evaluate(output)[0]
        assert indices is not None  # class targets always give indices
        return indices

    def fixed(self, indices: Tensor | None) -> Target:
        """See :meth:`Target.fixed`."""
        return self if indices is None else ClassTarget(indices, self.batch_size, self.output_fn)

    def follow(self, rows: Tensor) -> Target:
        """See :meth:`Target.follow`: fixed classes follow their samples."""
        spec = self.spec[rows] if isinstance(self.spec, Tensor) and self.spec.dim() == 1 else self.spec
        return ClassTarget(spec, int(rows.shape[0]), self.output_fn)

    def resized(self, batch_size: int) -> Target:
        """See :meth:`Target.resized`."""
        return ClassTarget(self.spec, batch_size, self.output_fn)


class CallableTarget(Target):
    """A callable ``f(output) -> Tensor (B,)``: any score computed from the raw model output."""

    def __init__(self, fn: Callable[..., object], batch_size: int,
                 output_fn: OutputFn | None = None) -> None:
        super().__init__(batch_size, output_fn)
        self.fn = fn

    def evaluate(
        self, output: object, capture: Capture | None = None, *, size: tuple[int, int] | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """See :meth:`Target.evaluate`: the callable's scores, checked for shape and NaN."""
        return None, _callable_scores(self.fn, output, self.batch_size)

    def raw_score(self, output: object, capture: Capture | None = None) -> object:
        """See :meth:`Target.raw_score`: the callable's value, unchecked."""
        return self.fn(output)

    def resized(self, batch_size: int) -> Target:
        """See :meth:`Target.resized`."""
        return CallableTarget(self.fn, batch_size, self.output_fn)


class UnitScore(Target):
    """A unit target (:func:`channel`, :func:`neuron`): the score is read at a layer."""

    reads_layer: ClassVar[bool] = True

    def __init__(self, unit: UnitTarget, batch_size: int, output_fn: OutputFn | None = None,
                 tap: Tap | None = None, model: nn.Module | None = None) -> None:
        super().__init__(batch_size, output_fn)
        self.unit = unit
        # resolved once, by resolve(..., model=) or the first taps(model)
        self.tap, self.model = tap, model

    def taps(self, model: nn.Module) -> list[Tap]:
        """See :meth:`Target.taps`: the unit's layer, resolved once against ``model``."""
        if self.tap is None or model is not self.model:
            self.tap, self.model = resolve_layer(model, self.unit.layer), model  # type: ignore[arg-type]
        return [self.tap]

    def evaluate(
        self, output: object, capture: Capture | None = None, *, size: tuple[int, int] | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """See :meth:`Target.evaluate`: the unit's activation in ``capture``."""
        if capture is None:
            raise TargetError(f"unit target at layer {self.unit.layer!r} needs the pass's capture")
        tap = self.taps(capture.model)[0]
        activation = capture[tap]
        if size is not None:
            activation = to_nchw(activation, size, tap)
        return None, self.unit.score(activation)

    def resized(self, batch_size: int) -> Target:
        """See :meth:`Target.resized`."""
        return UnitScore(self.unit, batch_size, self.output_fn, self.tap, self.model)


def resolve(
    targets: Targets | Target, batch_size: int, output_fn: OutputFn | None = None,
    model: nn.Module | None = None,
) -> Target:
    """Turn the ``targets=`` of an explainer call into one :class:`Target` (see the module doc).

    Nothing is checked against a model output yet: a wrong class or length is reported when the
    target first scores a pass, with the same errors as :func:`class_scores`.

    Args:
        targets: None, an int, a sequence / numpy array / integer tensor, a callable, a unit
            target, or an already resolved :class:`Target` (returned as it is).
        batch_size: B.
        output_fn: the explainer's ``output=``.
        model: the explained model; a unit target's layer is then resolved here, once per call.
    """
    if isinstance(targets, Target):
        return targets
    if isinstance(targets, finer):
        return FinerTarget(targets, batch_size, output_fn)
    if isinstance(targets, similarity):
        return SimilarityTarget(targets, batch_size, output_fn)
    if isinstance(targets, UnitTarget):
        tap = None if model is None else resolve_layer(model, targets.layer)  # type: ignore[arg-type]
        return UnitScore(targets, batch_size, output_fn, tap, model)
    if callable(targets) and not isinstance(targets, Tensor):
        return CallableTarget(targets, batch_size, output_fn)
    return ClassTarget(targets, batch_size, output_fn)


def class_indices(targets: object, output: Tensor, message: str | None = None) -> Tensor:
    """(B,) class indices of ``targets`` on (B, K) class scores ``output``.

    ``targets`` is None (the top class), an int, a sequence or a tensor; this is the one
    class-target parser that metrics call.

    Raises:
        TargetError: callable or unit targets (``message`` when given), or the errors of
            :func:`class_scores`.
    """
    message = message or (
        "targets: metrics score the softmax probability or logit of a class, so they need class "
        f"indices (None, an int, a sequence or a LongTensor), got {type(targets).__name__}"
    )
    target = resolve(targets, int(output.shape[0])).require_classes(message)  # type: ignore[arg-type]
    return target.indices(output)


def parse_indices(targets: object, batch_size: int, device: torch.device,
                  message: str | None = None) -> Tensor | None:
    """(B,) class indices of ``targets`` without a model output; None stays None.

    Checks the length and that no index is negative (the upper bound needs the output).

    Raises:
        TargetError: callable or unit targets (``message`` when given), a wrong length, a negative
            index, bools, or a type that holds no class indices.
    """
    if targets is None:
        return None
    message = message or (
        "targets: this metric explains class scores, so it needs class indices (None, an int, a "
        f"sequence, a numpy array or a LongTensor), got {type(targets).__name__}"
    )
    resolve(targets, batch_size).require_classes(message)  # type: ignore[arg-type]
    indices = as_indices(targets, batch_size, device)
    if indices.shape[0] != batch_size:
        raise TargetError(f"targets has {indices.shape[0]} entries for a batch of {batch_size}; "
                          "pass one class per sample, or a single int")
    if bool((indices < 0).any()):
        raise TargetError(f"targets hold a negative class index {int(indices.min())}; class "
                          "indices start at 0")
    return indices


class segmentation:  # noqa: N801 - used like a function: targets=segmentation(c)
    """Score for segmentation models: the sum of class ``c``'s logits over a mask or the image.

    Works with torchvision's segmentation models (output ``{"out": (B, K, H, W), ...}``) and with
    any model returning a (B, K, H, W) tensor.

    Args:
        class_index: the class whose logits are summed.
        mask: optional boolean (H, W) or (B, H, W) mask at the output's resolution; default the
            whole image.
    """

    def __init__(self, class_index: int, mask: Tensor | None = None) -> None:
        if not isinstance(class_index, int) or isinstance(class_index, bool) or class_index < 0:
            raise TargetError(f"class_index must be an int >= 0, got {class_index!r}")
        self.class_index = class_index
        self.mask = mask

    def __call__(self, output: object) -> Tensor:
        """(B,) scores from the model output (see the class docstring)."""
        logits = output["out"] if isinstance(output, dict) else output
        if not isinstance(logits, Tensor) or logits.dim() != 4:
            raise TargetError(
                "segmentation targets need an output (B, K, H, W) or a dict with key 'out'; got "
                f"{type(output).__name__}"
            )
        if self.class_index >= logits.shape[1]:
            raise TargetError(
                f"segmentation class {self.class_index} is out of range for {logits.shape[1]} classes"
            )
        plane = logits[:, self.class_index]
        if self.mask is None:
            return plane.sum(dim=(1, 2))
        mask = self.mask.to(device=plane.device, dtype=plane.dtype)
        if mask.shape[-2:] != plane.shape[-2:]:
            raise TargetError(
                f"mask has spatial shape {tuple(mask.shape[-2:])}, the output "
                f"{tuple(plane.shape[-2:])}; resize the mask to the output"
            )
        return (plane * mask).sum(dim=(1, 2))


class detection:  # noqa: N801 - used like a function: targets=detection(label=3)
    """Score for torchvision detection models: one detection's score per image.

    The output of a detection model in eval mode is a list of dicts with ``boxes``, ``labels`` and
    ``scores``; the scores stay connected to autograd. Per image, this picks the detection with
    the highest score among those with ``label`` (any label when None), or, when ``box`` is given,
    the one that overlaps it most (IoU).

    Raises:
        TargetError: an image has no matching detection (lower the model's ``box_score_thresh``).
    """

    def __init__(self, label: int | None = None, box: Sequence[float] | Tensor | None = None) -> None:
        self.label = label
        self.box = None if box is None else torch.as_tensor(box, dtype=torch.float32)

    def __call__(self, output: object) -> Tensor:
        """(B,) scores from the model output (see the class docstring)."""
        if not isinstance(output, (list, tuple)) or not all(isinstance(o, dict) for o in output):
            raise TargetError(
                "detection targets need the list of dicts a torchvision detection model returns "
                f"in eval mode; got {type(output).__name__}"
            )
        scores = []
        for b, det in enumerate(output):
            keep = torch.ones_like(det["scores"], dtype=torch.bool)
            if self.label is not None:
                keep = det["labels"] == self.label
            if not bool(keep.any()):
                raise TargetError(
                    f"image {b} has no detection{'' if self.label is None else f' of label {self.label}'}; "
                    "lower the model's box_score_thresh or choose another label"
                )
            idx = torch.nonzero(keep).flatten()
            if self.box is None:
                best = idx[det["scores"][idx].argmax()]
            else:
                from torchvision.ops import box_iou

                ious = box_iou(self.box[None].to(det["boxes"].device), det["boxes"][idx].detach())[0]
                best = idx[ious.argmax()]
            scores.append(det["scores"][best])
        return torch.stack(scores)


class finer:  # noqa: N801 - used like a function: targets=finer(c, alpha=1.0, k=1)
    """Finer-CAM's score: class ``c`` minus ``alpha`` times the mean of its ``k`` most similar classes.

    Zhang, Wang, Mai & Chao, "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual
    Explanation", CVPR 2025. With ``S`` the class scores (logits) and ``N_k(c)`` the ``k`` classes
    with the highest scores other than ``c`` on the clean input::

        S_finer = S_c - alpha * mean_{j in N_k(c)} S_j

    Any explainer then explains what sets ``c`` apart from the classes it is confused with
    (``alpha = 0`` gives the plain class score). The comparison classes are chosen once, on the
    clean pass, and kept for every modified copy (occlusion, Score-CAM, Ablation-CAM), as class
    targets keep their class.

    Differences from pytorch-grad-cam's ``FinerCAM`` / ``FinerWeightedTarget``: it ranks classes by
    the closeness of their logit to ``c``'s (``|S_j - S_c|``; the same classes when ``c`` is the
    top class) and weighs the differences by the comparison classes' softmax probabilities
    (differentiated too): ``sum_j p_j (S_c - alpha S_j) / sum_j p_j``. With ``k = 1`` the two
    scores coincide; with ``k > 1`` they are ranked alike but not equal.

    Args:
        c: the explained class, or None for each sample's top class.
        alpha: weight of the comparison classes (>= 0).
        k: number of comparison classes (>= 1, fewer than the number of classes).

    Example:
        >>> xcam.GradCAM(model, "layer4")(x, targets=xcam.targets.finer(281, alpha=1.0, k=3))
    """

    def __init__(self, c: int | None = None, alpha: float = 1.0, k: int = 1) -> None:
        if c is not None and (not isinstance(c, Integral) or isinstance(c, bool) or int(c) < 0):
            raise TargetError(f"finer: c must be a class index >= 0 or None (the top class), got {c!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise TargetError(f"finer: alpha must be a number >= 0, got {alpha!r}")
        if not isinstance(k, Integral) or isinstance(k, bool) or int(k) < 1:
            raise TargetError(f"finer: k must be an int >= 1 (comparison classes), got {k!r}")
        self.c: int | None = None if c is None else int(c)
        self.alpha: float = float(alpha)
        self.k: int = int(k)

    def __repr__(self) -> str:
        return f"finer(c={self.c!r}, alpha={self.alpha!r}, k={self.k!r})"

    def choose(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """``(classes, comparisons)``: (B,) explained classes and (B, k) comparison classes."""
        b, n = scores.shape
        if self.k >= n:
            raise TargetError(f"finer: k={self.k} comparison classes need more than {self.k} classes; "
                              f"the model has {n}: lower k")
        values = scores.detach()
        if self.c is None:
            classes = values.argmax(dim=1)
        else:
            if self.c >= n:
                raise TargetError(f"finer: class {self.c} is out of range for a model with {n} outputs "
                                  f"(valid: 0..{n - 1})")
            classes = torch.full((b,), self.c, dtype=torch.long, device=scores.device)
        others = values.scatter(1, classes[:, None], float("-inf"))
        return classes, others.topk(self.k, dim=1).indices

    def score(self, scores: Tensor, classes: Tensor, comparisons: Tensor) -> Tensor:
        """(B,) Finer scores on (B, K) class scores for fixed classes and comparisons."""
        own = scores.gather(1, classes[:, None])[:, 0]
        return own - self.alpha * scores.gather(1, comparisons).mean(dim=1)

    def __call__(self, output: object) -> Tensor:
        """(B,) scores, the comparison classes chosen on this very output (a plain callable)."""
        scores = logits(output)
        return self.score(scores, *self.choose(scores))


class FinerTarget(Target):
    """A :class:`finer` target resolved for a call: scores a class against its similar classes.

    The comparison classes come from the first batch it scores (the clean pass);
    :meth:`fixed` keeps them, and the explained classes, for every modified copy.
    """

    def __init__(self, spec: finer, batch_size: int, output_fn: OutputFn | None = None,
                 chosen: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__(batch_size, output_fn)
        self.spec = spec
        self.chosen = chosen
        self._last: tuple[Tensor, Tensor] | None = None

    def evaluate(
        self, output: object, capture: Capture | None = None, *, size: tuple[int, int] | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """See :meth:`Target.evaluate`: the Finer score, checked for shape and NaN."""
        scores = logits(output, self.output_fn)
        if scores.dim() != 2 or scores.shape[0] != self.batch_size:
            raise TargetError(
                f"finer targets need a model output of shape (B, classes) = ({self.batch_size}, K), "
                f"got {tuple(scores.shape)}; pass output=lambda out: ... that returns the class scores"
            )
        _check_finite(scores, f"the model output ({tuple(scores.shape)})")
        chosen = self.chosen if self.chosen is not None else self.spec.choose(scores)
        self._last = chosen
        return None, self.spec.score(scores, *chosen)

    def raw_score(self, output: object, capture: Capture | None = None) -> object:
        """See :meth:`Target.raw_score`: any batch size (fixed classes when the size matches)."""
        scores = logits(output, self.output_fn)
        chosen = self.chosen
        if chosen is None or chosen[0].shape[0] != scores.shape[0]:
            chosen = self.spec.choose(scores)
        return self.spec.score(scores, *chosen)

    def fixed(self, indices: Tensor | None) -> Target:
        """See :meth:`Target.fixed`: the classes of the last (clean) pass, kept."""
        chosen = self.chosen or self._last
        return FinerTarget(self.spec, self.batch_size, self.output_fn, chosen)

    def follow(self, rows: Tensor) -> Target:
        """See :meth:`Target.follow`: fixed classes follow their samples."""
        chosen = None if self.chosen is None else (self.chosen[0][rows], self.chosen[1][rows])
        return FinerTarget(self.spec, int(rows.shape[0]), self.output_fn, chosen)

    def resized(self, batch_size: int) -> Target:
        """See :meth:`Target.resized` (fixed classes are kept when the size is the same)."""
        keep = self.chosen is not None and self.chosen[0].shape[0] == batch_size
        return FinerTarget(self.spec, batch_size, self.output_fn, self.chosen if keep else None)


class similarity:  # noqa: N801 - used like a function: targets=similarity(text_embedding)
    """Score: the cosine similarity of the model's image embedding to a reference vector.

    With ``e`` the (B, D) embedding the model returns (found by :func:`xcam.embeddings.embedding`:
    a tensor, ``image_embeds``, ``image_features``, ``pooler_output``, or the first element of a
    tuple) and ``r`` the reference, the score of image ``b`` is::

        S_b = <e_b, r_b> / (max(||e_b||, eps) ||r_b||)

    so any explainer shows why an image matches a caption (CLIP: ``r`` = the caption's text
    embedding) or another image (retrieval: ``r`` = that image's embedding). Two-tower models
    (Hugging Face ``CLIPModel``, open_clip's ``CLIP``) are explained through their image tower
    (:func:`xcam.embeddings.image_model`); no wrapper is needed.

    Relation to class targets: on a classifier ``h(x) = W e(x) / ||e(x)||`` (a bias-free linear
    head on the L2-normalized embedding, as CLIP's zero-shot classifier), ``S = h_c(x) / ||w_c||``
    for ``r = w_c``: the similarity target is the class-``c`` score divided by the positive
    constant ``||w_c||``, so every map linear in the score (Grad-CAM, HiResCAM, XGrad-CAM,
    LayerCAM, occlusion, ...) is the class-``c`` map of ``h`` divided by ``||w_c||``. Without the
    normalization (``h = W e``) they differ: the gradient of ``S`` is
    ``(w_c / ||w_c|| - S e / ||e||) . de / ||e||``, not proportional to that of ``w_c . e``.

    Args:
        reference: a (D,) vector for every image, or (B, D): one per image of the batch (a
            tensor, a numpy array or a sequence of floats; detached and copied).
        eps: lower bound of ``||e_b||`` (a zero embedding scores 0, not NaN).

    Raises:
        TargetError: not a 1-D or 2-D array of numbers, or a reference of norm 0.
        NonFiniteError: NaN or infinite entries in the reference.

    Example:
        >>> text = clip.get_text_features(**tokens)  # (1, D) -> reference (D,)
        >>> xcam.GradCAM(clip, layer)(pixels, targets=xcam.targets.similarity(text[0]))
    """

    def __init__(self, reference: object, eps: float = 1e-8) -> None:
        if _is_bool(reference) or (isinstance(reference, Tensor) and reference.dtype == torch.bool):
            raise TargetError("similarity: reference must be a vector of numbers, got bools")
        try:
            ref = torch.as_tensor(reference.detach() if isinstance(reference, Tensor) else reference)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TargetError(
                f"similarity: reference must be a (D,) or (B, D) tensor, numpy array or sequence of "
                f"numbers, got {type(reference).__name__} ({err})"
            ) from None
        if ref.dtype == torch.bool or ref.is_complex():
            raise TargetError(f"similarity: reference must hold real numbers, got dtype {ref.dtype}")
        if not ref.dtype.is_floating_point:
            ref = ref.float()
        if ref.dim() not in (1, 2) or ref.numel() == 0:
            raise TargetError(
                f"similarity: reference must be a (D,) vector or (B, D) with one row per image, got "
                f"shape {tuple(ref.shape)}; e.g. text_embeds[0] for one caption"
            )
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise TargetError(f"similarity: eps must be a number > 0, got {eps!r}")
        bad = int(torch.isfinite(ref).logical_not().sum())  # once, at construction: eager
        if bad:
            raise NonFiniteError(
                f"similarity: the reference {tuple(ref.shape)} holds {bad} NaN or infinite values; "
                "pass a finite vector (check the text or image embedding it came from)"
            )
        rows = ref.reshape(-1, ref.shape[-1]).clone()
        norms = rows.double().norm(dim=1)
        if bool((norms == 0).any()):
            bad = (norms == 0).nonzero().flatten().tolist()
            which = "the reference" if ref.dim() == 1 else f"reference rows {bad[:8]}"
            raise TargetError(
                f"similarity: {which} has norm 0, and the cosine similarity to a zero vector is "
                "undefined; pass a non-zero reference (e.g. the caption's text embedding)"
            )
        self.reference = rows  # (1, D) or (B, D)
        self.direction = (rows.double() / norms[:, None]).to(rows.dtype)  # unit rows
        self.per_image = ref.dim() == 2
        self.eps = float(eps)

    @property
    def dim(self) -> int:
        """D, the embedding size the reference expects."""
        return int(self.reference.shape[1])

    def __repr__(self) -> str:
        shape = tuple(self.reference.shape) if self.per_image else (self.dim,)
        return f"similarity(reference of shape {shape})"

    def embedding(self, output: object, output_fn: OutputFn | None = None) -> Tensor:
        """The (n, D) embedding in a model output, checked against the reference."""
        emb = embedding(output, output_fn)
        if emb.dim() != 2:
            hint = ("; it looks like a token sequence (B, N, D): pass output=lambda out: out[:, 0] "
                    "(the class token) or out.mean(1)") if emb.dim() == 3 else (
                    "; pass output=lambda out: ... returning the (B, D) embedding")
            raise TargetError(
                f"similarity: the model's embedding must be (B, D), got shape {tuple(emb.shape)}{hint}"
            )
        if emb.shape[1] != self.dim:
            raise TargetError(
                f"similarity: the reference has D={self.dim} entries but the model's embedding "
                f"has D={emb.shape[1]}; pass a reference from the same embedding space (for CLIP: "
                "the projected text embedding, get_text_features / encode_text, with the image "
                "tower's projection)"
            )
        _check_finite(emb, f"the model's embedding ({tuple(emb.shape)})")
        return emb

    def cosine(self, emb: Tensor, direction: Tensor) -> Tensor:
        """Cosine of (n, D) embeddings with (m, D) unit rows; n = m, or either is 1 (broadcast)."""
        n, m = int(emb.shape[0]), int(direction.shape[0])
        if n != m and 1 not in (n, m):
            raise TargetError(
                f"similarity: {m} references (one per image) for a batch of {n} embeddings; pass "
                "one (D,) reference for every image, or a (B, D) reference with one row per image"
            )
        direction = direction.to(device=emb.device, dtype=emb.dtype)
        norms: Tensor = emb.norm(dim=1).clamp_min(self.eps)
        return (emb * direction).sum(dim=1) / norms

    def __call__(self, output: object) -> Tensor:
        """(B,) scores on a model output (a plain callable: every image against its reference)."""
        return self.cosine(self.embedding(output), self.direction)


class SimilarityTarget(Target):
    """A :class:`similarity` target resolved for a call (see that class for the score).

    Per-image references follow their images into modified copies (:meth:`follow`); a single
    reference applies to every image.
    """

    def __init__(self, spec: similarity, batch_size: int, output_fn: OutputFn | None = None,
                 direction: Tensor | None = None) -> None:
        super().__init__(batch_size, output_fn)
        self.spec = spec
        self.direction = spec.direction if direction is None else direction  # (m, D) unit rows
        m = int(self.direction.shape[0])
        if direction is None and m != 1 and m != batch_size:
            raise TargetError(
                f"similarity: the reference holds {m} rows (one per image) for a batch of "
                f"{batch_size} images; pass one (D,) reference for every image or one row per image"
            )

    def evaluate(
        self, output: object, capture: Capture | None = None, *, size: tuple[int, int] | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """See :meth:`Target.evaluate`: the cosine similarities, checked for shape and NaN."""
        return None, self.spec.cosine(self.spec.embedding(output, self.output_fn), self.direction)

    @property
    def columns(self) -> Tensor | None:
        """See :meth:`Target.columns`: one column per image when there is one reference per image."""
        m = int(self.direction.shape[0])
        return None if m == 1 else torch.arange(m, device=self.direction.device)

    def raw_score(self, output: object, capture: Capture | None = None) -> object:
        """See :meth:`Target.raw_score`: (n,) for one reference, else (n, m) against every reference."""
        emb = self.spec.embedding(output, self.output_fn)
        if self.direction.shape[0] == 1:
            return self.spec.cosine(emb, self.direction)
        direction = self.direction.to(device=emb.device, dtype=emb.dtype)
        return emb @ direction.T / emb.norm(dim=1, keepdim=True).clamp_min(self.spec.eps)

    def follow(self, rows: Tensor) -> Target:
        """See :meth:`Target.follow`: per-image references follow their images."""
        direction = self.direction
        if direction.shape[0] > 1:
            direction = direction[rows.to(direction.device)]
        return SimilarityTarget(self.spec, int(rows.shape[0]), self.output_fn, direction)

    def resized(self, batch_size: int) -> Target:
        """See :meth:`Target.resized`: the references are kept (one image scores against all)."""
        return SimilarityTarget(self.spec, batch_size, self.output_fn, self.direction)
