"""Similarity targets: xcam Grad-CAM vs a bare forward + gradient of the embedding's cosine.

CLIP ViT-B/32 image towers with random weights (nothing to download), one 224 x 224 image, on the
CPU: open_clip's ``ViT-B-32`` (``create_model(..., pretrained=None)``) and Hugging Face's
``CLIPModel`` from its default ``CLIPConfig`` (also ViT-B/32). The layer is the last block's first
LayerNorm. Every figure is a median over interleaved rounds (:mod:`benchmarks.common`):

- "bare": a forward hook keeps the layer's output, ``model.encode_image(x)`` /
  ``model.get_image_features(x)``, the cosine to the reference, ``torch.autograd.grad`` of it to
  the kept output; nothing else. The floor for any Grad-CAM of this score;
- "xcam Grad-CAM, similarity": the whole call with ``targets=xcam.targets.similarity(text)`` on the
  two-tower model itself (image tower found automatically, checks, token reshaping, the map);
- "xcam Grad-CAM, callable": the same with a hand-written cosine callable on a hand-written image
  tower wrapper (what a user wrote before the similarity target).

Run: ``python -m benchmarks similarity`` (``--quick`` for fewer rounds).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import format_table, interleaved

SIZE = 224


def _open_clip() -> tuple[nn.Module, Callable[[Tensor], Tensor], str, int]:
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    return model, model.encode_image, "visual.transformer.resblocks.11.ln_1", 512


def _hf_clip() -> tuple[nn.Module, Callable[[Tensor], Tensor], str, int]:
    from transformers import CLIPConfig, CLIPModel

    model = CLIPModel(CLIPConfig()).eval()

    def encode(x: Tensor) -> Tensor:
        out = model.get_image_features(pixel_values=x)
        return getattr(out, "pooler_output", out)

    return model, encode, "vision_model.encoder.layers.11.layer_norm1", 512


class _Tower(nn.Module):
    def __init__(self, model: nn.Module, encode: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.encode = encode

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)


def _table(name: str, build: Callable[[], tuple[nn.Module, Callable[[Tensor], Tensor], str, int]],
           rounds: int) -> str:
    import xcam

    torch.manual_seed(0)
    model, encode, layer, dim = build()
    module = model.get_submodule(layer)
    x = torch.randn(1, 3, SIZE, SIZE)
    text = torch.randn(dim)

    def bare() -> None:
        store: list[Tensor] = []
        handle = module.register_forward_hook(lambda m, i, o: store.append(o))
        try:
            with torch.enable_grad():
                score = F.cosine_similarity(encode(x), text[None], dim=1).sum()
                torch.autograd.grad(score, store[0])
        finally:
            handle.remove()

    ours = xcam.GradCAM(model, layer)
    wrapped = xcam.GradCAM(_Tower(model, encode), module)
    target = xcam.targets.similarity(text)
    medians = interleaved({
        "bare: forward + cosine + grad to the layer": bare,
        "xcam Grad-CAM, similarity target": lambda: ours(x, target),
        "xcam Grad-CAM, callable on a hand wrapper": lambda: wrapped(
            x, lambda e: F.cosine_similarity(e, text[None], dim=1)),
    }, rounds=rounds, warmup=1)
    return format_table(
        f"Similarity-target Grad-CAM, {name} ViT-B/32 (random weights), 1 image {SIZE}x{SIZE}, "
        f"layer {layer}, CPU ({rounds} rounds, {torch.get_num_threads()} threads)",
        medians, {"vs bare": "bare: forward + cosine + grad to the layer"})


def main(quick: bool = False) -> str:
    warnings.filterwarnings("ignore")
    rounds = 3 if quick else 9
    return "\n\n".join(_table(name, build, rounds)
                       for name, build in (("open_clip", _open_clip), ("Hugging Face", _hf_clip)))
