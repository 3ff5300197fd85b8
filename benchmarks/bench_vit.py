"""ViT explainers on torchvision ViT-B/16: Grad-CAM, attention rollout, LeGrad (xcam vs torch-cam).

Random weights (nothing to download), 224 x 224, on the CPU; every figure is a median over
interleaved rounds, and the ratios are against contenders timed in the same rounds:

- Grad-CAM at the last block's ``ln_1`` output (tokens reshaped to the 14 x 14 grid) vs "bare":
  one forward pass plus ``torch.autograd.grad`` of the class scores to that output (a plain hook);
- rollout vs "bare attention": one forward pass under ``no_grad`` that returns every block's
  attention probabilities (``need_weights=True, average_attn_weights=False`` forced on each
  ``nn.MultiheadAttention`` by a hook; plain torchvision otherwise);
- LeGrad vs torch-cam's ``LeGrad`` on the same blocks (the last four, torch-cam's documented
  usage), classes and images.

Run: ``python -m benchmarks vit`` (``--quick``: batch 1, fewer rounds).
"""

from __future__ import annotations

import warnings

import torch
import torchvision
from torch import nn

from benchmarks.common import format_table, interleaved

SIZE = 224


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16().eval()
    nn.init.normal_(model.heads.head.weight, std=0.05)  # torchvision zeroes it: zero gradients
    return model


def _bare_grad(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> None:
    """Forward + autograd.grad to ``layer``'s output: the floor for Grad-CAM."""
    store = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("f", o))
    try:
        with torch.enable_grad():
            out = model(x)
            torch.autograd.grad(out.gather(1, targets[:, None]).sum(), store["f"])
    finally:
        handle.remove()


def _bare_attention(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """One no-grad forward returning every block's per-head attention probabilities."""
    found: list[torch.Tensor] = []
    handles = []

    def pre(module, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def post(module, args, kwargs, output):
        found.append(output[1])

    for block in model.encoder.layers:
        handles.append(block.self_attention.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.self_attention.register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return found


def main(quick: bool = False) -> str:
    import xcam

    batch, rounds = (1, 2) if quick else (4, 5)
    model = _model()
    x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        targets = model(x).argmax(1)
    last_ln = model.encoder.layers[-1].ln_1
    layer_name = f"encoder.layers.{list(model.encoder.layers.named_children())[-1][0]}.ln_1"
    sections = [f"## ViT explainers on ViT-B/16 (batch {batch}, {SIZE} px, CPU, "
                f"{torch.get_num_threads()} threads)", ""]

    gradcam = xcam.GradCAM(model, layer=layer_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        med = interleaved({
            "bare forward + grad": lambda: _bare_grad(model, last_ln, x, targets),
            "xcam GradCAM": lambda: gradcam(x, targets),
        }, rounds=rounds)
    sections += [format_table("Grad-CAM at the last block's ln_1 (tokens -> 14 x 14)", med,
                              {"vs bare": "bare forward + grad"}), ""]

    rollout = xcam.create("rollout", model)
    med = interleaved({
        "bare forward returning attention": lambda: _bare_attention(model, x),
        "xcam rollout": lambda: rollout(x, targets),
    }, rounds=rounds)
    sections += [format_table("Attention rollout (12 blocks, head fusion mean)", med,
                              {"vs bare": "bare forward returning attention"}), ""]

    blocks = [8, 9, 10, 11]
    legrad = xcam.create("legrad", model, blocks=blocks)
    contenders = {"xcam LeGrad": lambda: legrad(x, targets)}
    try:
        from torchcam.methods import LeGrad as TorchCamLeGrad
    except ImportError:  # torch-cam not installed: xcam alone
        TorchCamLeGrad = None
    if TorchCamLeGrad is not None:
        layers = [model.encoder.layers[i] for i in blocks]
        classes = targets.tolist()

        def torchcam() -> object:
            with TorchCamLeGrad(model, layers) as extractor:
                scores = model(x)
                return extractor(classes, scores, normalized=False)

        contenders["torch-cam LeGrad"] = torchcam
    med = interleaved(contenders, rounds=rounds)
    sections += [format_table("LeGrad (blocks 8-11)", med, {"vs torch-cam": "torch-cam LeGrad"})]
    return "\n".join(sections)
