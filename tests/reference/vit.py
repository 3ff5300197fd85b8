"""ViT-native explainers written from the papers' equations, one sample and one block at a time.

Nothing is shared with xcam: the attention probabilities come from a hand-written forward pass
of each family (``softmax(Q K^T / sqrt(d))`` from the projection weights) or, for Hugging Face,
from the library's own ``output_attentions=True`` in eager mode; gradients from plain
``torch.autograd.grad``; relevance rules in float64 with explicit loops over heads and layers.

A *forward* here is ``forward(x) -> (logits, [A^l (1, heads, N, N)], [Z^l (1, N, D)])`` for one
sample, still connected to autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

Forward = Callable[[Tensor], tuple[Tensor, list[Tensor], list[Tensor]]]


def _attention(y: Tensor, w_q, b_q, w_k, b_k, w_v, b_v, heads: int,
               q_norm: Callable[[Tensor], Tensor] = lambda t: t,
               k_norm: Callable[[Tensor], Tensor] = lambda t: t) -> tuple[Tensor, Tensor]:
    """Multi-head self-attention of (1, N, D) tokens: ``(A (1, heads, N, N), A V (1, N, D))``."""
    _, n, d_model = y.shape
    d = d_model // heads

    def split(t: Tensor) -> Tensor:
        return t.reshape(1, n, heads, d).transpose(1, 2)

    q = q_norm(split(y @ w_q.T + (0 if b_q is None else b_q)))
    k = k_norm(split(y @ w_k.T + (0 if b_k is None else b_k)))
    v = split(y @ w_v.T + (0 if b_v is None else b_v))
    logits = q @ k.transpose(-2, -1) / math.sqrt(d)
    a = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
    a = a / a.sum(dim=-1, keepdim=True)  # softmax by hand
    return a, (a @ v).transpose(1, 2).reshape(1, n, d_model)


def torchvision_forward(model: nn.Module) -> Forward:
    """torchvision ``VisionTransformer`` by hand (eval mode: dropout is the identity)."""

    def forward(x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        d_model = model.hidden_dim
        t = model.conv_proj(x).reshape(1, d_model, -1).permute(0, 2, 1)
        z = torch.cat([model.class_token, t], dim=1) + model.encoder.pos_embedding
        attns, outs = [], []
        for blk in model.encoder.layers:
            mha = blk.self_attention
            w, b = mha.in_proj_weight, mha.in_proj_bias
            a, o = _attention(blk.ln_1(z), w[:d_model], b[:d_model], w[d_model:2 * d_model],
                              b[d_model:2 * d_model], w[2 * d_model:], b[2 * d_model:], mha.num_heads)
            z = z + mha.out_proj(o)
            z = z + blk.mlp(blk.ln_2(z))
            attns.append(a)
            outs.append(z)
        return model.heads(model.encoder.ln(z)[:, 0]), attns, outs

    return forward


def timm_forward(model: nn.Module) -> Forward:
    """timm ``VisionTransformer`` with plain ``Block`` / ``Attention`` by hand (eval mode)."""

    def forward(x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        z = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        attns, outs = [], []
        for blk in model.blocks:
            att = blk.attn
            d_model = att.qkv.in_features
            w, b = att.qkv.weight, att.qkv.bias
            bs = [None] * 3 if b is None else [b[:d_model], b[d_model:2 * d_model], b[2 * d_model:]]
            a, o = _attention(blk.norm1(z), w[:d_model], bs[0], w[d_model:2 * d_model], bs[1],
                              w[2 * d_model:], bs[2], att.num_heads, att.q_norm, att.k_norm)
            z = z + blk.ls1(att.proj(att.norm(o)))
            z = z + blk.ls2(blk.mlp(blk.norm2(z)))
            attns.append(a)
            outs.append(z)
        return model.forward_head(model.norm(z)), attns, outs

    return forward


def huggingface_forward(model: nn.Module) -> Forward:
    """A Hugging Face classifier built with ``attn_implementation="eager"``: its own attentions."""

    def forward(x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        out = model(pixel_values=x, output_attentions=True, output_hidden_states=True)
        return out.logits, list(out.attentions), list(out.hidden_states[1:])

    return forward


def _row(matrix: Tensor, prefix: int) -> Tensor:
    return matrix[0] if prefix > 0 else matrix.mean(dim=0)


def rollout(forward: Forward, x: Tensor, prefix: int, head_fusion: str = "mean",
            discard_ratio: float = 0.0) -> Tensor:
    """Abnar and Zuidema (2020): ``Ã = Â_L ... Â_1`` with ``Â = (F + I) / rowsum`` -> (N - prefix,)."""
    with torch.no_grad():
        _, attns, _ = forward(x)
    n = attns[0].shape[-1]
    joint = torch.eye(n, dtype=torch.float64)
    for a in attns:
        a = a[0].double()
        fused = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                column = [float(a[h, i, j]) for h in range(a.shape[0])]
                fused[i, j] = {"mean": sum(column) / len(column), "max": max(column),
                               "min": min(column)}[head_fusion]
        k = int(discard_ratio * n * n)
        if k:
            order = sorted((float(fused[i, j]), i, j) for i in range(n) for j in range(n)
                           if (i, j) != (0, 0))
            for _, i, j in order[:k]:
                fused[i, j] = 0.0
        aug = fused + torch.eye(n, dtype=torch.float64)
        aug = aug / aug.sum(dim=1, keepdim=True)
        joint = aug @ joint
    return _row(joint, prefix)[prefix:]


def chefer(forward: Forward, x: Tensor, cls: int, prefix: int) -> Tensor:
    """Chefer et al. (2021), Eqs. 5-6: ``R <- R + E_h[(∇A ⊙ A)^+] R`` from ``R = I`` -> (N - prefix,)."""
    with torch.enable_grad():
        logits, attns, _ = forward(x)
        grads = torch.autograd.grad(logits[0, cls], attns)
    n = attns[0].shape[-1]
    relevance = torch.eye(n, dtype=torch.float64)
    for a, g in zip(attns, grads):
        heads = a.shape[1]
        cam = sum((g[0, h].double() * a[0, h].detach().double()).clamp(min=0)
                  for h in range(heads)) / heads
        relevance = relevance + cam @ relevance
    return _row(relevance, prefix)[prefix:]


def legrad(forward: Forward, x: Tensor, cls: int, prefix: int, blocks: list[int],
           project: Callable[[Tensor], Tensor]) -> Tensor:
    """LeGrad: ``E = mean_l mean_{h,i} ReLU(d s^l / d A^l)[h, i, patches]``, ``s^l = project(Z^l)_c``."""
    total = None
    for block in blocks:
        with torch.enable_grad():
            _, attns, outs = forward(x)  # a fresh pass per block: nothing shared between blocks
            s = project(outs[block])[0, cls]
            (g,) = torch.autograd.grad(s, attns[block])
        g = g[0].double().clamp(min=0)
        e = sum(g[h, i] for h in range(g.shape[0]) for i in range(g.shape[1])) / (g.shape[0] * g.shape[1])
        total = e if total is None else total + e
    assert total is not None
    return (total / len(blocks))[prefix:]
