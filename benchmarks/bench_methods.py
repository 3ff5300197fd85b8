"""Occlusion, SmoothGrad and Score-CAM: xcam vs captum, pytorch-grad-cam and torch-cam.

ResNet-50 with random weights (nothing to download), one 224x224 image, on the CPU. Every figure
is a median over interleaved rounds, and every ratio is against contenders timed in the same
rounds:

- Occlusion, 32x32 windows, stride 16 (169 windows + the clean image = 170 images): against the
  same 170 images as bare batched forwards without gradients (batches of 64, NCHW and
  channels-last), and against captum ``Occlusion`` at several ``perturbations_per_eval``. On this
  CPU, batches of 16 run faster per image than batches of 64 (the activations stay in cache), so
  xcam is timed at its default ``batch_size=64`` and at 16;
- SmoothGrad on the input gradient, 25 samples: against captum ``NoiseTunnel(Saliency)`` with the
  same number of samples (all in one pass, its default) and against the bare batched
  forward + ``autograd.grad`` passes;
- Score-CAM at ``layer1`` (256 feature maps, so 257 passes per image; ``layer4``'s 2048 maps would
  take minutes per call on this CPU): against pytorch-grad-cam ``ScoreCAM`` (batch 16, its default)
  and torch-cam ``ScoreCAM`` (batch 32, its default); xcam at its default (batch 16).

xcam runs its batches channels-last on the CPU (its default there); the "NCHW" rows switch that
off, to show what the layout is worth and what xcam's own machinery costs.

The machine's 2 cores are shared with other jobs; with two intra-op threads under that contention
OpenMP barriers make convolutions about 3x slower, so every contender runs on one thread
(``XCAM_BENCH_THREADS`` overrides). Run: ``python -m benchmarks methods`` (about 15 minutes;
``--quick``, about 6: 112x112 for Score-CAM, fewer contenders, 2 rounds).
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


def bench_occlusion(model, x, target, rounds, quick):
    from captum.attr import Occlusion as CaptumOcclusion

    import xcam

    n_images = (math.ceil((SIZE - WINDOW) / STRIDE) + 1) ** 2 + 1
    xo = xcam.methods.Occlusion(model, WINDOW, STRIDE, batch_size=OCC_BATCH, progress=False)
    assert xo.forward_passes(1) == n_images
    xo16 = xcam.methods.Occlusion(model, WINDOW, STRIDE, batch_size=16, progress=False)
    xo_nchw = xcam.methods.Occlusion(model, WINDOW, STRIDE, batch_size=OCC_BATCH, progress=False,
                                     channels_last=False)

    def captum(ppe):
        def run():
            CaptumOcclusion(model).attribute(x, sliding_window_shapes=(3, WINDOW, WINDOW),
                                             strides=(3, STRIDE, STRIDE), baselines=0.0,
                                             target=target, perturbations_per_eval=ppe)
        return run

    bare_nchw = f"bare forwards, NCHW, batches of {OCC_BATCH} ({n_images} images)"
    bare_cl = f"bare forwards, channels-last, batches of {OCC_BATCH} ({n_images} images)"
    contenders = {
        bare_nchw: _bare_forwards(model, x, n_images, OCC_BATCH, False),
        bare_cl: _bare_forwards(model, x, n_images, OCC_BATCH, True),
        f"xcam Occlusion (default: batch_size={OCC_BATCH}, channels-last)": lambda: xo(x, target),
        "xcam Occlusion, batch_size=16": lambda: xo16(x, target),
    }
    if quick:
        contenders[f"xcam Occlusion, NCHW, batch_size={OCC_BATCH}"] = lambda: xo_nchw(x, target)
    for ppe in (16, 64) if quick else (8, 16, 64):
        contenders[f"captum Occlusion, perturbations_per_eval={ppe}"] = captum(ppe)
    medians = interleaved(contenders, rounds=rounds, warmup=0)
    best = min((k for k in medians if k.startswith("captum")), key=medians.__getitem__)
    default = list(contenders)[2]
    table = format_table(
        f"Occlusion: ResNet-50, 1 image {SIZE}x{SIZE}, window {WINDOW}, stride {STRIDE}", medians,
        {"vs bare NCHW": bare_nchw, "vs bare channels-last": bare_cl, "vs best captum": best})
    ratios = {
        "occlusion (default) / bare forwards, same layout and batches": medians[default] / medians[bare_cl],
        "occlusion (default) / captum at its best ppe": medians[default] / medians[best],
        "occlusion batch_size=16 / captum at its best ppe":
            medians["xcam Occlusion, batch_size=16"] / medians[best],
    }
    if quick:
        ratios["occlusion NCHW / bare forwards NCHW"] = \
            medians[f"xcam Occlusion, NCHW, batch_size={OCC_BATCH}"] / medians[bare_nchw]
    return table, ratios


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
        f"SmoothGrad: ResNet-50, 1 image {SIZE}x{SIZE}, {SAMPLES} samples", medians,
        {"vs bare": bare, "vs captum": "captum NoiseTunnel(Saliency)"})
    return table, {
        "smoothgrad / captum NoiseTunnel":
            medians["xcam SmoothGrad"] / medians["captum NoiseTunnel(Saliency)"],
        "smoothgrad NCHW / captum NoiseTunnel":
            medians["xcam SmoothGrad, NCHW"] / medians["captum NoiseTunnel(Saliency)"],
    }


def bench_scorecam(model, size, target, rounds):
    from pytorch_grad_cam import ScoreCAM as PGCScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import ScoreCAM as TCScoreCAM

    import xcam

    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
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
        f"Score-CAM: ResNet-50, 1 image {size}x{size}, layer1 (256 maps: 257 passes)", medians,
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
                             bench_scorecam(model, 112 if quick else SIZE, target, rounds)):
            tables.append(table)
            ratios.update(found)
    finally:
        torch.set_num_threads(before)
    summary = ["### Ratios (xcam / reference, below 1 = xcam faster)", "",
               "| ratio | value |", "|---|---|"]
    summary += [f"| {name} | {value:.2f}x |" for name, value in ratios.items()]
    header = (f"_{'quick' if quick else 'full'} run, {threads} intra-op thread(s), "
              f"medians of {rounds} interleaved rounds; torch {torch.__version__}_")
    return "\n\n".join([header, *tables, "\n".join(summary)])
