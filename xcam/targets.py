"""Targets: what score an explainer explains.

Accepted everywhere ``targets=`` appears:

- ``None``: the top class of each sample (argmax of the model output);
- an ``int``: that class for every sample of the batch;
- a sequence of ints or a 1-D ``LongTensor``: one class per sample (length = batch size);
- a callable ``f(output) -> Tensor (B,)``: any score computed from the model output;
- a unit of the network, :func:`channel` or :func:`neuron`: the score is that unit's activation
  (the Smooth Grad-CAM++ paper explains feature maps and neurons as well as classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from .errors import TargetError

__all__ = ["Targets", "UnitTarget", "channel", "neuron", "class_scores"]


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


def class_scores(targets: Targets, output: object, batch_size: int) -> tuple[Tensor | None, Tensor]:
    """Resolve class targets against a model output.

    Args:
        targets: ``None``, int, sequence / LongTensor (one per sample) or callable.
        output: the model output; a (B, K) tensor unless ``targets`` is a callable.
        batch_size: B.

    Returns:
        ``(indices, scores)``: the class index per sample as a (B,) LongTensor (``None`` for a
        callable) and the (B,) scores, still connected to autograd.

    Raises:
        TargetError: wrong length, out-of-range class, or an output that has no classes.
    """
    if isinstance(targets, UnitTarget):
        raise TargetError("unit targets are resolved by the explainer, not by class_scores")
    if callable(targets) and not isinstance(targets, Tensor):
        scores = targets(output)
        if not isinstance(scores, Tensor) or scores.shape != (batch_size,):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise TargetError(
                f"targets: the callable must return a tensor of shape ({batch_size},), one score "
                f"per sample; it returned {got}"
            )
        return None, scores
    if not isinstance(output, Tensor) or output.dim() != 2 or output.shape[0] != batch_size:
        got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise TargetError(
            f"targets: class targets need a model output of shape (B, classes), got {got}; pass a "
            "callable targets=lambda out: ... that returns one score per sample"
        )
    n_classes = output.shape[1]
    if targets is None:
        indices = output.detach().argmax(dim=1)
    elif isinstance(targets, bool):
        raise TargetError(f"targets must be a class index, not a bool ({targets!r})")
    elif isinstance(targets, int):
        indices = torch.full((batch_size,), targets, dtype=torch.long, device=output.device)
    else:
        if isinstance(targets, Tensor):
            if targets.dim() != 1 or targets.dtype.is_floating_point or targets.dtype == torch.bool:
                raise TargetError(
                    f"targets tensor must be a 1-D integer tensor of length {batch_size}, got "
                    f"dtype {targets.dtype} and shape {tuple(targets.shape)}"
                )
            indices = targets.to(device=output.device, dtype=torch.long)
        elif isinstance(targets, Sequence) and not isinstance(targets, (str, bytes)):
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
                raise TargetError("targets sequence must hold ints, one class index per sample")
            indices = torch.tensor(list(targets), dtype=torch.long, device=output.device)
        else:
            raise TargetError(
                "targets must be None, an int, a sequence or LongTensor of ints, a callable, "
                f"or xcam.targets.channel/neuron; got {type(targets).__name__}"
            )
        if indices.shape[0] != batch_size:
            raise TargetError(
                f"targets has {indices.shape[0]} entries for a batch of {batch_size}; pass one "
                "class per sample, or a single int for the same class everywhere"
            )
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_classes):
        bad = indices[(indices < 0) | (indices >= n_classes)][0].item()
        raise TargetError(
            f"targets: class {bad} is out of range for a model with {n_classes} outputs "
            f"(valid: 0..{n_classes - 1})"
        )
    scores = output.gather(1, indices[:, None]).squeeze(1)
    return indices, scores
