"""Batched forward passes of perturbed inputs, and the scores of the target class.

Perturbed copies are built with tensor ops (:func:`replace_where`), run through the model in
passes of at most ``batch_size`` images under ``torch.no_grad()`` (:func:`batched_scores`), and
read as the softmax probability (or raw score) of each sample's target class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._layout import channels_last_for, run_model
from ..errors import InputError, InputTypeError, OutputError
from ..outputs import OutputFn, logits

__all__ = [
    "baseline_like",
    "rows_of",
    "replace_where",
    "check_output",
    "model_scores",
    "clean_forward",
    "target_scores",
    "batched_scores",
    "Perturbed",
    "score_perturbed",
    "check_autocast",
    "captum_chunks",
    "captum_images",
]


def baseline_like(baseline: object, inputs: Tensor, name: str = "baseline") -> float | Tensor:
    """Check ``baseline`` against the inputs.

    A number stays a float; a tensor becomes a 4-D tensor on the inputs'
    device and dtype that broadcasts to them, with a leading dimension of 1 or B.
    """
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        if not math.isfinite(baseline):
            raise InputError(f"{name} must be finite, got {baseline}")
        return float(baseline)
    if not isinstance(baseline, Tensor):
        raise InputTypeError(
            f"{name} must be a number or a tensor broadcastable to inputs {tuple(inputs.shape)}, "
            f"got {type(baseline).__name__}"
        )
    try:
        if baseline.dim() > 4 or torch.broadcast_shapes(  # type: ignore[no-untyped-call]
                baseline.shape, inputs.shape) != inputs.shape:
            raise RuntimeError
    except RuntimeError:
        raise InputError(
            f"{name} of shape {tuple(baseline.shape)} does not broadcast to inputs "
            f"{tuple(inputs.shape)}; pass a number, (C, 1, 1) per channel, (C, H, W) or "
            "(B, C, H, W)"
        ) from None
    return baseline.detach().to(device=inputs.device, dtype=inputs.dtype).reshape(
        (1,) * (4 - baseline.dim()) + tuple(baseline.shape))


def rows_of(value: float | Tensor, rows: Tensor) -> float | Tensor:
    """A baseline for the given sample rows.

    A float as is, a (1, ...) tensor as is (it
    broadcasts), a per-sample (B, ...) tensor gathered.
    """
    if isinstance(value, Tensor) and value.shape[0] > 1:
        return value[rows]
    return value


def replace_where(mask: Tensor, source: Tensor, rows: Tensor,
                  value: float | Tensor) -> Tensor:
    """``source[rows]`` with the masked pixels taken from ``value``.

    The pixels where ``mask`` (r, H, W) is True, in all channels: a new tensor, the caller's data untouched.
    """
    out = source[rows]
    fill = rows_of(value, rows)
    if isinstance(fill, float):
        return out.masked_fill_(mask[:, None], fill)
    return torch.where(mask[:, None], fill, out)


def check_output(output: Tensor, rows: int, where: str) -> Tensor:
    if output.dim() != 2 or output.shape[0] != rows:
        raise OutputError(
            f"{where}: metrics need model scores of shape (B, classes) = ({rows}, K), got "
            f"{tuple(output.shape)}; pass output=lambda out: ... returning the (B, classes) "
            "scores, or wrap the model so that it returns them"
        )
    if output.dtype.is_complex or not output.dtype.is_floating_point:
        raise OutputError(
            f"{where}: model scores must be floating point, got dtype {output.dtype}; pass "
            "output=lambda out: out.float() or return logits from the model"
        )
    return output


def model_scores(model: Callable[[Tensor], Any], batch: Tensor, output_fn: OutputFn | None,
                 where: str, *, perturbed: bool = False) -> Tensor:
    """``model(batch)`` unwrapped by :func:`xcam.outputs.logits` and checked to be (r, K).

    ``perturbed=True`` (a batch of modified copies, built by the metric): an ``nn.Module`` runs it
    in the memory format :func:`xcam._layout.channels_last_for` chooses (channels-last on the CPU
    for float32, with the fallback of :func:`xcam._layout.layout_fallback`), as the perturbation
    methods do. The scores differ from a plain-layout pass only by float rounding.
    """
    if perturbed and isinstance(model, nn.Module) and batch.dim() == 4:
        output = run_model(model, batch, channels_last_for(None, batch, model))
    else:
        output = model(batch)
    return check_output(logits(output, output_fn), batch.shape[0], where)


def clean_forward(model: Callable[[Tensor], Any], inputs: Tensor,
                  clean_output: object | None, output_fn: OutputFn | None = None) -> Tensor:
    """The model's (B, K) scores on the clean inputs.

    Computed once, or the ones the caller shares
    (``clean_output`` may be a raw model output: it is unwrapped like one).
    """
    b = inputs.shape[0]
    if clean_output is not None:
        if not isinstance(clean_output, (Tensor, Mapping, tuple, list)) and not hasattr(
                clean_output, "logits"):
            raise InputTypeError(
                f"clean_output must be the model's output on inputs (clean_output=model(inputs)), "
                f"got {type(clean_output).__name__}"
            )
        scores = logits(clean_output, output_fn)
        return check_output(scores, b, "clean_output").detach().to(inputs.device)
    with torch.no_grad():
        out = model_scores(model, inputs, output_fn, "model(inputs)")
    return out.detach()


def target_scores(output: Tensor, indices: Tensor, softmax: bool) -> Tensor:
    """(rows,) softmax probability (or raw output) of each row's target class, float32."""
    out = output.float()
    if softmax:
        out = torch.softmax(out, dim=1)
    return out.gather(1, indices[:, None].to(out.device)).squeeze(1)


def batched_scores(
    model: Callable[[Tensor], Any],
    make_batch: Callable[[Tensor], Tensor],
    rows: int,
    sample_of_row: Callable[[Tensor], Tensor],
    indices: Tensor,
    batch_size: int,
    softmax: bool,
    device: torch.device,
    output_fn: OutputFn | None = None,
) -> Tensor:
    """Score ``rows`` perturbed images in forward passes of at most ``batch_size`` images.

    Args:
        model: the model.
        make_batch: row ids (r,) -> images (r, C, H, W), built with tensor ops.
        rows: how many perturbed images.
        sample_of_row: row ids -> the sample each row comes from (r,).
        indices: (B,) target class per sample.
        batch_size: most images per forward pass.
        softmax: score = softmax probability (True) or the raw output (False).
        device: where the row ids live.
        output_fn: the ``output=`` callable (None: :func:`xcam.outputs.logits`'s rules).

    Returns:
        (rows,) float32 scores of the target class, under ``torch.no_grad()``.
    """
    out = torch.empty(rows, dtype=torch.float32, device=device)
    with torch.no_grad():
        for start in range(0, rows, batch_size):
            ids = torch.arange(start, min(rows, start + batch_size), device=device)
            batch = make_batch(ids)
            output = model_scores(model, batch, output_fn, "model(perturbed inputs)", perturbed=True)
            out[start:start + ids.numel()] = target_scores(output, indices[sample_of_row(ids)],
                                                           softmax)
    return out


def captum_chunks(n_samples: int, batch_size: int, n_perturb: int) -> list[tuple[slice, int]]:
    """Chunks of samples, one captum call each, with the ``max_examples_per_batch`` to pass.

    A chunk holds ``max(1, batch_size // n_perturb)`` samples; ``max_examples_per_batch`` stays
    within the range captum accepts without a warning (one copy of every sample of the chunk at
    least, all of its copies at most).
    """
    per_chunk = max(1, batch_size // n_perturb)
    chunks = []
    for start in range(0, n_samples, per_chunk):
        rows = min(n_samples, start + per_chunk) - start
        chunks.append((slice(start, start + rows), max(rows, min(batch_size, rows * n_perturb))))
    return chunks


def captum_images(n: int, batch_size: int, n_perturb: int) -> int:
    """Images captum's metrics run.

    Per chunk, every perturbed copy plus one clean pass per
    sub-batch (infidelity recomputes the clean output for each sub-batch).
    """
    total = 0
    for sl, max_examples in captum_chunks(n, batch_size, n_perturb):
        rows = sl.stop - sl.start
        per_batch = min(max(max_examples // rows, 1), n_perturb)
        sub_batches = -(-n_perturb // per_batch)
        total += rows * (n_perturb + sub_batches)
    return total


@dataclass(frozen=True)
class Perturbed:
    """The perturbed forward passes of one metric call, and how its result is read from them.

    Attributes:
        rows: how many perturbed images.
        make_batch: row ids (r,) -> images (r, C, H, W), built with tensor ops.
        row_targets: row ids (r,) -> the target class of each row (r,).
        softmax: score = softmax probability (True) or the raw output (False).
        finish: the (rows,) float32 scores -> the metric's result.
    """

    rows: int
    make_batch: Callable[[Tensor], Tensor]
    row_targets: Callable[[Tensor], Tensor]
    softmax: bool
    finish: Callable[[Tensor], Any]


def check_autocast(autocast: object, device: torch.device) -> torch.dtype | None:
    """``autocast=``: None, or torch.bfloat16 / torch.float16 for inputs on a CUDA device."""
    if autocast is None:
        return None
    if autocast not in (torch.bfloat16, torch.float16):
        raise InputTypeError(
            f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast!r}"
        )
    if device.type != "cuda":
        raise InputError(
            f"autocast={autocast} runs the perturbed forward passes under torch.autocast on CUDA "
            f"only; the inputs are on {device.type}: pass autocast=None (or move model and inputs "
            "to a CUDA device)"
        )
    assert isinstance(autocast, torch.dtype)
    return autocast


def score_perturbed(
    model: Callable[[Tensor], Any],
    plans: Sequence[Perturbed],
    batch_size: int,
    device: torch.device,
    output_fn: OutputFn | None = None,
    autocast: torch.dtype | None = None,
) -> list[Tensor]:
    """Score the rows of several :class:`Perturbed` plans in shared forward passes.

    The plans' rows are laid end to end and run in passes of at most ``batch_size`` images (a pass
    may hold rows of several plans, concatenated), under ``torch.no_grad()``. With one plan the
    passes are those of :func:`batched_scores`. ``autocast`` (bf16 / fp16, CUDA; checked by
    :func:`check_autocast`) runs the passes under :func:`torch.autocast`; the softmax of the
    scores is taken in float32.

    Returns:
        One (rows,) float32 tensor of target scores per plan.
    """
    outs = [torch.empty(p.rows, dtype=torch.float32, device=device) for p in plans]
    starts = [0]
    for p in plans:
        starts.append(starts[-1] + p.rows)
    total = starts[-1]
    with torch.no_grad():
        for start in range(0, total, batch_size):
            stop = min(total, start + batch_size)
            pieces: list[tuple[int, Tensor]] = []
            for i in range(len(plans)):
                lo, hi = max(start, starts[i]), min(stop, starts[i + 1])
                if lo < hi:
                    pieces.append((i, torch.arange(lo - starts[i], hi - starts[i], device=device)))
            images = [plans[i].make_batch(ids) for i, ids in pieces]
            batch = images[0] if len(images) == 1 else torch.cat(images)
            if autocast is None:
                output = model_scores(model, batch, output_fn, "model(perturbed inputs)", perturbed=True)
            else:
                with torch.autocast(device_type=device.type, dtype=autocast):
                    output = model_scores(model, batch, output_fn, "model(perturbed inputs)", perturbed=True)
            at = 0
            for i, ids in pieces:
                n, lo = ids.numel(), start + at - starts[i]
                outs[i][lo:lo + n] = target_scores(output[at:at + n], plans[i].row_targets(ids),
                                                   plans[i].softmax)
                at += n
    return outs
