"""The model-output adapter: one rule, used by every explainer, metric and ``compare``.

Models return logits in many wrappers. :func:`logits` unwraps them, in this order:

1. a ``torch.Tensor``: as it is;
2. an object with a tensor attribute ``logits``: Hugging Face ``ModelOutput``
   (``ImageClassifierOutput``, ...), torchvision's train-mode ``InceptionOutputs`` and
   ``GoogLeNetLogits`` namedtuples;
3. a mapping: its ``"logits"`` entry, else its ``"out"`` entry (torchvision segmentation models);
4. a tuple or list whose first element is a tensor: that element (auxiliary outputs follow it).

Anything else raises :class:`~xcam.errors.OutputError`, naming what came back and the fix: pass
``output=`` (a callable ``f(model_output) -> Tensor``), which replaces these rules, or a callable
``targets=`` that reads the raw output itself.

Where the rules apply: class targets (``None``, ints, one class per sample) of every explainer
read the (B, classes) scores through :func:`logits`; so do the automatic layer choice and CAM's
head detection. A callable ``targets=`` always receives the raw output (torchvision's detection
and segmentation targets, :class:`xcam.targets.detection` and :class:`xcam.targets.segmentation`,
read the list of dicts or the ``"out"`` entry themselves). Every explainer takes the keyword-only
``output=``, e.g. ``GradCAM(model, output=lambda out: out["scores"])``. See ``docs/outputs.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from .errors import OutputError

__all__ = ["logits", "OutputFn"]

OutputFn = Callable[[Any], Tensor]


def _describe(output: object) -> str:
    if isinstance(output, Mapping):
        return f"{type(output).__name__} with keys {list(output.keys())[:8]}"
    if isinstance(output, (tuple, list)):
        kinds = ", ".join(type(o).__name__ for o in output[:4]) + (", ..." if len(output) > 4 else "")
        return f"{type(output).__name__} of {len(output)} ({kinds})"
    return type(output).__name__


def logits(output: object, output_fn: OutputFn | None = None) -> Tensor:
    """The tensor of scores in a model's ``output`` (see the module docstring for the rules).

    Args:
        output: whatever ``model(x)`` returned.
        output_fn: a user callable that replaces the rules; its result must be a tensor.

    Raises:
        OutputError: no tensor of scores can be found, or ``output_fn`` did not return a tensor.
    """
    if output_fn is not None:
        result = output_fn(output)
        if not isinstance(result, Tensor):
            raise OutputError(
                f"output: the callable returned {type(result).__name__}, not a tensor; it must map "
                "the model's output to its (B, classes) scores"
            )
        return result
    if isinstance(output, Tensor):
        return output
    value = getattr(output, "logits", None)
    if isinstance(value, Tensor):
        return value
    if isinstance(output, Mapping):
        for key in ("logits", "out"):
            value = output.get(key)
            if isinstance(value, Tensor):
                return value
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise OutputError(
        f"the model returned {_describe(output)}, and xcam cannot tell which part holds the scores; "
        "pass output=lambda out: ... (returning the (B, classes) tensor) or a callable "
        "targets=lambda out: ... (returning one score per sample)"
    )
