"""Layer resolution: by dotted name or module, with did-you-mean, and automatic choice.

A *tap* is a place in the forward pass where xcam records a tensor: the output of a module (the
usual case) or its input (the features a classifier pools are not always any module's output; in
EfficientNet-Lite the last activation is a module shared by every block). Taps are written as a
dotted module name, optionally followed by ``":input"`` or ``":output"``, or given as a module.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal, Union

import torch
from torch import Tensor, nn

from .errors import HeadNotFoundError, InputError, InputTypeError, LayerNotFoundError, warn

__all__ = [
    "Tap",
    "LayerSpec",
    "resolve_layer",
    "list_layers",
    "trace_calls",
    "GAPHead",
    "find_gap_head",
    "auto_layer",
]


@dataclass(frozen=True, eq=False)
class Tap:
    """A recorded place in the forward pass: ``module``'s ``kind`` ("output" or "input")."""

    name: str
    module: nn.Module
    kind: Literal["output", "input"] = "output"

    @property
    def label(self) -> str:
        """``"layer4"`` for an output, ``"avgpool:input"`` for an input."""
        return self.name if self.kind == "output" else f"{self.name}:input"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tap)
            and other.module is self.module
            and other.kind == self.kind
        )

    def __hash__(self) -> int:
        return hash((id(self.module), self.kind))


LayerSpec = Union[str, nn.Module, Tap]


def _model_name(model: nn.Module) -> str:
    return type(model).__name__


def resolve_layer(model: nn.Module, layer: LayerSpec) -> Tap:
    """Turn a dotted name (``"layer4"``, ``"avgpool:input"``), a module or a :class:`Tap` into a Tap.

    Raises:
        LayerNotFoundError: the name or module is not part of ``model``; the message suggests the
            closest name.
    """
    if isinstance(layer, Tap):
        if not any(m is layer.module for m in model.modules()):
            raise LayerNotFoundError(
                f"layer {layer.label!r} is not a submodule of this {_model_name(model)}; "
                "pass a name from xcam.list_layers(model)"
            )
        return layer
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return Tap(name or "<model>", module, "output")
        raise LayerNotFoundError(
            f"layer: the module {type(layer).__name__} passed is not a submodule of this "
            f"{_model_name(model)}; pass a module of the same model instance, or a dotted name "
            "(see xcam.list_layers(model))"
        )
    if not isinstance(layer, str):
        raise InputTypeError(
            f"layer must be a dotted module name, an nn.Module or None; got {type(layer).__name__}"
        )
    name, kind = layer, "output"
    if ":" in layer:
        name, _, suffix = layer.rpartition(":")
        if suffix not in ("input", "output"):
            raise InputError(
                f"layer {layer!r}: the part after ':' must be 'input' or 'output', got {suffix!r}"
            )
        kind = suffix
    modules = dict(model.named_modules())
    if name not in modules:
        names = [n for n in modules if n]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise LayerNotFoundError(
            f"layer {name!r} not found in {_model_name(model)}{hint} "
            "(see xcam.list_layers(model))"
        )
    return Tap(name, modules[name], kind)  # type: ignore[arg-type]


@dataclass
class _Call:
    name: str
    module: nn.Module
    input: Tensor | None
    output: object


def trace_calls(model: nn.Module, example: Tensor, leaves_only: bool = True) -> tuple[list[_Call], object]:
    """Run ``model(example)`` without gradients and list the module calls in execution order.

    Returns the calls (name, module, first tensor input, output) and the model output. The model's
    ``training`` flags are restored afterwards; the forward runs in eval mode.
    """
    calls: list[_Call] = []
    handles = []
    flags = {m: m.training for m in model.modules()}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            first = args[0] if args and isinstance(args[0], Tensor) else None
            calls.append(_Call(name, module, first, output))

        return hook

    try:
        for name, module in model.named_modules():
            if module is model or (leaves_only and any(True for _ in module.children())):
                continue
            handles.append(module.register_forward_hook(make_hook(name)))
        model.eval()
        with torch.no_grad():
            out = model(example)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    return calls, out


def list_layers(
    model: nn.Module, example: Tensor | None = None
) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """Candidate layers: ``(name, module type, output shape without batch)`` in execution order.

    With ``example`` (an input batch) the model runs once to read the output shapes and to order the
    modules as they execute; without it the shapes are ``None`` and the order is registration order.
    """
    if example is None:
        return [(n, type(m).__name__, None) for n, m in model.named_modules() if n]
    calls, _ = trace_calls(model, example[:1], leaves_only=False)
    seen: set[str] = set()
    rows: list[tuple[str, str, tuple[int, ...] | None]] = []
    for call in calls:
        if call.name in seen:
            continue
        seen.add(call.name)
        shape = tuple(call.output.shape[1:]) if isinstance(call.output, Tensor) else None
        rows.append((call.name, type(call.module).__name__, shape))
    return rows


_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Flatten, nn.Identity)
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class GAPHead:
    """A global-average-pool -> Linear head: the pooled features' tap and the Linear."""

    features: Tap
    linear: nn.Linear
    linear_name: str


def find_gap_head(model: nn.Module, example: Tensor) -> GAPHead:
    """Find a head of the form global average pooling -> (dropout, flatten) -> Linear.

    The check is numerical, on one forward pass of ``example``: the model output must be the last
    Linear's output, and that Linear's input must be the spatial mean of the 4-D tensor recorded at
    the returned tap. Pooling written as a function (``x.mean((2, 3))``) is found as well as a
    pooling module.

    Raises:
        HeadNotFoundError: naming what was expected and what was found.
    """
    calls, out = trace_calls(model, example[:1])
    name = _model_name(model)
    linear_at = [i for i, c in enumerate(calls) if isinstance(c.module, nn.Linear)]
    if not linear_at:
        raise HeadNotFoundError(
            f"CAM needs a head global-average-pool -> Linear, but {name} calls no nn.Linear; "
            "use GradCAM, which works with any head"
        )
    i = linear_at[-1]
    lin_call = calls[i]
    linear = lin_call.module
    assert isinstance(linear, nn.Linear)
    if not (isinstance(out, Tensor) and isinstance(lin_call.output, Tensor)
            and out.shape == lin_call.output.shape and torch.allclose(out, lin_call.output)):
        raise HeadNotFoundError(
            f"CAM needs the model output to be the last Linear's output, but the output of "
            f"{name} is not the output of {lin_call.name!r}; use GradCAM, which works with any head"
        )
    j = i - 1
    while j >= 0 and isinstance(calls[j].module, _PASS_THROUGH):
        j -= 1
    if j < 0:
        raise HeadNotFoundError(f"CAM: nothing runs before the Linear {lin_call.name!r} in {name}")
    prev = calls[j]
    if isinstance(prev.module, _POOLS):
        tap, features = Tap(prev.name, prev.module, "input"), prev.input
    else:
        tap, features = Tap(prev.name, prev.module, "output"), prev.output
    pooled = lin_call.input
    ok = (
        isinstance(features, Tensor) and features.dim() == 4 and pooled is not None
        and pooled.dim() == 2 and pooled.shape[1] == features.shape[1]
        and torch.allclose(features.mean((2, 3)), pooled, rtol=1e-4, atol=1e-5)
    )
    if not ok:
        got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise HeadNotFoundError(
            f"CAM needs a head global-average-pool -> Linear; in {name} the last Linear "
            f"{lin_call.name!r} receives {tuple(pooled.shape) if pooled is not None else None}, "
            f"which is not the spatial mean of {tap.label!r} ({type(prev.module).__name__}, "
            f"output {got}); use GradCAM, which works with any head"
        )
    return GAPHead(tap, linear, lin_call.name)


def auto_layer(model: nn.Module, example: Tensor) -> Tap:
    """Choose a layer for a CAM-family method and announce it with a warning.

    The features the classifier pools (found by :func:`find_gap_head`) when the model has such a
    head; otherwise the last module whose output is a 4-D map with more than one pixel.
    """
    try:
        tap = find_gap_head(model, example).features
        why = "the features the classifier pools"
    except HeadNotFoundError:
        calls, _ = trace_calls(model, example[:1])
        spatial = [c for c in calls if isinstance(c.output, Tensor) and c.output.dim() == 4
                   and c.output.shape[-1] * c.output.shape[-2] > 1]
        if not spatial:
            raise LayerNotFoundError(
                f"layer=None: found no module in {_model_name(model)} whose output is a 4-D "
                "feature map; pass layer= explicitly (see xcam.list_layers(model, example))"
            ) from None
        last = spatial[-1]
        tap, why = Tap(last.name, last.module, "output"), "the last 4-D feature map"
    warn(f"layer=None: using {tap.label!r} ({why}); pass layer= to choose another")
    return tap
