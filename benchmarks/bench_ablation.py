"""Ablation-CAM: xcam vs pytorch-grad-cam, and the bare batched forward passes it needs.

ResNet-18 (random weights: nothing to download), 1 image, 112x112, layer4 (512 feature maps), on
the CPU, batches of 32 ablated copies for both libraries. Every figure is a median over
interleaved rounds; ratios are against contenders timed in the same rounds:

- "bare": 512 + 1 copies of the image through the whole model in passes of 32, without gradients
  and without any ablation. Both implementations skip the explained layer itself in the ablated
  passes (its output is the recorded one, ablated); xcam also runs the layers before it on one
  copy per pass, so only the pooling and the classifier run per copy;
- pytorch-grad-cam's ``AblationCAM`` at its documented usage, same layer, class and batch size.

Run: ``python -m benchmarks ablation`` (``--quick``: one round, no warm-up).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
import torchvision

from benchmarks.common import format_table, interleaved

SIZE, BATCH_SIZE = 112, 32


def _bare(model, x, n, batch_size):
    """``n`` copies of ``x`` through ``model`` in passes of ``batch_size``, no gradients."""
    with torch.no_grad():
        for start in range(0, n, batch_size):
            model(x.expand(min(batch_size, n - start), *x.shape[1:]))


def main(quick: bool = False) -> str:
    from pytorch_grad_cam import AblationCAM as PGCAblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        target = int(model(x).argmax(1))
    channels = 512
    rounds, warmup = (1, 0) if quick else (5, 1)
    ours = xcam.methods.AblationCAM(model, "layer4", batch_size=BATCH_SIZE, progress=False)

    def peer():
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
            with PGCAblationCAM(model=model, target_layers=[model.layer4], batch_size=BATCH_SIZE) as cam:
                cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    medians = interleaved({
        f"bare: {channels + 1} copies, passes of {BATCH_SIZE}": lambda: _bare(
            model, x, channels + 1, BATCH_SIZE),
        f"xcam AblationCAM (batch_size={BATCH_SIZE})": lambda: ours(x, target),
        f"pytorch-grad-cam AblationCAM (batch_size={BATCH_SIZE})": peer,
    }, rounds=rounds, warmup=warmup)
    return format_table(
        f"Ablation-CAM, ResNet-18, 1 image, {SIZE}x{SIZE}, layer4, CPU ({rounds} rounds)",
        medians, {"vs bare": f"bare: {channels + 1} copies, passes of {BATCH_SIZE}",
                  "vs pytorch-grad-cam": f"pytorch-grad-cam AblationCAM (batch_size={BATCH_SIZE})"})
