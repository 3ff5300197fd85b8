"""Grad-CAM, Grad-CAM++ and Smooth Grad-CAM++: xcam vs captum, pytorch-grad-cam, torch-cam.

ResNet-50 (random weights: nothing to download), batch 8, 224x224, layer4, on the CPU. Every
figure is a median over interleaved rounds, and the ratios are against contenders timed in the
same rounds:

- "bare": the cost no implementation can avoid, one forward pass plus ``torch.autograd.grad`` of
  the target scores to the tapped layer (a plain hook, no xcam code);
- the peers at their documented usage on the same model, batch, layer and classes.

Run: ``python -m benchmarks cam`` (``--quick`` for fewer rounds).
"""

from __future__ import annotations

import warnings

import torch
import torchvision

from benchmarks.common import format_table, interleaved

BATCH, SIZE, SAMPLES = 8, 224, 16


def _bare(model, layer, x, targets):
    """Forward + autograd.grad to ``layer``: the floor for any gradient CAM."""
    store = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("f", o))
    try:
        with torch.enable_grad():
            out = model(x)
            score = out.gather(1, targets[:, None]).sum()
            torch.autograd.grad(score, store["f"])
    finally:
        handle.remove()


def _bare_noisy(model, layer, x, targets, n, batch_size=32):
    """The noisy passes Smooth Grad-CAM++ cannot avoid: n copies, batched, grads to ``layer``."""
    reps = x.repeat(n, 1, 1, 1)
    t = targets.repeat(n)
    for start in range(0, reps.shape[0], batch_size):
        chunk = reps[start:start + batch_size]
        _bare(model, layer, chunk + 0.1 * torch.randn_like(chunk), t[start:start + batch_size])


def main(quick: bool = False) -> str:
    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from pytorch_grad_cam import GradCAMPlusPlus as PGCGradCAMPP
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TCGradCAM
    from torchcam.methods import GradCAMpp as TCGradCAMpp
    from torchcam.methods import SmoothGradCAMpp as TCSmooth

    import xcam

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    with torch.no_grad():
        targets = model(x).argmax(1)
    t_list = targets.tolist()
    rounds = 3 if quick else 7

    def pgc(cls):
        def run():
            with cls(model=model, target_layers=[model.layer4]) as cam:
                cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in t_list])
        return run

    def torchcam(cls, **kw):
        def run():
            with cls(model, target_layer="layer4", **kw) as extractor:
                out = model(x)
                extractor(t_list, out)
            model.zero_grad(set_to_none=True)
        return run

    xg = xcam.GradCAM(model, "layer4")
    xpp = xcam.GradCAMPlusPlus(model, "layer4")
    lgc = LayerGradCam(model, model.layer4)
    single = interleaved({
        "bare forward + grad to layer4": lambda: _bare(model, model.layer4, x, targets),
        "xcam GradCAM": lambda: xg(x, targets),
        "captum LayerGradCam + ReLU": lambda: lgc.attribute(x, target=t_list, relu_attributions=True),
        "pytorch-grad-cam GradCAM": pgc(PGCGradCAM),
        "torch-cam GradCAM": torchcam(TCGradCAM),
        "xcam GradCAMPlusPlus": lambda: xpp(x, targets),
        "pytorch-grad-cam GradCAMPlusPlus": pgc(PGCGradCAMPP),
        "torch-cam GradCAMpp": torchcam(TCGradCAMpp),
    }, rounds=rounds)
    peers = [k for k in single if k.startswith(("captum", "pytorch-grad-cam GradCAM", "torch-cam GradCAM"))
             and "PlusPlus" not in k and "pp" not in k]
    fastest = min(peers, key=single.get)
    text = [format_table(
        f"Grad-CAM / Grad-CAM++, ResNet-50, batch {BATCH}, {SIZE}x{SIZE}, CPU ({rounds} rounds)",
        single, {"vs bare": "bare forward + grad to layer4", f"vs fastest peer ({fastest})": fastest})]

    xs = xcam.SmoothGradCAMPlusPlus(model, "layer4", n_samples=SAMPLES, batch_size=32, seed=0)
    xs8 = xcam.SmoothGradCAMPlusPlus(model, "layer4", n_samples=SAMPLES, batch_size=BATCH, seed=0)
    tc_name = f"torch-cam SmoothGradCAMpp (num_samples={SAMPLES}, passes of {BATCH})"
    smooth = interleaved({
        f"bare: {SAMPLES} noisy copies, passes of 32": lambda: _bare_noisy(
            model, model.layer4, x, targets, SAMPLES, batch_size=32),
        f"bare: {SAMPLES} noisy copies, passes of {BATCH}": lambda: _bare_noisy(
            model, model.layer4, x, targets, SAMPLES, batch_size=BATCH),
        "xcam SmoothGradCAMPlusPlus (batch_size=32, default)": lambda: xs(x, targets),
        f"xcam SmoothGradCAMPlusPlus (batch_size={BATCH})": lambda: xs8(x, targets),
        tc_name: torchcam(TCSmooth, num_samples=SAMPLES),
    }, rounds=max(2, rounds // 2), warmup=1)
    text.append(format_table(
        f"Smooth Grad-CAM++, ResNet-50, batch {BATCH}, {SAMPLES} samples, CPU",
        smooth, {"vs bare, passes of 32": f"bare: {SAMPLES} noisy copies, passes of 32",
                 f"vs bare, passes of {BATCH}": f"bare: {SAMPLES} noisy copies, passes of {BATCH}",
                 "vs torch-cam": tc_name}))
    return "\n\n".join(text)
