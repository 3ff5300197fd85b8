"""Occlusion, SmoothGrad and Score-CAM: xcam vs captum, pytorch-grad-cam and torch-cam.

ResNet-50 with random weights (nothing to download), one image, on the CPU. Every figure is a
median over interleaved rounds, and every ratio is against contenders timed in the same rounds:

- Occlusion at the issue's settings, 224x224, 32x32 windows, stride 16 (169 windows + the clean
  image = 170 images per call): against the same 170 images as bare batched forwards without
  gradients, and against captum ``Occlusion`` at several ``perturbations_per_eval``. On this CPU
  batches of 16 run faster per image than batches of 64 (the activations stay in cache), so xcam
  is timed at its default ``batch_size=64`` and at 16, each beside bare forwards in the same
  batches. These calls take 20-50 s, so only 3 rounds fit; xcam's own overhead over the bare
  forwards is measured again at 112x112 (37 images per call) over 10 rounds;
- SmoothGrad on the input gradient, 25 samples, 224x224: against captum ``NoiseTunnel(Saliency)``
  with the same number of samples (all in one pass, its default) and against bare batched
  forward + ``autograd.grad`` passes;
- Score-CAM at ``layer1`` (256 feature maps: 257 passes per image) on a 112x112 image, 5 rounds
  (at 224x224 one call takes about 30 s, and ``layer4``'s 2048 maps minutes): against
  pytorch-grad-cam ``ScoreCAM`` (batch 16, its default) and torch-cam ``ScoreCAM`` (batch 32, its
  default); xcam at its default (batch 16).

xcam runs its batches channels-last on the CPU (its default there); the "NCHW" rows switch that
off, to show what the layout is worth and what xcam's own machinery costs.

The machine's 2 cores are shared with other jobs; with two intra-op threads under that contention
OpenMP barriers make convolutions about 3x slower, so every contender runs on one thread
(``XCAM_BENCH_THREADS`` overrides). Run: ``python -m benchmarks methods`` (about 15 minutes;
``--quick``, about 7: fewer captum settings and rounds).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings

import torch
import torchvision

from benchmarks.common import format_table, interleaved

SIZE, WINDOW, STRIDE, OCC_BATCH, SAMPLES = 224, 32, 16, 64, 25


def _quiet(fn):
    """Run ``fn`` with stderr captured: the peers print tqdm bars."""
    def run():
        with contextlib.redirect_stderr(io.StringIO()):
            fn()
    return run


def _bare_forwards(model, x, n_images, batch_size, channels_last):
    """``n_images`` copies of ``x`` through ``model`` in batches, no gradients: the floor."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    buf = x.expand(batch_size, -1, -1, -1).contiguous(memory_format=fmt)

    def run():
        with torch.no_grad():
            for start in range(0, n_images, batch_size):
                model(buf[:min(batch_size, n_images - start)])
    return run


def _bare_gradients(model, x, target, n, batch_size):
    """``n`` noisy copies, forward + ``autograd.grad`` to the input, batched: the floor."""
    def run():
        for start in range(0, n, batch_size):
            k = min(batch_size, n - start)
            noisy = (x + 0.1 * torch.randn(k, *x.shape[1:])).requires_grad_(True)
            with torch.enable_grad():
                out = model(noisy)
                torch.autograd.grad(out[:, target].sum(), noisy)
    return run


def _occlusion(model, size, batch_size, channels_last=None):
    import xcam

    return xcam.methods.Occlusion(model, WINDOW, STRIDE, batch_size=batch_size, progress=False,
                                  channels_last=channels_last)


def _n_images(size):
    return (math.ceil((size - WINDOW) / STRIDE) + 1) ** 2 + 1


def bench_occlusion(model, x, target, rounds, quick):
    """The settings of the issue: 224x224, 32x32 windows, stride 16, 170 images per call."""
    from captum.attr import Occlusion as CaptumOcclusion

    n_images = _n_images(SIZE)
    xo, xo16 = _occlusion(model, SIZE, OCC_BATCH), _occlusion(model, SIZE, 16)
    assert xo.forward_passes(1) == n_images

    def captum(ppe):
        def run():
            CaptumOcclusion(model).attribute(x, sliding_window_shapes=(3, WINDOW, WINDOW),
                                             strides=(3, STRIDE, STRIDE), baselines=0.0,
                                             target=target, perturbations_per_eval=ppe)
        return run

    bare64 = f"bare forwards, channels-last, batches of {OCC_BATCH}"
    bare16 = "bare forwards, channels-last, batches of 16"
    default = f"xcam Occlusion (default: batch_size={OCC_BATCH})"
    contenders = {
        bare64: _bare_forwards(model, x, n_images, OCC_BATCH, True),
        default: lambda: xo(x, target),
        bare16: _bare_forwards(model, x, n_images, 16, True),
        "xcam Occlusion, batch_size=16": lambda: xo16(x, target),
    }
    for ppe in (8, 16) if quick else (8, 16, 64):
        contenders[f"captum Occlusion, perturbations_per_eval={ppe}"] = captum(ppe)
    medians = interleaved(contenders, rounds=rounds, warmup=0)
    best = min((k for k in medians if k.startswith("captum")), key=medians.__getitem__)
    table = format_table(
        f"Occlusion: ResNet-50, 1 image {SIZE}x{SIZE}, window {WINDOW}, stride {STRIDE} "
        f"({n_images} images per call), {rounds} rounds", medians,
        {"vs bare, batches of 64": bare64, "vs bare, batches of 16": bare16, "vs best captum": best})
    return table, {
        "occlusion (default) / captum at its best ppe": medians[default] / medians[best],
        "occlusion batch_size=16 / captum at its best ppe":
            medians["xcam Occlusion, batch_size=16"] / medians[best],
        "occlusion (default) / bare forwards, same batches (224, 3 rounds)":
            medians[default] / medians[bare64],
        "occlusion batch_size=16 / bare forwards, same batches (224, 3 rounds)":
            medians["xcam Occlusion, batch_size=16"] / medians[bare16],
    }


def bench_occlusion_overhead(model, rounds):
    """xcam's own cost over the forwards it cannot avoid, timed in many short rounds (112x112)."""
    size = 112
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        target = int(model(x).argmax(1))
    n_images = _n_images(size)
    xo, xo_nchw = _occlusion(model, size, OCC_BATCH), _occlusion(model, size, OCC_BATCH, False)
    contenders = {
        "bare forwards, channels-last": _bare_forwards(model, x, n_images, OCC_BATCH, True),
        "xcam Occlusion (default: channels-last)": lambda: xo(x, target),
        "bare forwards, NCHW": _bare_forwards(model, x, n_images, OCC_BATCH, False),
        "xcam Occlusion, NCHW": lambda: xo_nchw(x, target),
    }
    medians = interleaved(contenders, rounds=rounds, warmup=1)
    table = format_table(
        f"Occlusion overhead: ResNet-50, 1 image {size}x{size}, window {WINDOW}, stride {STRIDE} "
        f"({n_images} images in batches of {OCC_BATCH}), {rounds} rounds", medians,
        {"vs bare channels-last": "bare forwards, channels-last", "vs bare NCHW": "bare forwards, NCHW"})
    return table, {
        "occlusion / bare forwards, same layout and batches (112, many rounds)":
            medians["xcam Occlusion (default: channels-last)"] / medians["bare forwards, channels-last"],
        "occlusion NCHW / bare forwards NCHW, same batches (112, many rounds)":
            medians["xcam Occlusion, NCHW"] / medians["bare forwards, NCHW"],
    }


def bench_smoothgrad(model, x, target, rounds):
    from captum.attr import NoiseTunnel, Saliency

    import xcam

    sigma = 0.15 * float(x.max() - x.min())
    sg = xcam.methods.SmoothGrad(model, n_samples=SAMPLES, seed=0)
    sg_nchw = xcam.methods.SmoothGrad(model, n_samples=SAMPLES, seed=0, channels_last=False)

    def captum():
        NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=SAMPLES,
                                               stdevs=sigma, target=target)

    contenders = {
        f"bare forward + grad, NCHW ({SAMPLES} copies, batch 32)":
            _bare_gradients(model, x, target, SAMPLES, 32),
        "xcam SmoothGrad": lambda: sg(x, target),
        "xcam SmoothGrad, NCHW": lambda: sg_nchw(x, target),
        "captum NoiseTunnel(Saliency)": captum,
    }
    medians = interleaved(contenders, rounds=rounds, warmup=0)
    bare = next(iter(contenders))
    table = format_table(
        f"SmoothGrad: ResNet-50, 1 image {SIZE}x{SIZE}, {SAMPLES} samples, {rounds} rounds", medians,
        {"vs bare": bare, "vs captum": "captum NoiseTunnel(Saliency)"})
    return table, {
        "smoothgrad / captum NoiseTunnel":
            medians["xcam SmoothGrad"] / medians["captum NoiseTunnel(Saliency)"],
        "smoothgrad NCHW / captum NoiseTunnel":
            medians["xcam SmoothGrad, NCHW"] / medians["captum NoiseTunnel(Saliency)"],
    }


def bench_scorecam(model, size, rounds):
    from pytorch_grad_cam import ScoreCAM as PGCScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import ScoreCAM as TCScoreCAM

    import xcam

    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = int(model(x).argmax(1))
    sc = xcam.methods.ScoreCAM(model, "layer1", progress=False)
    sc_nchw = xcam.methods.ScoreCAM(model, "layer1", progress=False, channels_last=False)

    def pgc():
        with PGCScoreCAM(model=model, target_layers=[model.layer1]) as cam:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    def torchcam():
        with TCScoreCAM(model, target_layer="layer1", input_shape=(3, size, size)) as extractor:
            with torch.no_grad():
                out = model(x)
            extractor(target, out)

    contenders = {
        "xcam ScoreCAM": lambda: sc(x, target),
        "xcam ScoreCAM, NCHW": lambda: sc_nchw(x, target),
        "pytorch-grad-cam ScoreCAM": _quiet(pgc),
        "torch-cam ScoreCAM": _quiet(torchcam),
    }
    medians = interleaved(contenders, rounds=rounds, warmup=0)
    table = format_table(
        f"Score-CAM: ResNet-50, 1 image {size}x{size}, layer1 (256 maps: 257 passes), {rounds} rounds",
        medians,
        {"vs pytorch-grad-cam": "pytorch-grad-cam ScoreCAM", "vs torch-cam": "torch-cam ScoreCAM"})
    return table, {
        "scorecam / pytorch-grad-cam": medians["xcam ScoreCAM"] / medians["pytorch-grad-cam ScoreCAM"],
        "scorecam / torch-cam": medians["xcam ScoreCAM"] / medians["torch-cam ScoreCAM"],
        "scorecam NCHW / pytorch-grad-cam":
            medians["xcam ScoreCAM, NCHW"] / medians["pytorch-grad-cam ScoreCAM"],
        "scorecam NCHW / torch-cam": medians["xcam ScoreCAM, NCHW"] / medians["torch-cam ScoreCAM"],
    }


def main(quick: bool = False) -> str:
    warnings.filterwarnings("ignore")
    threads = int(os.environ.get("XCAM_BENCH_THREADS", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = torchvision.models.resnet50().eval()
        x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            target = int(model(x).argmax(1))
            model(x.contiguous(memory_format=torch.channels_last))  # oneDNN's first-call setup
        rounds = 2 if quick else 3
        tables, ratios = [], {}
        for table, found in (bench_occlusion(model, x, target, rounds, quick),
                             bench_smoothgrad(model, x, target, rounds),
                             bench_occlusion_overhead(model, 5 if quick else 10),
                             bench_scorecam(model, 112, 3 if quick else 5)):
            tables.append(table)
            ratios.update(found)
    finally:
        torch.set_num_threads(before)
    summary = ["### Ratios (xcam / reference, below 1 = xcam faster)", "",
               "| ratio | value |", "|---|---|"]
    summary += [f"| {name} | {value:.2f}x |" for name, value in ratios.items()]
    header = (f"_{'quick' if quick else 'full'} run, {threads} intra-op thread(s), "
              f"medians of interleaved rounds (counts in the titles); torch {torch.__version__}_")
    return "\n\n".join([header, *tables, "\n".join(summary)])
