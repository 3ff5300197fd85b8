"""RISE: xcam vs the bare batched forward passes it needs.

ResNet-18 (random weights: nothing to download), one 112 x 112 image, 500 masks, batches of 64,
on the CPU. Every figure is a median over interleaved rounds (:mod:`benchmarks.common`):

- "bare": the 500 masked images, already built (mask drawing and masking excluded), run through
  the model in batches of 64 without gradients, in the channels-last layout that xcam uses on the
  CPU and in the plain layout; nothing else. This is the floor for any RISE implementation;
- "xcam RISE": the whole call (mask drawing, upsampling, masking, the clean pass, softmax and the
  weighted sum of the masks).

Run: ``python -m benchmarks rise`` (``--quick`` for fewer rounds).
"""

from __future__ import annotations

import warnings

import torch
import torchvision

from benchmarks.common import format_table, interleaved

SIZE, MASKS, BATCH = 112, 500, 64


def main(quick: bool = False) -> str:
    import xcam

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    rounds = 3 if quick else 7
    explainer = xcam.create("rise", model, n_masks=MASKS, batch_size=BATCH, seed=0)
    masks = explainer.masks((SIZE, SIZE))
    masked = x * masks[:, None]
    plain = [masked[i:i + BATCH].contiguous() for i in range(0, MASKS, BATCH)]
    last = [b.contiguous(memory_format=torch.channels_last) for b in plain]

    def bare(batches):
        def run():
            with torch.no_grad():
                for batch in batches:
                    model(batch)
        return run

    medians = interleaved({
        "bare: 500 masked images, channels-last": bare(last),
        "bare: 500 masked images, plain layout": bare(plain),
        "xcam RISE (500 masks)": lambda: explainer(x),
    }, rounds=rounds, warmup=1)
    return format_table(
        f"RISE, ResNet-18, 1 image {SIZE}x{SIZE}, {MASKS} masks, batches of {BATCH}, CPU "
        f"({rounds} rounds, {torch.get_num_threads()} threads)",
        medians, {"vs bare channels-last": "bare: 500 masked images, channels-last",
                  "vs bare plain": "bare: 500 masked images, plain layout"})
