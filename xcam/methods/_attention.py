"""Attention probabilities of vision transformers, computed during one forward pass.

The ViT-native explainers (rollout, Chefer et al.'s relevance, LeGrad) read the post-softmax
attention probabilities ``A = softmax(Q K^T / sqrt(d))`` (B, heads, N, N) of every block, and the
gradient methods need ``A`` to be the tensor the block multiplies with ``V``, so that
``d score / d A`` exists. None of the three common implementations hands ``A`` over by default:

- torchvision's ``VisionTransformer`` calls ``nn.MultiheadAttention`` with ``need_weights=False``
  (fused kernel). For the duration of the call the module's ``forward`` is replaced by an explicit
  ``out_proj( softmax(Q K^T / sqrt(d)) V )`` on the same weights (instance attribute, deleted
  afterwards);
- timm's ``Attention`` (ViT, DeiT, DeiT-III, BEiT, EVA, ...) uses
  ``F.scaled_dot_product_attention`` when ``fused_attn`` is set: the flag is switched off for the
  call (and restored), and ``A`` is read at the output of ``attn_drop``, which feeds ``A @ V``;
- Hugging Face attention modules (ViT, DeiT, DINOv2, ...) dispatch on
  ``config._attn_implementation`` (``"sdpa"`` by default): it is set to ``"eager"`` for the call
  (and restored), and ``A`` is the second element the module returns.

Every flag, forward override and hook is restored in ``finally``, also after an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import eval_mode
from ..errors import GradientModeError, InputError, InputTypeError, TargetError
from ..explanation import Explanation
from ..layers import model_name
from ..outputs import OutputFn
from ..postprocess import upsample
from ..targets import Target
from .base import Explainer

__all__ = ["ViTModel", "find_vit", "ViTLayout", "AttentionExplainer"]

Family = Literal["torchvision", "timm", "huggingface"]
Pooling = Literal["mean", "token"]


@dataclass
class ViTLayout:
    """Where a vision transformer keeps its blocks, attention modules and head.

    Attributes:
        family: ``"torchvision"``, ``"timm"`` or ``"huggingface"``.
        names: dotted name of each transformer block, in execution order.
        blocks: the block modules (their outputs are the tokens ``Z^l``).
        attentions: the attention module of each block.
        patch: the patch size (rows, columns).
        norm: the final norm applied to the tokens (Identity when the model has none).
        head: the classifier applied after pooling, ``(B, D) -> (B, K)``.
        token_head: the model's own ``tokens -> logits`` after the last block (final norm,
            its pooling, head).
    """

    family: Family
    names: list[str]
    blocks: list[nn.Module]
    attentions: list[nn.Module]
    patch: tuple[int, int]
    norm: nn.Module
    head: Callable[[Tensor], Tensor]
    token_head: Callable[[Tensor], Tensor]

    def grid(self, n_tokens: int, size: tuple[int, int]) -> tuple[int, int, int]:
        """``(prefix, h, w)``: prefix tokens and the patch grid for an ``size`` input of N tokens."""
        h, w = size[0] // self.patch[0], size[1] // self.patch[1]
        prefix = n_tokens - h * w
        if h < 1 or w < 1 or prefix < 0:
            raise InputError(
                f"{n_tokens} tokens do not hold the {h} x {w} patch grid of a {size[0]}x{size[1]} "
                f"input with {self.patch[0]}x{self.patch[1]} patches"
            )
        return prefix, h, w


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)  # type: ignore[call-overload]


def _torchvision(model: nn.Module) -> ViTLayout | None:
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    heads = getattr(model, "heads", None)
    if not isinstance(layers, nn.Sequential) or not isinstance(heads, nn.Module) \
            or not hasattr(model, "patch_size") or not isinstance(getattr(encoder, "ln", None), nn.Module):
        return None
    blocks = list(layers)
    if not blocks or not all(isinstance(getattr(b, "self_attention", None), nn.MultiheadAttention)
                             for b in blocks):
        return None
    norm = _module(encoder, "ln")  # type: ignore[arg-type]
    names = [f"encoder.layers.{n}" for n, _ in layers.named_children()]
    return ViTLayout("torchvision", names, blocks, [_module(b, "self_attention") for b in blocks],
                     _pair(model.patch_size), norm, heads, lambda z: heads(norm(z)[:, 0]))


def _timm(model: nn.Module) -> ViTLayout | None:
    blocks_mod = getattr(model, "blocks", None)
    if not isinstance(blocks_mod, (nn.Sequential, nn.ModuleList)) or not hasattr(model, "num_prefix_tokens") \
            or not hasattr(model, "patch_embed") or not hasattr(model, "forward_head"):
        return None
    blocks = list(blocks_mod)
    attns = [getattr(b, "attn", None) for b in blocks]
    if not blocks or not all(isinstance(a, nn.Module) and hasattr(a, "fused_attn")
                             and isinstance(getattr(a, "attn_drop", None), nn.Module) for a in attns):
        return None
    norm: nn.Module = getattr(model, "norm", nn.Identity())
    fc_norm: nn.Module = getattr(model, "fc_norm", nn.Identity())
    head_drop: nn.Module = getattr(model, "head_drop", nn.Identity())
    head_mod: nn.Module = model.head  # type: ignore[assignment]

    def head(pooled: Tensor) -> Tensor:
        out: Tensor = head_mod(head_drop(fc_norm(pooled)))
        return out

    def token_head(z: Tensor) -> Tensor:
        return model.forward_head(norm(z))  # type: ignore[operator, no-any-return]

    names = [f"blocks.{n}" for n, _ in blocks_mod.named_children()]
    return ViTLayout("timm", names, blocks, [a for a in attns if a is not None],
                     _pair(model.patch_embed.patch_size), norm, head, token_head)  # type: ignore[union-attr]


def _huggingface(model: nn.Module) -> ViTLayout | None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "patch_size"):
        return None
    found: list[tuple[str, nn.Module, nn.Module]] = []
    for name, module in model.named_modules():
        attn = getattr(module, "attention", None)
        if isinstance(attn, nn.Module) and all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj")) \
                and hasattr(getattr(attn, "config", None), "_attn_implementation"):
            found.append((name, module, attn))
    classifier = getattr(model, "classifier", None)
    base = next((m for m in model.children() if isinstance(getattr(m, "layernorm", None), nn.Module)), None)
    if not found or not isinstance(classifier, nn.Module) or base is None:
        return None
    norm: nn.Module = base.layernorm  # type: ignore[assignment]
    registers = int(getattr(config, "num_register_tokens", 0) or 0)

    pooler = getattr(base, "pooler", None)

    def token_head(z: Tensor) -> Tensor:
        z = norm(z)
        pooled = z[:, 0]
        if isinstance(pooler, nn.Module):  # BEiT: its pooler (mean of the patch tokens, norm)
            pooled = pooler(z)
        elif getattr(classifier, "in_features", None) == 2 * z.shape[-1]:
            # DINOv2: [class token, mean of the patch tokens] (register tokens left out)
            pooled = torch.cat([pooled, z[:, 1 + registers:].mean(dim=1)], dim=1)
        out: Tensor = classifier(pooled)
        return out

    return ViTLayout("huggingface", [n for n, _, _ in found], [b for _, b, _ in found],
                     [a for _, _, a in found], _pair(config.patch_size), norm, classifier, token_head)


def find_vit(model: nn.Module) -> ViTLayout | None:
    """The :class:`ViTLayout` of a torchvision, timm or Hugging Face ViT; None for other models."""
    for finder in (_torchvision, _timm, _huggingface):
        layout = finder(model)
        if layout is not None:
            return layout
    return None


class _ViTMeta(type):
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, nn.Module) and find_vit(instance) is not None


class ViTModel(metaclass=_ViTMeta):
    """The kind of model the ViT-native explainers accept (their ``model_type``).

    ``isinstance(model, ViTModel)`` is True for vision transformers whose attention xcam can
    compute: torchvision's ``VisionTransformer``, timm ViTs whose blocks use timm's ``Attention``
    (ViT, DeiT, DeiT-III, BEiT, EVA, ...) and Hugging Face image classifiers with ``q_proj`` /
    ``k_proj`` / ``v_proj`` attention (ViT, DeiT, ...).
    """


@dataclass
class Recording:
    """What one forward pass recorded: per selected block, ``A`` and (optionally) its output."""

    attentions: list[Tensor | None]
    tokens: list[Tensor | None] = field(default_factory=list)

    def all_attentions(self) -> list[Tensor]:
        """The recorded ``A`` (B, heads, N, N), one per selected block."""
        missing = [i for i, a in enumerate(self.attentions) if a is None]
        if missing:
            raise InputError(f"the attention of blocks {missing} did not run in the forward pass")
        return [a for a in self.attentions if a is not None]


def _explicit_mha(module: nn.MultiheadAttention, store: Callable[[Tensor], Tensor]) -> Callable[..., Any]:
    """``nn.MultiheadAttention.forward`` for self-attention, with ``A`` computed explicitly."""

    def forward(query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None,
                average_attn_weights: bool = True, is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        if key is not query or value is not query or key_padding_mask is not None \
                or attn_mask is not None or is_causal:
            raise InputError(
                "the ViT explainers read self-attention without masks (query, key and value the "
                f"same tensor); {type(module).__name__} was called otherwise"
            )
        x = query if module.batch_first else query.transpose(0, 1)
        b, n, d = x.shape
        heads = module.num_heads
        qkv = F.linear(x, module.in_proj_weight, module.in_proj_bias)
        q, k, v = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = store(torch.softmax((q * (d // heads) ** -0.5) @ k.transpose(-2, -1), dim=-1))
        out = module.out_proj((attn @ v).transpose(1, 2).reshape(b, n, d))
        if not module.batch_first:
            out = out.transpose(0, 1)
        weights = (attn.mean(1) if average_attn_weights else attn) if need_weights else None
        return out, weights

    return forward


def _check_mha(module: nn.MultiheadAttention) -> None:
    if module.in_proj_weight is None or module.bias_k is not None or module.add_zero_attn:
        raise InputError(
            f"{type(module).__name__} with separate key / value sizes or added key / value biases "
            "is not a ViT self-attention; the ViT explainers do not support it"
        )


def _module(parent: nn.Module, name: str) -> nn.Module:
    child = getattr(parent, name)
    assert isinstance(child, nn.Module)
    return child


def _override_mha(attn: nn.Module, store: Callable[[Tensor], Tensor]) -> Callable[[], None]:
    """Replace ``attn.forward`` by the explicit computation; returns the undo."""
    assert isinstance(attn, nn.MultiheadAttention)
    _check_mha(attn)
    had = "forward" in attn.__dict__
    old = attn.__dict__.get("forward")
    attn.__dict__["forward"] = _explicit_mha(attn, store)

    def undo() -> None:
        if had:
            attn.__dict__["forward"] = old
        else:
            del attn.__dict__["forward"]
    return undo


def _unfuse(attn: nn.Module) -> Callable[[], None]:
    """timm: ``fused_attn = False`` for the pass; returns the undo."""
    fused = attn.__dict__.get("fused_attn", attn.fused_attn)
    own = "fused_attn" in attn.__dict__
    attn.__dict__["fused_attn"] = False

    def undo() -> None:
        if own:
            attn.__dict__["fused_attn"] = fused
        else:
            del attn.__dict__["fused_attn"]
    return undo


def _eager(config: Any) -> Callable[[], None]:
    """Hugging Face: ``config._attn_implementation = "eager"`` for the pass; returns the undo."""
    key = "_attn_implementation_internal"
    own = key in config.__dict__
    impl = config.__dict__.get(key)
    config.__dict__[key] = "eager"

    def undo() -> None:
        if own:
            config.__dict__[key] = impl
        else:
            del config.__dict__[key]
    return undo


def _drop_hook(store: Callable[[Tensor], Tensor]) -> Callable[[nn.Module, Any, Tensor], Tensor]:
    def hook(_m: nn.Module, _a: Any, out: Tensor) -> Tensor:
        return store(out)
    return hook


def _hf_hook(store: Callable[[Tensor], Tensor]) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, _a: Any, out: Any) -> None:
        if not isinstance(out, tuple) or len(out) < 2 or not isinstance(out[1], Tensor):
            raise InputError(f"{type(module).__name__} did not return its attention probabilities")
        store(out[1])
    return hook


def _block_hook(rec: Recording, slot: int) -> Callable[[nn.Module, Any, Any], None]:
    def hook(_m: nn.Module, _a: Any, out: Any) -> None:
        rec.tokens[slot] = out[0] if isinstance(out, (tuple, list)) else out
    return hook


@contextmanager
def record(layout: ViTLayout, selected: Sequence[int], *, tokens: bool = False) -> Iterator[Recording]:
    """Record the attention probabilities (and block outputs) of the ``selected`` blocks.

    Args:
        layout: the model's :class:`ViTLayout`.
        selected: indices into ``layout.blocks``.
        tokens: also record each selected block's output tokens (B, N, D).

    Yields:
        A :class:`Recording`, filled by the next forward pass of the model.
    """
    rec = Recording([None] * len(selected), [None] * len(selected) if tokens else [])
    handles: list[torch.utils.hooks.RemovableHandle] = []
    restore: list[Callable[[], None]] = []

    def storer(slot: int) -> Callable[[Tensor], Tensor]:
        def store(attn: Tensor) -> Tensor:
            rec.attentions[slot] = attn
            return attn
        return store

    try:
        configs: set[int] = set()
        for slot, index in enumerate(selected):
            attn = layout.attentions[index]
            store = storer(slot)
            if layout.family == "torchvision":
                restore.append(_override_mha(attn, store))
            elif layout.family == "timm":
                restore.append(_unfuse(attn))
                handles.append(_module(attn, "attn_drop").register_forward_hook(_drop_hook(store)))
            else:
                config = attn.config
                if id(config) not in configs:
                    configs.add(id(config))
                    restore.append(_eager(config))
                handles.append(attn.register_forward_hook(_hf_hook(store)))
            if tokens:
                handles.append(layout.blocks[index].register_forward_hook(_block_hook(rec, slot)))
        yield rec
    finally:
        for handle in handles:
            handle.remove()
        for undo_one in reversed(restore):
            undo_one()


def patch_relevance(rows: Tensor, prefix: int, h: int, w: int) -> Tensor:
    """(B, N) relevance of every token -> (B, h, w) over the patch tokens (prefix tokens dropped)."""
    return rows[:, prefix:].reshape(rows.shape[0], h, w)


def query_row(matrix: Tensor, prefix: int) -> Tensor:
    """The row of (B, N, N) the map is read from.

    The class token's (row 0), or with no prefix token (a global-average-pooled ViT) the mean of
    all rows.
    """
    return matrix[:, 0] if prefix > 0 else matrix.mean(dim=1)


class AttentionExplainer(Explainer):
    """Base of the ViT-native explainers: blocks, attention recording, the patch-grid map.

    Args:
        model: a vision transformer (see :class:`ViTModel`).
        blocks: indices of the transformer blocks to use (negative counts from the end), or None
            for every block.
        output: keyword-only; reads the class scores in the model output (see
            :class:`~xcam.methods.base.Explainer`).

    Raises:
        InputTypeError: ``model`` is not a vision transformer xcam can read, or ``blocks`` is not
            a sequence of ints.
        InputError: a block index is out of range.
    """

    needs_layer: ClassVar[bool] = False
    model_type: ClassVar[type] = ViTModel
    """Runs on vision transformers only (:class:`ViTModel`)."""

    def __init__(self, model: nn.Module, blocks: Sequence[int] | None = None, *,
                 output: OutputFn | None = None) -> None:
        super().__init__(model, output=output)
        layout = find_vit(model)
        if layout is None:
            raise InputTypeError(
                f"model: {type(self).__name__} explains vision transformers (torchvision "
                f"VisionTransformer, timm ViT / DeiT / BEiT / EVA, Hugging Face ViT / DeiT), got "
                f"{model_name(model)}; for a CNN use a CAM method such as GradCAM"
            )
        self.layout = layout
        n = len(layout.blocks)
        if blocks is None:
            self.blocks = list(range(n))
        else:
            if isinstance(blocks, (str, bytes)) or not all(
                    isinstance(b, int) and not isinstance(b, bool) for b in blocks):
                raise InputTypeError(f"blocks must be a sequence of block indices (ints), got {blocks!r}")
            bad = [b for b in blocks if not -n <= b < n]
            if bad or len(blocks) == 0:
                raise InputError(
                    f"blocks {bad or '[]'}: {model_name(model)} has {n} transformer blocks "
                    f"(valid indices 0..{n - 1} or -{n}..-1); pass at least one, or None for all"
                )
            self.blocks = sorted({b % n for b in blocks})

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"blocks": list(self.blocks)}

    def forward(self, inputs: Tensor, target: Target, *, gradients: bool, tokens: bool = False
                ) -> tuple[Recording, Tensor | None, Tensor, Any]:
        """One forward pass in eval mode recording ``A``: ``(recording, indices, scores, output)``.

        With ``gradients`` the pass runs with autograd on (the inputs become a leaf that requires
        grad, so ``A`` is connected even in a frozen model); ``scores`` are then still connected.
        """
        if target.reads_layer:
            raise TargetError(
                f"{type(self).__name__} does not explain units of a layer; pass targets=None, a "
                "class index per sample, or a callable on the model output"
            )
        if gradients and torch.is_inference_mode_enabled():
            raise GradientModeError(f"{type(self).__name__} needs gradients; call it outside inference_mode")
        x = inputs.detach().requires_grad_(True) if gradients else inputs
        with eval_mode(self.model), torch.set_grad_enabled(gradients), \
                record(self.layout, self.blocks, tokens=tokens) as rec:
            output = self.model(x)
            indices, scores = target.evaluate(output)
        return rec, indices, scores, output

    def finish(self, inputs: Tensor, rows: Tensor, indices: Tensor | None, scores: Tensor) -> Explanation:
        """(B, N) token relevance -> the :class:`Explanation` (patch grid, upsampled)."""
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        prefix, h, w = self.layout.grid(int(rows.shape[1]), size)
        low_res = patch_relevance(rows.detach(), prefix, h, w).float()
        return self.make_explanation(upsample(low_res, size), indices, scores.detach(),
                                     low_res=low_res, layer=None)

    def prefix(self, inputs: Tensor, n_tokens: int) -> int:
        """The number of prefix tokens (class, distillation, registers) for this input size."""
        return self.layout.grid(n_tokens, (int(inputs.shape[-2]), int(inputs.shape[-1])))[0]


def project(layout: ViTLayout, tokens: Tensor, pooling: Pooling) -> Tensor:
    """Class scores of intermediate tokens ``Z^l`` (B, N, D) through the model's own head.

    ``"mean"``: ``head( norm( mean_i z_i ) )`` (LeGrad's released code, torch-cam);
    ``"token"``: the model's own pooling after its final norm (the class token for
    torchvision / Hugging Face ViTs, timm's ``forward_head``).
    """
    try:
        if pooling == "mean":
            return layout.head(layout.norm(tokens.mean(dim=1)))
        return layout.token_head(tokens)
    except RuntimeError as err:  # e.g. a head that takes more than one pooled token
        raise InputError(
            f"LeGrad could not apply the model's head to the tokens of a block with "
            f"pooling={pooling!r} ({err}); try pooling='token' (the model's own pooling), or pass "
            "projection= mapping tokens (B, N, D) to class scores"
        ) from err

