"""The automatic layer choice for CAM-family methods (``layer=None``).

timm and Hugging Face models (and any model with a ``backbone``: torchvision's segmentation
models) get :func:`live_map_layer`: the last module output that reads as a feature map of the
input (:func:`xcam.layers.feature_layout`: (B, C, h, w), channels-last, or tokens less the model's
prefix tokens) and that the score's gradient reaches at the patch positions; nothing inside an
attention module and nothing that is the model's output (a segmentation model's logits) is a
candidate. Other models, in order: the features a global-average-pool -> Linear head pools
(:func:`find_gap_head`, checked numerically on one forward pass); for token models (ViT), the last
layer whose patch tokens still reach the output; otherwise the last module whose output is a 4-D
map of more than one pixel. Every choice is announced with a warning (:func:`auto_layer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .capture import capture
from .embeddings import embedding, source_model
from .errors import HeadNotFoundError, InputError, LayerNotFoundError, OutputError, warn
from .layers import (
    ModuleCall,
    Tap,
    feature_layout,
    model_name,
    to_nchw,
    token_prefix,
    trace_calls,
)
from .outputs import OutputFn, logits

__all__ = ["GAPHead", "find_gap_head", "auto_layer", "live_map_layer"]

_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Flatten, nn.Identity)
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)
# Attention modules by class name: timm (Attention, EvaAttention, WindowAttention, AttentionCl,
# ClassAttn, TalkingHeadAttn, XCA, ...), Hugging Face (ViTSelfAttention, SwinAttention, ...),
# nn.MultiheadAttention. Their insides are keys, queries, heads: never a feature map.
_ATTENTION = re.compile(r"att(n|ention)|^xca$", re.IGNORECASE)


def _scores_or_none(out: object, output_fn: OutputFn | None) -> Tensor | None:
    """The (B, K) scores (:func:`xcam.outputs.logits`) or embedding in a model output, or None."""
    try:
        return logits(out, output_fn)
    except OutputError:
        pass
    try:  # an embedding model (a CLIP image tower): its (B, D) embedding
        return embedding(out, output_fn)
    except OutputError:
        return None


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
    name = model_name(model)
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


def _token_layer(model: nn.Module, example: Tensor, calls: list[ModuleCall],
                 output_fn: OutputFn | None = None) -> ModuleCall | None:
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
    taps = [Tap(c.name, c.module, "output") for c in tokens]
    with torch.enable_grad(), capture(model, taps) as cap:
        out = _scores_or_none(model(example[:1]), output_fn)
        last = cap[taps[-1]]
        # The model's top score, and the class token of the last token layer as a fallback for
        # heads that are all zero (torchvision zero-initializes ViT heads); squared, because the
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


def _known_model(model: nn.Module) -> bool:
    """Whether ``model`` is a timm or Hugging Face model, or has a ``backbone`` (segmentation)."""
    module = type(source_model(model)).__module__  # a CLIP image tower: the CLIP model's
    return (module.startswith(("timm.", "transformers."))
            or any(n == "backbone" for n, _ in model.named_children()))


def _in_attention(name: str, classes: dict[str, str]) -> bool:
    """Whether the module ``name`` is an attention module or lies inside one."""
    parts = name.split(".")
    return any(_ATTENTION.search(classes.get(".".join(parts[:i]), "")) for i in range(1, len(parts) + 1))


def live_map_layer(model: nn.Module, example: Tensor, output_fn: OutputFn | None = None) -> Tap:
    """The last feature map of ``model`` that the score's gradient reaches at the patch positions.

    Candidates are the module outputs (containers included) of one pass on ``example[:1]`` that
    read as a feature map of the input (:func:`xcam.layers.feature_layout`, with the model's
    :func:`xcam.layers.token_prefix`), run once, are not inside an attention module, are no
    pass-through (``nn.Identity``, dropout) and are not the model output itself. Inside a
    ``backbone`` child, when the model has one, only the backbone counts (torchvision's
    segmentation models: the backbone's last map, never the logits). Of those, the last whose
    gradient of the top score (summed over the output when there is no class axis) is not zero at
    the patch positions wins: after a ViT's last attention only the class token is read, so its
    later per-token layers carry no evidence. Among equal outputs, timm's last ``feature_info``
    module, else the shortest name (the stage, ``layer4``, rather than its last block).

    Raises:
        LayerNotFoundError: no module output reads as a feature map.
    """
    size = (int(example.shape[-2]), int(example.shape[-1]))
    prefix = token_prefix(model)
    classes = {n: type(m).__name__ for n, m in model.named_modules() if n}
    calls, raw = trace_calls(model, example[:1], leaves_only=False)
    out = _scores_or_none(raw, output_fn)
    runs: dict[int, int] = {}
    for c in calls:
        runs[id(c.module)] = runs.get(id(c.module), 0) + 1
    in_backbone = any(n == "backbone" for n, _ in model.named_children())
    candidates: list[tuple[ModuleCall, Tap]] = []
    for c in calls:
        if (runs[id(c.module)] > 1 or isinstance(c.module, _PASS_THROUGH)
                or _in_attention(c.name, classes)
                or (in_backbone and not c.name.startswith("backbone"))):
            continue
        o = c.output
        if (isinstance(o, Tensor) and o.shape[0] == 1
                and not (out is not None and o.shape == out.shape and torch.equal(o, out))):
            layout = feature_layout(o, size, prefix)
            if layout is not None:
                candidates.append((c, Tap(c.name, c.module, "output", layout[1], layout[0])))
                continue
        # A model's own head module (a Hugging Face pooler) reads the last hidden state that no
        # module returns as a tensor (its encoder layers return tuples): tap that input. Only for
        # modules of the model's own code with no candidate inside, whose input is a map that no
        # candidate returned (torch's pools get transposed tokens: not read as a map).
        inp = c.input
        if (isinstance(inp, Tensor) and inp.shape[0] == 1
                and not type(c.module).__module__.startswith("torch.")
                and not any(t.name.startswith(c.name + ".") for _, t in candidates)
                and not any(isinstance(k.output, Tensor) and k.output.shape == inp.shape
                            and torch.equal(k.output, inp) for k, _ in candidates)):
            layout = feature_layout(inp, size, prefix)
            if layout is not None:
                candidates.append((ModuleCall(c.name, c.module, inp, inp),
                                   Tap(c.name, c.module, "input", layout[1], layout[0])))
    if not candidates:
        raise LayerNotFoundError(
            f"layer=None: found no module in {model_name(model)} whose output is a feature map or "
            "a token grid; pass layer= explicitly (see xcam.list_layers(model))"
        )
    taps = [t for _, t in candidates]
    live = -1
    with torch.enable_grad(), capture(model, taps) as cap:
        scores = _scores_or_none(model(example[:1]), output_fn)
        if isinstance(scores, Tensor) and scores.requires_grad:
            score = scores[0].max() if scores.dim() == 2 else scores[0].pow(2).sum()
            grads = cap.gradients(score, taps, allow_unused=True)
            for i in reversed(range(len(taps))):
                if bool(to_nchw(grads[taps[i].label], size, taps[i]).abs().sum() > 0):
                    live = i
                    break
    chosen, tap = candidates[live]
    info = getattr(model, "feature_info", None)
    try:
        preferred = info[-1]["module"] if info is not None else None
    except (KeyError, IndexError, TypeError):
        preferred = None
    value = chosen.output
    assert isinstance(value, Tensor)
    same = [t for c, t in candidates
            if isinstance(c.output, Tensor) and c.output.shape == value.shape
            and torch.equal(c.output, value)]
    named = [t for t in same if t.name == preferred]
    return named[0] if named else min(same, key=lambda t: (len(t.name), t.name))


def auto_layer(model: nn.Module, example: Tensor, output_fn: OutputFn | None = None) -> Tap:
    """Choose a layer for a CAM-family method and announce it with a warning.

    timm, Hugging Face and backbone models: :func:`live_map_layer`. Others, in order: the
    features a global-average-pool -> Linear head pools (:func:`find_gap_head`); for token
    models (ViT), the last layer whose patch tokens reach the output; otherwise the last
    module (inside ``model.features`` when there is one) whose output is a 4-D map of more than
    one pixel.
    """
    if _known_model(model):
        tap = live_map_layer(model, example, output_fn)
        why = "the last feature map the score depends on"
        warn(f"layer=None: using {tap.label!r} ({why}); pass layer= to choose another")
        return tap
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
                f"layer=None: found no module in {model_name(model)} whose output is a feature "
                "map or a token grid; pass layer= explicitly (see xcam.list_layers(model))"
            ) from None
    warn(f"layer=None: using {tap.label!r} ({why}); pass layer= to choose another")
    return tap
