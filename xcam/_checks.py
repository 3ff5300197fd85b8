"""Shared checks and state guards (private to xcam).

``eval_mode`` is the one context manager that runs a model in eval mode and gives it back exactly
as it came: every module's ``training`` flag restored, and no buffer touched (eval-mode batch norm
reads its running statistics without updating them). ``model_lock`` serialises the hook-based
passes of several threads over one model: hooks are registered on the model itself, so two
captures running at once in two threads would each record the other's tensors.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .errors import InputError, InputTypeError

__all__ = ["check_inputs", "eval_mode", "model_lock"]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that guards ``model``'s hooks and flags (one per model object)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block, holding its lock; restore every flag on exit.

    Flags are restored module by module, so a model handed over in a mixed state (some modules
    training, others not) comes back in that same mixed state, also after an exception.
    """
    with model_lock(model):
        flags = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            yield model
        finally:
            for module, flag in flags:
                module.training = flag


def check_inputs(inputs: object, name: str = "inputs") -> Tensor:
    """Validate an input batch: a finite floating-point tensor of shape (B, C, H, W)."""
    if not isinstance(inputs, Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(inputs).__name__}; "
            "convert images with torchvision.transforms.functional.to_tensor"
        )
    if not inputs.dtype.is_floating_point:
        raise InputTypeError(
            f"{name} must be a floating-point tensor, got dtype {inputs.dtype}; "
            "use inputs.float() (and scale pixels as the model expects)"
        )
    if inputs.dim() != 4:
        fix = "; add the batch dimension with inputs[None]" if inputs.dim() == 3 else ""
        raise InputError(f"{name} must have shape (B, C, H, W), got {tuple(inputs.shape)}{fix}")
    if inputs.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(inputs.shape)})")
    if not bool(torch.isfinite(inputs).all()):
        n_bad = int((~torch.isfinite(inputs)).sum())
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values; clean or clamp the input first"
        )
    return inputs
