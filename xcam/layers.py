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

from ._checks import eval_mode
from .errors import HeadNotFoundError, InputError, InputTypeError, LayerNotFoundError, OutputError, warn
from .outputs import OutputFn, logits

__all__ = [
    "Tap",
    "LayerSpec",
    "resolve_layer",
    "list_layers",
    "trace_calls",
    "GAPHead",
    "find_gap_head",
    "auto_layer",
    "to_nchw",
]


TapKind = Literal["output", "input", "relu"]


@dataclass(frozen=True, eq=False)
class Tap:
    """A recorded place in the forward pass.

    ``kind`` is ``"output"`` (the module's output), ``"input"`` (its first input) or ``"relu"``
    (its output after a ReLU: DenseNet pools ``relu(features.norm5)``, which no module returns;
    since ReLU is idempotent, passing the rectified tensor downstream changes nothing).
    """

    name: str
    module: nn.Module
    kind: TapKind = "output"

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
        if suffix not in ("input", "output", "relu"):
            raise InputError(
                f"layer {layer!r}: the part after ':' must be 'input', 'output' or 'relu', "
                f"got {suffix!r}"
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

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            # Clones: a later in-place op (DenseNet's F.relu(..., inplace=True)) must not change
            # what was recorded.
            first = args[0].clone() if args and isinstance(args[0], Tensor) else None
            if isinstance(output, Tensor):
                output = output.clone()
            calls.append(_Call(name, module, first, output))

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


def _scores_or_none(out: object, output_fn: OutputFn | None) -> Tensor | None:
    """The (B, K) scores in a model output (:func:`xcam.outputs.logits`), or None."""
    try:
        return logits(out, output_fn)
    except OutputError:
        return None


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


_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Flatten, nn.Identity)
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)


def _power_of_two(n: float) -> bool:
    return n >= 1 and float(n).is_integer() and (int(n) & (int(n) - 1)) == 0


def to_nchw(tensor: Tensor, input_size: tuple[int, int]) -> Tensor:
    """View a layer's output as a (B, C, h, w) feature map.

    - (B, C, h, w) is returned as it is;
    - channels-last (B, h, w, C) (Swin's stages) is permuted; it is recognised when only the
      (h, w) reading divides the input size by a power of two;
    - tokens (B, N, D) (ViT) lose their class / prefix tokens, the ``N - prefix`` patch tokens
      form an h x w grid with the input's aspect ratio.

    Raises:
        InputError: the tensor cannot be read as a feature map.
    """
    H, W = input_size
    if tensor.dim() == 4:
        c_first = _power_of_two(H / tensor.shape[2]) and _power_of_two(W / tensor.shape[3])
        c_last = _power_of_two(H / tensor.shape[1]) and _power_of_two(W / tensor.shape[2])
        if c_last and not c_first:
            return tensor.permute(0, 3, 1, 2)
        return tensor
    if tensor.dim() == 3:
        n = tensor.shape[1]
        for prefix in (0, 1, 2):
            grid = n - prefix
            h = round((grid * H / W) ** 0.5)
            if h > 0 and grid % h == 0 and abs(h / (grid // h) - H / W) < 1e-6:
                w = grid // h
                return tensor[:, prefix:].reshape(tensor.shape[0], h, w, -1).permute(0, 3, 1, 2)
    raise InputError(
        f"a layer output of shape {tuple(tensor.shape)} cannot be read as a feature map "
        f"(B, C, h, w), channels-last (B, h, w, C) or tokens (B, 1 + h*w, D) for a {H}x{W} "
        "input; choose another layer (see xcam.list_layers(model))"
    )


@dataclass(frozen=True)
class GAPHead:
    """A global-average-pool -> Linear head: the pooled features' tap and the Linear."""

    features: Tap
    linear: nn.Linear
    linear_name: str


def find_gap_head(model: nn.Module, example: Tensor, output_fn: OutputFn | None = None) -> GAPHead:
    """Find a head of the form global average pooling -> (dropout, flatten) -> Linear.

    The check is numerical, on one forward pass of ``example``: the model output must be the last
    Linear's output, and that Linear's input must be the spatial mean of the 4-D tensor recorded at
    the returned tap. Pooling written as a function (``x.mean((2, 3))``) is found as well as a
    pooling module, and so is a ReLU applied as a function before it (DenseNet).

    Raises:
        HeadNotFoundError: naming what was expected and what was found.
        OutputError: the model output holds no tensor of scores (see :mod:`xcam.outputs`).
    """
    calls, raw = trace_calls(model, example[:1])
    out = logits(raw, output_fn)  # OutputError when no scores can be found
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
    pooled = lin_call.input
    features: object
    candidates: list[tuple[Tap, object]]
    if isinstance(prev.module, _POOLS):
        candidates = [(Tap(prev.name, prev.module, "input"), prev.input)]
    else:
        out_t = prev.output
        candidates = [(Tap(prev.name, prev.module, "output"), out_t)]
        if isinstance(out_t, Tensor):
            candidates.append((Tap(prev.name, prev.module, "relu"), torch.relu(out_t)))
    for tap, features in candidates:
        if (
            isinstance(features, Tensor) and features.dim() == 4 and pooled is not None
            and pooled.dim() == 2 and pooled.shape[1] == features.shape[1]
            and (tap.kind == "input" or features.shape[-1] * features.shape[-2] > 1)
            and torch.allclose(features.mean((2, 3)), pooled, rtol=1e-4, atol=1e-5)
        ):
            return GAPHead(tap, linear, lin_call.name)
    features = candidates[0][1]
    got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
    raise HeadNotFoundError(
        f"CAM needs a head global-average-pool -> Linear; in {name} the last Linear "
        f"{lin_call.name!r} receives {tuple(pooled.shape) if pooled is not None else None}, "
        f"which is not the spatial mean of {candidates[0][0].label!r} ({type(prev.module).__name__}, "
        f"output {got}); use GradCAM, which works with any head"
    )


def _token_layer(model: nn.Module, example: Tensor, calls: list[_Call],
                 output_fn: OutputFn | None = None) -> _Call | None:
    """For token models (ViT): the last layer whose patch tokens still reach the output.

    After the last block only the class token is read, so the last blocks' per-token layers have
    zero gradient on patch tokens; the answer is the last one with a non-zero patch gradient
    (in torchvision's ViT, the last encoder block's ``ln_1``).
    """
    size = tuple(example.shape[-2:])
    tokens = []
    for c in calls:
        if isinstance(c.output, Tensor) and c.output.dim() == 3 and c.output.shape[0] == 1:
            try:
                to_nchw(c.output, size)  # type: ignore[arg-type]
            except InputError:
                continue
            tokens.append(c)
    if not tokens:
        return None
    from .capture import capture

    taps = [Tap(c.name, c.module, "output") for c in tokens]
    with torch.enable_grad(), capture(model, taps) as cap:
        out = _scores_or_none(model(example[:1]), output_fn)
        last = cap[taps[-1]]
        # The model's top score, and the class token of the last token layer as a fallback for
        # heads that are all zero (torchvision zero-initialises ViT heads); squared, because the
        # plain sum of a LayerNorm output is a constant.
        for score in (out[0].max() if isinstance(out, Tensor) else None, last[0, 0].pow(2).sum()):
            if score is None or not score.requires_grad:
                continue
            grads = cap.gradients(score, taps, retain_graph=True, allow_unused=True)
            for c, tap in zip(reversed(tokens), reversed(taps)):
                g = to_nchw(grads[tap.label], size)  # type: ignore[arg-type]
                if bool(g.abs().sum() > 0):
                    return c
    return tokens[-1]


def auto_layer(model: nn.Module, example: Tensor, output_fn: OutputFn | None = None) -> Tap:
    """Choose a layer for a CAM-family method and announce it with a warning.

    In order: the features a global-average-pool -> Linear head pools (:func:`find_gap_head`);
    for token models (ViT), the last layer whose patch tokens reach the output; otherwise the last
    module (inside ``model.features`` when there is one) whose output is a 4-D map of more than
    one pixel.
    """
    try:
        tap = find_gap_head(model, example, output_fn).features
        why = "the features the classifier pools"
    except (HeadNotFoundError, OutputError):  # no classifier head (a detector): look for maps
        calls, _ = trace_calls(model, example[:1], leaves_only=False)
        has_features = any(n == "features" for n, _ in model.named_children())
        spatial = [
            i for i, c in enumerate(calls)
            if isinstance(c.output, Tensor) and c.output.dim() == 4 and c.output.shape[0] == 1
            and c.output.shape[-1] * c.output.shape[-2] > 1
            and (not has_features or c.name == "features" or c.name.startswith("features."))
        ]
        leaves = [c for c in calls if not any(True for _ in c.module.children())]
        token = _token_layer(model, example, leaves, output_fn)
        token_at = next(
            (i for i, c in enumerate(calls) if token is not None and c.module is token.module), -1
        )
        if token is not None and (not spatial or token_at > spatial[-1]):
            tap = Tap(token.name, token.module, "output")
            why = "the last layer whose patch tokens reach the output"
        elif spatial:
            last = calls[spatial[-1]]
            tap, why = Tap(last.name, last.module, "output"), "the last 4-D feature map"
        else:
            raise LayerNotFoundError(
                f"layer=None: found no module in {_model_name(model)} whose output is a feature "
                "map or a token grid; pass layer= explicitly (see xcam.list_layers(model))"
            ) from None
    warn(f"layer=None: using {tap.label!r} ({why}); pass layer= to choose another")
    return tap
