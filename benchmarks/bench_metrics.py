"""Speed of the faithfulness curves on CPU: ``python -m benchmarks metrics [--quick]``.

Two comparisons, each timed in interleaved rounds within one run (ratios are what counts):

1. xcam deletion + insertion (one shared clean pass) against the bare batched forward passes
   those curves need: the same number of images, in passes of the same size, on random tensors.
   Target: within 1.2x.
2. The xcam deletion curve against Quantus ``PixelFlipping`` on the same images, maps, targets
   and number of steps. Quantus counts ``features_in_step`` in channel values, so K steps over
   all pixels of a 3-channel H x W image is ``features_in_step = 3 * H * W / K``; Quantus also
   requires it to divide H * W, so K is a multiple of 3 (96 near 100 on 224 x 224).
   Target: no slower. Quantus runs one pass of B images per step; xcam is timed with its
   default ``batch_size=64`` and with passes of B images, the same size as Quantus' (on CPUs
   large passes can cost more per image: their activations leave the cache).

Model: ResNet-18 with random weights (nothing is downloaded), 224 x 224 inputs, eval mode, one
intra-op thread (restored afterwards): on a shared machine, multi-threaded OpenMP timings mostly
measure the other processes.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable

import numpy as np
import torch
import torchvision

from benchmarks.common import format_table, interleaved
from xcam.metrics import deletion, gaussian_blur, insertion
from xcam.metrics.similarity import descending_rank
from xcam.postprocess import upsample

if not hasattr(np, "trapz"):  # Quantus 0.6 calls numpy.trapz, which numpy 2.4 removed
    np.trapz = np.trapezoid  # type: ignore[attr-defined]


def _setup(n_images: int, size: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor,
                                              torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n_images, 3, size, size, generator=gen)
    # CAM-like maps: a coarse 7 x 7 map upsampled to the input
    maps = upsample(torch.rand(n_images, 7, 7, generator=gen), (size, size))
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    return model, x, maps, targets


def _bare(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, steps: int,
          batch_size: int) -> Callable[[], None]:
    """The forward passes deletion + insertion need, on the very images they build (prebuilt,
    outside the timing): the clean pass, then each curve's perturbed images in passes of at most
    ``batch_size``, as xcam chunks them."""
    b, _, h, w = x.shape
    counts = torch.div(torch.arange(steps + 1) * h * w, steps, rounding_mode="floor")
    rank = descending_rank(maps)
    blurred = gaussian_blur(x)
    rows = torch.arange(b * steps)
    sample, step = rows // steps, rows % steps
    deleted = rank[sample] < counts[1:][step][:, None, None]
    inserted = rank[sample] < counts[:-1][step][:, None, None]
    curves = [
        torch.where(deleted[:, None], torch.zeros(()), x[sample]),
        torch.where(inserted[:, None], x[sample], blurred[sample]),
    ]

    def run() -> None:
        with torch.no_grad():
            model(x)
            for images in curves:
                for start in range(0, images.shape[0], batch_size):
                    model(images[start:start + batch_size])

    return run


def _paired(contenders: dict[str, Callable[[], object]],
            rounds: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median seconds per contender and every round's time, one :func:`interleaved` round at a
    time (the order alternates between rounds), so that ratios can be taken round by round."""
    interleaved(contenders, rounds=1, warmup=1)  # warm-up round, not recorded
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name, sec in interleaved({n: contenders[n] for n in order}, rounds=1,
                                     warmup=0).items():
            samples[name].append(sec)
    return {name: statistics.median(samples[name]) for name in names}, samples


def _paired_ratios(samples: dict[str, list[float]], reference: str) -> str:
    """One line per contender: the median (and range) of its round-by-round ratio to
    ``reference``, which machine load shared by both contenders of a round cancels out of."""
    lines = []
    for name, values in samples.items():
        if name == reference:
            continue
        ratios = [a / b for a, b in zip(values, samples[reference])]
        lines.append(f"- {name} / {reference}, round by round: median "
                     f"**{statistics.median(ratios):.2f}x** (range {min(ratios):.2f}x to "
                     f"{max(ratios):.2f}x over {len(ratios)} rounds)")
    return "\n".join(lines)


def _quantus_steps(size: int, wanted: int) -> tuple[int, int]:
    """``(K, features_in_step)`` with K closest to ``wanted`` such that
    ``features_in_step = 3 * H * W / K`` is an integer that divides ``H * W`` (Quantus' rule)."""
    pixels = size * size
    options = [(k, 3 * pixels // k) for k in range(3, 3 * pixels + 1, 3)
               if (3 * pixels) % k == 0 and pixels % (3 * pixels // k) == 0]
    return min(options, key=lambda kf: (abs(kf[0] - wanted), kf[0]))


def main(quick: bool = False) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> str:
    n_images = 2
    steps = 20 if quick else 100
    rounds = 3 if quick else 7
    size = 224
    batch_size = 64
    model, x, maps, targets = _setup(n_images, size)

    # 1. deletion + insertion vs the bare forward passes they need
    def xcam_curves() -> None:
        with torch.no_grad():
            clean = model(x)
        deletion(model, x, maps, targets, steps=steps, batch_size=batch_size, clean_output=clean)
        insertion(model, x, maps, targets, steps=steps, batch_size=batch_size, clean_output=clean)

    first, first_rounds = _paired(
        {
            "bare batched forwards": _bare(model, x, maps, steps, batch_size),
            "xcam deletion + insertion": xcam_curves,
        },
        rounds,
    )

    # 2. deletion curve vs Quantus PixelFlipping, same images and steps
    import quantus

    q_steps, features_in_step = _quantus_steps(size, steps)
    pixel_flipping = quantus.PixelFlipping(
        features_in_step=features_in_step, perturb_baseline="black", disable_warnings=True,
        display_progressbar=False,
    )
    x_np, y_np = x.numpy(), targets.numpy()
    a_np = maps.numpy()[:, None]

    def quantus_deletion() -> None:
        pixel_flipping(model=model, x_batch=x_np, y_batch=y_np, a_batch=a_np, device="cpu",
                       batch_size=n_images)

    def xcam_deletion(size: int) -> Callable[[], object]:
        return lambda: deletion(model, x, maps, targets, steps=q_steps, batch_size=size)

    second, second_rounds = _paired(
        {
            "quantus PixelFlipping": quantus_deletion,
            f"xcam deletion, batch_size={batch_size}": xcam_deletion(batch_size),
            f"xcam deletion, batch_size={n_images} (Quantus' pass size)": xcam_deletion(n_images),
        },
        rounds,
    )

    setting = (
        f"ResNet-18 (random weights), {n_images} images of 3x{size}x{size}, {steps} steps, "
        f"batch_size {batch_size}, CPU ({torch.get_num_threads()} thread, "
        f"{platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"quantus {quantus.__version__}; median of {rounds} interleaved rounds (after one "
        f"warm-up round), contender order alternating"
    )
    images_curves = n_images * (2 * steps + 1)
    return "\n\n".join([
        "## Metrics: deletion and insertion curves",
        setting,
        format_table(
            f"Deletion + insertion vs the bare forward passes they need ({images_curves} images)",
            first, {"vs bare": "bare batched forwards"},
        ),
        _paired_ratios(first_rounds, "bare batched forwards"),
        format_table(
            f"Deletion curve vs Quantus PixelFlipping ({q_steps} steps, Quantus "
            f"features_in_step={features_in_step})",
            second, {"vs Quantus": "quantus PixelFlipping"},
        ),
        _paired_ratios(second_rounds, "quantus PixelFlipping"),
        "xcam's deletion curve also scores the clean image (one more pass of B images than "
        "Quantus, whose curve starts after the first step).",
    ])


if __name__ == "__main__":
    print(main(quick=True))
