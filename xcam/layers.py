"""Layer naming and reshaping: taps by dotted name or module, with did-you-mean; ``to_nchw``.

A *tap* is a place in the forward pass where xcam records a tensor: the output of a module (the
usual case) or its input (the features a classifier pools are not always any module's output; in
EfficientNet-Lite the last activation is a module shared by every block). Taps are written as a
dotted module name, optionally followed by ``":input"`` or ``":output"``, or given as a module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
from torch import Tensor, nn

from ._checks import did_you_mean, eval_mode
from .errors import InputError, InputTypeError, LayerNotFoundError

__all__ = [
    "Tap",
    "LayerSpec",
    "resolve_layer",
    "list_layers",
    "trace_calls",
    "ModuleCall",
    "model_name",
    "to_nchw",
    "token_prefix",
    "feature_layout",
]


TapKind = Literal["output", "input", "relu"]


@dataclass(frozen=True, eq=False)
class Tap:
    """A recorded place in the forward pass.

    ``kind`` is ``"output"`` (the module's output), ``"input"`` (its first input) or ``"relu"``
    (its output after a ReLU: DenseNet pools ``relu(features.norm5)``, which no module returns;
    since ReLU is idempotent, passing the rectified tensor downstream changes nothing).

    ``prefix`` and ``channels_last`` say how :func:`to_nchw` reads the recorded tensor when the
    model knows it (``None``: guessed from the shape): ``prefix`` is the number of leading
    non-patch tokens of a (B, N, D) token output (class, distillation and register tokens; timm's
    ``num_prefix_tokens``), ``channels_last`` marks a (B, h, w, C) map (timm's Swin stages).
    """

    name: str
    module: nn.Module
    kind: TapKind = "output"
    prefix: int | None = None
    channels_last: bool | None = None

    @property
    def label(self) -> str:
        """``"layer4"``, ``"avgpool:input"`` or ``"features.norm5:relu"``."""
        return self.name if self.kind == "output" else f"{self.name}:{self.kind}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tap)
            and other.module is self.module
            and other.kind == self.kind
        )

    def __hash__(self) -> int:
        return hash((id(self.module), self.kind))


LayerSpec = Union[str, nn.Module, Tap]


def model_name(model: nn.Module) -> str:
    """The model's class name, as error messages show it."""
    return type(model).__name__


_PREFIX_PARAMS = ("cls_token", "class_token", "class_embedding", "dist_token", "distillation_token",
                  "reg_token", "register_tokens")


def token_prefix(model: nn.Module) -> int | None:
    """How many non-patch tokens lead a token model's sequence; ``None`` when the model does not say.

    timm's ``num_prefix_tokens`` when the model has it; otherwise the learned prefix tokens among
    the parameters (class ``cls_token`` / ``class_token`` / ``class_embedding``, distillation
    ``dist_token`` / ``distillation_token``, registers ``reg_token`` / ``register_tokens``:
    timm, Hugging Face and torchvision names), each counting its number of tokens; 0 for a
    Hugging Face model with none of them.
    """
    known = getattr(model, "num_prefix_tokens", None)
    if isinstance(known, int) and not isinstance(known, bool):
        return known
    count, found = 0, False
    for name, param in model.named_parameters():
        if name.rpartition(".")[2] in _PREFIX_PARAMS:
            found = True
            count += 1 if param.dim() <= 2 else int(param.shape[-2])
    if found or type(model).__module__.startswith("transformers."):
        return count  # a Hugging Face model without such parameters has none (Swin)
    return None


def resolve_layer(model: nn.Module, layer: LayerSpec) -> Tap:
    """Turn a dotted name (``"layer4"``, ``"avgpool:input"``), a module or a :class:`Tap` into a Tap.

    A name or a module gets the model's :func:`token_prefix`, so that a token layer of a ViT with
    registers loses all its prefix tokens in :func:`to_nchw`.

    Raises:
        LayerNotFoundError: the name or module is not part of ``model``; the message suggests the
            closest name.
    """
    if isinstance(layer, Tap):
        if not any(m is layer.module for m in model.modules()):
            raise LayerNotFoundError(
                f"layer {layer.label!r} is not a submodule of this {model_name(model)}; "
                "pass a name from xcam.list_layers(model)"
            )
        return layer
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return Tap(name or "<model>", module, "output", token_prefix(model))
        raise LayerNotFoundError(
            f"layer: the module {type(layer).__name__} passed is not a submodule of this "
            f"{model_name(model)}; pass a module of the same model instance, or a dotted name "
            "(see xcam.list_layers(model))"
        )
    if not isinstance(layer, str):
        raise InputTypeError(
            f"layer must be a dotted module name, an nn.Module or None; got {type(layer).__name__}"
        )
    name, kind = layer, "output"
    if ":" in layer:
        name, _, suffix = layer.rpartition(":")
        if suffix not in ("input", "output", "relu"):
            raise InputError(
                f"layer {layer!r}: the part after ':' must be 'input', 'output' or 'relu', "
                f"got {suffix!r}"
            )
        kind = suffix
    modules = dict(model.named_modules())
    if name not in modules:
        names = [n for n in modules if n]
        hint = did_you_mean(name, names, cutoff=0.5)
        raise LayerNotFoundError(
            f"layer {name!r} not found in {model_name(model)}{hint} "
            "(see xcam.list_layers(model))"
        )
    return Tap(name, modules[name], kind, token_prefix(model))  # type: ignore[arg-type]


@dataclass
class ModuleCall:
    """One module call recorded by :func:`trace_calls`: its name, module, first input and output."""

    name: str
    module: nn.Module
    input: Tensor | None
    output: object


def trace_calls(
    model: nn.Module, example: Tensor, leaves_only: bool = True
) -> tuple[list[ModuleCall], object]:
    """Run ``model(example)`` without gradients and list the module calls in execution order.

    Returns the calls (name, module, first tensor input, output) and the model output. The model's
    ``training`` flags are restored afterwards; the forward runs in eval mode.
    """
    calls: list[ModuleCall] = []
    handles = []

    def make_hook(name: str) -> Callable[[nn.Module, tuple[Any, ...], object], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: object) -> None:
            # Clones: a later in-place op (DenseNet's F.relu(..., inplace=True)) must not change
            # what was recorded.
            first = args[0].clone() if args and isinstance(args[0], Tensor) else None
            if isinstance(output, Tensor):
                output = output.clone()
            calls.append(ModuleCall(name, module, first, output))

        return hook

    with eval_mode(model):  # holds the model's lock: no other thread's pass is recorded
        try:
            for name, module in model.named_modules():
                if module is model or (leaves_only and any(True for _ in module.children())):
                    continue
                handles.append(module.register_forward_hook(make_hook(name)))
            with torch.no_grad():
                out = model(example)
        finally:
            for h in handles:
                h.remove()
    return calls, out


def list_layers(
    model: nn.Module, example: Tensor | None = None
) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """Candidate layers: ``(name, module type, output shape without batch)`` in execution order.

    The model runs once on ``example`` (default: one 3x224x224 zero image) to read the output
    shapes and to order the modules as they execute. Modules that do not run are left out.
    """
    if example is None:
        param = next(model.parameters(), None)
        example = torch.zeros(1, 3, 224, 224, device=param.device if param is not None else None)
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


def _power_of_two(n: float) -> bool:
    return n >= 1 and float(n).is_integer() and (int(n) & (int(n) - 1)) == 0


def _grid_ok(h: int, w: int, H: int, W: int) -> bool:
    """Whether an h x w grid can be the input's H x W seen at one stride (rounded either way)."""
    if h < 1 or w < 1 or h * w < 2 or h > H or w > W:
        return False
    sh, sw = H / h, W / w
    return abs(sh - sw) <= 0.25 * max(sh, sw)


def _token_grid(n: int, H: int, W: int, prefixes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(prefix, h, w) such that ``n - prefix`` tokens form an h x w grid with the input's aspect."""
    for prefix in prefixes:
        grid = n - prefix
        if grid < 1:
            continue
        h = round((grid * H / W) ** 0.5)
        if h > 0 and grid % h == 0 and abs(h / (grid // h) - H / W) < 1e-6:
            return prefix, h, grid // h
    return None


def feature_layout(
    tensor: Tensor, input_size: tuple[int, int], prefix: int | None = None
) -> tuple[bool, int, tuple[int, int]] | None:
    """How a layer output reads as a feature map, strictly: ``(channels_last, prefix, (h, w))``.

    Unlike :func:`to_nchw`, which accepts what it is given, this answers ``None`` unless the
    tensor is plausibly a map of the input: a (B, C, h, w) or (B, h, w, C) map, or (B, N, D)
    tokens whose ``N - prefix`` patch tokens form the grid, where h x w is the input seen at one
    stride (so an attention block's (B, heads, N, d) keys are no map). ``prefix``: the model's
    prefix tokens when known (the layer may also carry none: XCiT and CaiT add the class token
    late), else 0 to 8 are tried, fewest first.
    """
    H, W = input_size
    if tensor.dim() in (3, 4) and min(tensor.shape[1:]) < 2:
        return None  # one channel (a pooled (B, C, 1) vector read as C tokens): no feature map
    if tensor.dim() == 4:
        first = _grid_ok(int(tensor.shape[2]), int(tensor.shape[3]), H, W)
        last = _grid_ok(int(tensor.shape[1]), int(tensor.shape[2]), H, W)
        if first and last:  # both readings fit: the power-of-two rule of to_nchw decides
            last = tensor.shape[1:3] != to_nchw(tensor, input_size).shape[2:]
            first = not last
        if first:
            return False, 0, (int(tensor.shape[2]), int(tensor.shape[3]))
        if last:
            return True, 0, (int(tensor.shape[1]), int(tensor.shape[2]))
        return None
    if tensor.dim() == 3:
        prefixes = tuple(range(9)) if prefix is None else tuple(dict.fromkeys((prefix, 0)))
        found = _token_grid(int(tensor.shape[1]), H, W, prefixes)
        if found is not None and _grid_ok(found[1], found[2], H, W):
            return False, found[0], (found[1], found[2])
    return None


def to_nchw(tensor: Tensor, input_size: tuple[int, int], tap: Tap | None = None) -> Tensor:
    """View a layer's output as a (B, C, h, w) feature map.

    - (B, C, h, w) is returned as it is;
    - channels-last (B, h, w, C) (Swin's stages) is permuted; it is recognized from
      ``tap.channels_last`` when the model told, else when only the (h, w) reading divides the
      input size by a power of two;
    - tokens (B, N, D) (ViT) lose their prefix tokens (class, distillation, registers:
      ``tap.prefix`` when known, tried first and then none, else 0 to 2 are tried), the
      ``N - prefix`` patch tokens form an h x w grid with the input's aspect ratio.

    Raises:
        InputError: the tensor cannot be read as a feature map.
    """
    H, W = input_size
    if tensor.dim() == 4:
        if tap is not None and tap.channels_last is not None:
            return tensor.permute(0, 3, 1, 2) if tap.channels_last else tensor
        c_first = _power_of_two(H / tensor.shape[2]) and _power_of_two(W / tensor.shape[3])
        c_last = _power_of_two(H / tensor.shape[1]) and _power_of_two(W / tensor.shape[2])
        if c_last and not c_first:
            return tensor.permute(0, 3, 1, 2)
        return tensor
    if tensor.dim() == 3:
        prefix = None if tap is None else tap.prefix
        prefixes = (0, 1, 2) if prefix is None else tuple(dict.fromkeys((prefix, 0)))
        found = _token_grid(int(tensor.shape[1]), H, W, prefixes)
        if found is not None:
            p, h, w = found
            return tensor[:, p:].reshape(tensor.shape[0], h, w, -1).permute(0, 3, 1, 2)
    raise InputError(
        f"a layer output of shape {tuple(tensor.shape)} cannot be read as a feature map "
        f"(B, C, h, w), channels-last (B, h, w, C) or tokens (B, prefix + h*w, D) for a {H}x{W} "
        "input; choose another layer (see xcam.list_layers(model))"
    )
