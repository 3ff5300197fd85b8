r"""The ``xcam`` command.

::

    xcam list                                             # explainers and metrics
    xcam demo --out demo-output                           # EfficientNet-Lite0 on sample photos
    xcam explain cat.jpg dog.jpg --model resnet50 --weights DEFAULT --methods gradcam,gradcampp --out maps
    xcam compare images.csv --model efficientnet_lite0 --methods gradcam,scorecam \
        --metrics pointing_game,deletion --out runs/cmp [--columns x0=x0_227,...]
    torchrun --nproc_per_node 4 -m xcam compare ...       # the same, sharded over 4 processes
    xcam lfi train DATA_ROOT --arch resnet18 --epochs 30 --out lfi.pt

Exit codes: 0 success; 1 error (the message says what to fix); 2 wrong usage; 3 finished, but
some images or (image, method) pairs failed and were skipped (listed in the output); 130
interrupted (``compare`` resumes where it stopped when run again with the same ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, cast

from .. import __version__

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_PARTIAL",
           "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _UsageError(Exception):
    """A command-line value that cannot be parsed (exit code 2)."""


# --------------------------------------------------------------------------------------------
# shared option parsing
# --------------------------------------------------------------------------------------------


def _value(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``[16,16]`` -> (16, 16), else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _kwargs(pairs: list[str] | None, what: str) -> dict[str, dict[str, Any]]:
    """``["gradcam.layer=layer4", "deletion.steps=50"]`` -> ``{"gradcam": {"layer": "layer4"}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        name, dot, arg = key.partition(".")
        if not sep or not dot or not name or not arg:
            raise _UsageError(f"--{what}-arg {pair!r}: write NAME.ARGUMENT=VALUE, e.g. "
                              f"{'gradcam.layer=layer4' if what == 'method' else 'deletion.steps=50'}")
        out.setdefault(name, {})[arg] = _value(text)
    return out


def _names(text: str, kind: str) -> list[str]:
    """The names of ``--methods`` / ``--metrics`` (comma-separated).

    ``all``: every registered one (for methods: less the controls, which compare adds, and explainers that
    need a network of their own, such as LFI-CAM's).
    """
    from ..evaluation.report import is_control
    from ..registry import EXPLAINERS, list_explainers, list_metrics

    if text.strip().lower() == "all":
        if kind == "method":
            return [m for m in list_explainers()
                    if getattr(EXPLAINERS.get(m), "model_type", None) is None and not is_control(m)]
        return list_metrics()
    return [n.strip() for n in text.split(",") if n.strip()]


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="torchvision model name (resnet50, vit_b_16, ...), efficientnet_lite0 (offline "
                        "ImageNet weights), or package.module:function returning an nn.Module")
    p.add_argument("--weights", default="DEFAULT",
                   help="torchvision weights name (DEFAULT, IMAGENET1K_V2, ResNet50_Weights.IMAGENET1K_V2), "
                        "a local state-dict file (loaded with weights_only=True), or 'none' for random "
                        "weights (default: DEFAULT)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="outputs of the head, for random or local weights")
    p.add_argument("--preprocess", choices=("imagenet", "lite0", "unit", "none"), default=None,
                   help="input scaling (default: what the model and weights expect)")
    p.add_argument("--image-size", type=int, default=None,
                   help="side images are squashed to (default: the model's, usually 224)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds random weights, explainers, metrics (default 0)")


def _model(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(model, preprocess, device) from the model options."""
    import torch

    from ..evaluation.models import Preprocess, load_model, preprocessing

    factory = ":" in args.model
    weights = args.weights
    if factory and weights == "DEFAULT":
        weights = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)  # random weights are reproducible
        model = load_model(args.model, weights, args.num_classes)
    prep = preprocessing(args.model, weights)
    size = args.image_size or prep.size
    named_weights = weights is not None and str(weights).lower() not in ("none", "random") \
        and not os.path.exists(str(weights))
    stated = args.model.lower() in ("efficientnet_lite0", "efficientnet-lite0") or named_weights
    if args.preprocess is None and not stated:
        from ..errors import warn

        warn(f"--model {args.model} with weights {weights or 'none'} states no preprocessing; using "
             f"ImageNet mean / std with images squashed to {size} x {size} (--preprocess imagenet); "
             "pass --preprocess (imagenet, lite0, unit, none) to say what the model expects")
    if args.preprocess is not None:
        prep = Preprocess.named(args.preprocess, size)
    elif args.image_size:
        prep = prep.with_size(size)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}"  # one GPU per torchrun process
    return model.to(device), prep, device


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from ..registry import list_explainers, list_metrics

    print("explainers:", ", ".join(list_explainers()))
    print("metrics:", ", ".join(list_metrics()) or "-")
    return EXIT_OK


def _out_folder(value: str, option: str = "--out") -> Path:
    """``--out`` as a folder (created); a file there is a usage error."""
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise _UsageError(f"{option} {value!r} is a file; pass a folder (it is created when missing)")
    return out


def _overlay_stems(paths: list[str]) -> list[str]:
    """One distinct file-name stem per input.

    ``cat`` alone, ``a_cat`` and ``b_cat`` for ``a/cat.jpg`` and ``b/cat.jpg``, ``-2``, ``-3`` ...

    for the same path given again.
    """
    from collections import Counter

    stems = [Path(p).stem for p in paths]
    counts = Counter(stems)
    seen: set[str] = set()
    out = []
    for path, stem in zip(paths, stems):
        p = Path(os.path.abspath(path))
        name = stem if counts[stem] == 1 else f"{p.parent.name}_{stem}"
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        out.append(name)
    return out


def _explainers(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """The explainers of ``--methods`` (any spelling: ``gradcam++``), by registered name.

    ``--method-arg``, ``--layer`` (comma-separated: several layers, fused) and ``--fuse`` applied.
    """
    from ..evaluation.report import is_control
    from ..registry import EXPLAINERS, create

    method_kwargs = _kwargs(args.method_arg, "method")
    layers = [x.strip() for x in (args.layer or "").split(",") if x.strip()]
    explainers = {}
    for given in _names(args.methods, "method"):
        m = EXPLAINERS.canonical(given)
        kw = {**method_kwargs.get(m, {}), **method_kwargs.get(given, {})}
        if layers and not is_control(m):
            kw.setdefault("layer", layers[0] if len(layers) == 1 else layers)
            if len(layers) > 1 and getattr(args, "fuse", None):
                kw.setdefault("fuse", args.fuse)
        try:
            explainers[m] = create(m, model, **kw)
        except TypeError as err:
            raise _UsageError(f"--method-arg for {given}: {err}") from None
    return explainers


class _Categories:
    """ImageNet category names, read once when a 1000-class model first needs them."""

    def __init__(self) -> None:
        self.names: list[str] | None = None

    def name(self, target: int, n_classes: int) -> str:
        if self.names is None:
            from ..evaluation.models import imagenet_categories

            self.names = imagenet_categories() if n_classes == 1000 else []
        return self.names[target] if target < len(self.names) else f"class {target}"


def _explain(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    out = _out_folder(args.out)
    model, prep, device = _model(args)
    explainers = _explainers(args, model)
    out.mkdir(parents=True, exist_ok=True)
    categories = _Categories()
    failed = 0
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(args.images) * len(explainers), desc="xcam explain", unit="map",
               disable=args.no_progress or not sys.stderr.isatty())
    try:
        for path, stem in zip(args.images, _overlay_stems(args.images)):
            record: dict[str, Any] = {"path": str(path), "stem": stem}
            records.append(record)
            failed += _explain_image(args, path, out / stem, model, prep, device, explainers,
                                     categories, bar, record)
    finally:
        bar.close()
        _write_manifest(out / "manifest.json", args, prep, device, explainers, records)
    return EXIT_PARTIAL if failed else EXIT_OK


def _write_manifest(dest: Path, args: argparse.Namespace, prep: Any, device: str,
                    explainers: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """``manifest.json``: versions, settings, and per image its class and the files written."""
    import platform

    import torch

    versions = {"xcam": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for package in ("torchvision", "numpy", "timm", "transformers"):
        module = sys.modules.get(package)
        if module is not None:
            versions[package] = str(getattr(module, "__version__", "?"))
    manifest = {
        "command": "xcam explain",
        "argv": sys.argv[1:],
        "versions": versions,
        "settings": {
            "model": args.model, "weights": args.weights, "num_classes": args.num_classes,
            "preprocess": repr(prep), "device": device, "seed": args.seed,
            "target": args.target, "layer": args.layer, "fuse": getattr(args, "fuse", None),
            "alpha": args.alpha,
        },
        "methods": {m: {"class": type(e).__name__, "params": e.params()} for m, e in explainers.items()},
        "images": records,
    }
    dest.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def _explain_image(args: argparse.Namespace, path: str, stem: Path, model: Any, prep: Any, device: str,
                   explainers: dict[str, Any], categories: _Categories, bar: Any,
                   record: dict[str, Any]) -> int:
    """Explain one image with every explainer; write ``{stem}_{method}.png`` and ``.npy``.

    Returns the number of failures; fills ``record`` (for the manifest).
    """
    import torch

    from ..errors import XcamError
    from ..evaluation.data import ImageLoadError, load_images
    from ..outputs import logits

    try:
        loaded = load_images([path], preprocess=prep)
        original = loaded.original_sizes[0]
        photo = load_images([path], preprocess=type(prep).named("none", original)).images[0]
    except ImageLoadError as err:
        print(f"xcam: skipped {path}: {err}", file=sys.stderr)
        record["error"] = str(err)
        bar.update(len(explainers))
        return 1
    x = loaded.inputs.to(device)
    try:
        with torch.no_grad():
            probs = logits(model(x)).float().softmax(1)
    except (XcamError, RuntimeError, ValueError, TypeError) as err:
        message = f"the model failed on it ({type(err).__name__}: {' '.join(str(err).split())})"
        print(f"xcam: skipped {path}: {message}", file=sys.stderr)
        record["error"] = message
        bar.update(len(explainers))
        return 1
    target = int(probs.argmax()) if args.target is None else args.target
    if not 0 <= target < probs.shape[1]:
        raise _UsageError(f"--target {target} is outside the model's {probs.shape[1]} classes")
    name = categories.name(target, int(probs.shape[1]))
    p_target = float(probs[0, target])
    print(f"{path}: {name} (class {target}, p={p_target:.3f})")
    record.update({"original_size": list(original), "input_size": list(x.shape[-2:]), "target": target,
                   "class_name": name, "probability": p_target, "outputs": {}})
    failed = 0
    for m, explainer in explainers.items():
        try:
            exp = explainer(x, torch.tensor([target], device=x.device))
        except (XcamError, ValueError, RuntimeError, TypeError) as err:
            print(f"xcam: {m} failed on {path}: {' '.join(str(err).split())}", file=sys.stderr)
            record["outputs"][m] = {"error": " ".join(str(err).split())}
            failed += 1
        else:
            title = f"{name} (p={p_target:.2f}) - {m}"
            files = _write_outputs(stem.parent / f"{stem.name}_{m}", photo, original, prep, exp, title,
                                   args.alpha)
            if files is None:
                failed += 1
            else:
                record["outputs"][m] = {**files, "layer": exp.layer, "score": float(exp.scores[0])}
                print(f"  {m:>16}: layer {exp.layer or '-'} -> {files['overlay']}")
        bar.update(1)
    return failed


def _titled(image: Any, title: str) -> Any:
    """``image`` (uint8 RGB) with ``title`` written in a dark band across its top (same size)."""
    import cv2

    out = image.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(w, 4 * h) / 900)
    thickness = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    if tw > w - 8:  # long class names on small images: shrink to fit
        scale *= (w - 8) / tw
        (tw, th), base = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    band = min(h, th + base + 8)
    out[:band] = (out[:band].astype("float32") * 0.35).astype(out.dtype)
    cv2.putText(out, title, (4, band - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)
    return out


def _write_outputs(base: Path, photo: Any, original: tuple[int, int], prep: Any, exp: Any, title: str,
                   alpha: float) -> dict[str, str] | None:
    """The overlay at the photo's own size, titled (``base.png``), and the raw map (``base.npy``).

    The raw map is the explanation's (H, W) float32 map at the model's input resolution; the
    overlay maps it back onto the photo (:func:`xcam.evaluation.data.map_to_original`).
    """
    import cv2
    import numpy as np

    from ..evaluation.data import map_to_original
    from ..viz import overlay

    raw = exp.maps[0].detach().float().cpu()
    np.save(base.with_suffix(".npy"), raw.numpy())
    on_photo = map_to_original(raw, original, prep)
    picture = _titled(overlay(photo, on_photo, alpha=alpha), title)
    dest = base.with_suffix(".png")
    if not cv2.imwrite(str(dest), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        print(f"xcam: could not write {dest}", file=sys.stderr)
        return None
    return {"overlay": dest.name, "map": base.with_suffix(".npy").name}


def _compare(args: argparse.Namespace) -> int:
    from ..evaluation.compare import compare, plan

    if not args.dry_run:
        _out_folder(args.out)
    model, prep, device = _model(args)
    metrics = _names(args.metrics, "metric") if args.metrics else None
    methods = _names(args.methods, "method") if args.methods else None
    if methods is not None and args.methods.strip().lower() == "all":
        methods = _buildable(methods, model)
    targets: Any = args.targets
    if targets not in ("auto", "label", "predicted"):
        try:
            targets = int(targets)
        except ValueError:
            raise _UsageError(f"--targets must be auto, label, predicted or a class index, got "
                              f"{args.targets!r}") from None
    name = args.model if args.weights in (None, "none") else f"{args.model} ({args.weights})"
    options: dict[str, Any] = dict(
        preprocess=prep, image_size=prep.size,
        targets=targets, method_kwargs=_kwargs(args.method_arg, "method"),
        metric_kwargs=_kwargs(args.metric_arg, "metric"), controls=not args.no_controls,
        seed=args.seed, device=device, columns=args.columns, limit=args.limit,
        grid_images=args.grid_images, sanity_images=args.sanity_images, batch_size=args.batch_size,
        num_workers=args.num_workers, model_name=name, classes=_classes(args),
    )
    if args.dry_run:
        print(plan(model, args.data, methods, metrics, **options))
        return EXIT_OK
    result = compare(model, args.data, methods, metrics, out=args.out,
                     progress=False if args.no_progress else None, overwrite=args.overwrite,
                     report=not args.no_report, **options)
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return EXIT_OK
    _print_summary(result)
    out = Path(args.out)
    print(f"wrote {out / 'table.csv'}, {out / 'summary.csv'}, {out / 'summary.json'}"
          + ("" if args.no_report else f", {out / 'report.html'}"))
    errors = result.errors()
    if errors:
        print(f"xcam: {len(errors)} failure(s) recorded and skipped, e.g. "
              f"{errors[0]['image'] or errors[0]['method']}: {errors[0]['error']}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _classes(args: argparse.Namespace) -> Any:
    """``--classes FILE``, else the names the model's weights state (torchvision, Lite0), else None."""
    from ..evaluation.models import model_class_names

    if args.classes:
        return args.classes
    weights = None if ":" in args.model and args.weights == "DEFAULT" else args.weights
    return model_class_names(args.model, weights)


def _buildable(methods: list[str], model: Any) -> list[str]:
    """The methods of ``--methods all`` that this model supports (CAM needs a GAP -> Linear head)."""
    from ..errors import XcamError
    from ..registry import create

    keep = []
    for m in methods:
        try:
            create(m, model)
        except (XcamError, TypeError) as err:
            warnings.warn(f"--methods all: leaving out {m} ({err})", stacklevel=2)
            continue
        keep.append(m)
    return keep


def _print_summary(result: Any) -> None:
    """The summary as a text table: methods, then baselines (the center point), x metrics."""
    from ..metrics.base import Metric
    from ..registry import METRICS

    def metric(name: str) -> Metric[..., Any]:
        return cast("Metric[..., Any]", METRICS.get(name))

    rows = result.summary()
    cells = {(r["method"], r["metric"]): r for r in rows}
    arrows = {m: "↑" if metric(m).higher_is_better else "↓" for m in result.metrics}
    header = ["method", *[f"{m} {arrows.get(m, '')}" for m in result.metrics]]
    baselines = list(dict.fromkeys(r["method"] for r in rows if r["method"] not in result.methods))
    percent = [m for m in result.metrics if metric(m).unit == "%"]
    lines = [header]
    for method in [*result.methods, *baselines]:
        line = [method]
        for metric in result.metrics:
            r = cells.get((method, metric))
            if r is None or r["mean"] != r["mean"]:
                line.append("-")
                continue
            scale = 100 if metric in percent else 1
            line.append(f"{scale * r['mean']:.3f}" + (" *" if r["best"] else ""))
        if method in result.methods or any(c != "-" for c in line[1:]):
            lines.append(line)
    widths = [max(len(str(row[j])) for row in lines) for j in range(len(header))]
    for row in lines:
        padded = [str(c).rjust(w) if j else str(c).ljust(w) for j, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(padded))
    units = f"; {' and '.join(m.replace('_', ' ') for m in percent)} in %" if percent else ""
    print(f"(* best; mean over images{units})")


def _lfi_train(args: argparse.Namespace) -> int:
    from ..lfi import train_imagefolder

    net, history = train_imagefolder(
        args.root, arch=args.arch, mode=args.mode,
        weights=None if args.weights in (None, "none") else args.weights,
        val_root=args.val, image_size=args.image_size, augment=not args.no_augment, depth=args.depth,
        width=args.width, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        checkpoint=args.out, resume=args.resume, device=args.device, num_workers=args.workers,
        progress=not args.no_progress,
    )
    last = len(history) - 1
    if last >= 0:
        val = (f", val accuracy {history.val_accuracy[last]:.3f}" if history.val_accuracy else "")
        print(f"epoch {history.epoch[last]}: train loss {history.train_loss[last]:.4f}, train accuracy "
              f"{history.train_accuracy[last]:.3f}{val}")
    print(f"wrote {args.out} (load with xcam.lfi.load_checkpoint)")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``xcam`` argument parser: one sub-command per command (demo, list, explain, compare, lfi)."""
    parser = argparse.ArgumentParser(
        prog="xcam", description="Explain what vision models look at.",
        epilog="exit codes: 0 ok, 1 error, 2 usage, 3 finished with skipped failures, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"xcam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="EfficientNet-Lite0 on sample photos, every method, a grid PNG")
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.set_defaults(func=_demo)
    lst = sub.add_parser("list", help="list the registered explainers and metrics")
    lst.set_defaults(func=_list)
    _add_explain_parser(sub)
    _add_compare_parser(sub)
    _add_lfi_parser(sub)
    return parser


def _add_explain_parser(sub: Any) -> None:
    """``xcam explain IMAGE ... --methods ... --out ...``."""
    explain = sub.add_parser(
        "explain", help="explain images with one or more methods; writes overlays, maps, a manifest",
        description="Explain each IMAGE with each method. Writes IMAGE-STEM_METHOD.png (the overlay at "
                    "the photo's own size, titled with the class name), IMAGE-STEM_METHOD.npy (the raw "
                    "map at the model's input size) and manifest.json (versions, settings, files).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    explain.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    _add_model_options(explain)
    explain.add_argument("--methods", default="gradcam",
                         help="comma-separated explainer names, or 'all' (see `xcam list`)")
    explain.add_argument("--out", default="xcam-maps", help="output folder")
    explain.add_argument("--target", type=int, default=None, help="class to explain (default: top class)")
    explain.add_argument("--layer", default=None,
                         help="layer for the CAM-family methods (default: automatic); several, "
                              "comma-separated, are fused (--fuse)")
    explain.add_argument("--fuse", choices=("mean", "max"), default="mean",
                         help="how maps of several layers combine: mean (pytorch-grad-cam), max (torch-cam)")
    explain.add_argument("--alpha", type=float, default=0.5, help="weight of the map in the overlay")
    explain.add_argument("--method-arg", action="append", metavar="METHOD.ARG=VALUE",
                         help="explainer constructor argument, repeatable (e.g. occlusion.window=[16,16])")
    explain.add_argument("--no-progress", action="store_true", help="no progress bar")
    explain.set_defaults(func=_explain)


def _add_compare_parser(sub: Any) -> None:
    """``xcam compare DATA --model ... --out ...``."""
    cmp = sub.add_parser(
        "compare", help="every image x method x metric: table, summary, HTML report (resumable)",
        description="Explain every image of DATA with every method (controls included), score every "
                    "map, and write table.csv, summary.csv, timing.csv, summary.json and report.html "
                    "into --out. Re-running with the same --out resumes. Under torchrun the images "
                    "are sharded over the processes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cmp.add_argument("data", metavar="DATA",
                     help="folder of images, ImageFolder root, or CSV manifest file,class_index,x0,y0,x1,y1")
    _add_model_options(cmp)
    cmp.add_argument("--methods", default=None,
                     help="comma-separated explainer names or 'all' (default: gradcam,gradcampp)")
    cmp.add_argument("--metrics", default=None,
                     help="comma-separated metric names or 'all' (default: pointing_game, "
                          "energy_pointing_game, max_box_acc, deletion, insertion, average_drop, "
                          "increase_in_confidence)")
    cmp.add_argument("--out", required=True, help="output folder (records, table, report)")
    cmp.add_argument("--columns", default=None, metavar="NAME=COLUMN,...",
                     help="CSV column mapping, e.g. x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227")
    cmp.add_argument("--limit", type=int, default=None, help="only the first N images")
    cmp.add_argument("--targets", default="auto",
                     help="auto (label when known, else top class), label, predicted, or a class index")
    cmp.add_argument("--no-controls", action="store_true",
                     help="leave out the random / center / edges controls")
    cmp.add_argument("--method-arg", action="append", metavar="METHOD.ARG=VALUE",
                     help="explainer argument, repeatable (e.g. scorecam.batch_size=64)")
    cmp.add_argument("--metric-arg", action="append", metavar="METRIC.ARG=VALUE",
                     help="metric argument, repeatable (e.g. deletion.steps=50)")
    cmp.add_argument("--grid-images", type=int, default=8, help="images shown in the report's grid")
    cmp.add_argument("--sanity-images", type=int, default=4,
                     help="images for model_parameter_randomization (when among the metrics)")
    cmp.add_argument("--overwrite", action="store_true",
                     help="discard compare's results already in --out and replace files of the same "
                          "names as its outputs (table.csv, report.html, ...) that it did not write")
    cmp.add_argument("--classes", default=None, metavar="FILE",
                     help="class names for the report and tables: one per line, or a JSON list / "
                          "object (default: the names the weights state, e.g. ImageNet's)")
    cmp.add_argument("--no-report", action="store_true", help="CSV and JSON only")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    cmp.add_argument("--batch-size", type=int, default=32,
                     help="images per batch through the model, every method and metric")
    cmp.add_argument("--num-workers", type=int, default=0,
                     help="DataLoader processes that decode images (0: the main process)")
    cmp.add_argument("--dry-run", action="store_true",
                     help="print forward passes per method and metric and an estimated time "
                          "(from one timed batch); write nothing")
    cmp.set_defaults(func=_compare)


def _add_lfi_parser(sub: Any) -> None:
    """``xcam lfi train ROOT ...``."""
    lfi = sub.add_parser("lfi", help="LFI-CAM networks (Lee et al., ICCV 2021)")
    lfi_sub = lfi.add_subparsers(dest="lfi_command", required=True, metavar="COMMAND")
    train = lfi_sub.add_parser(
        "train", help="train an LFI-CAM network on an ImageFolder",
        description="Build LFICAMNet on a torchvision backbone and train it on ROOT (one sub-folder "
                    "per class); the checkpoint is written after every epoch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("root", metavar="ROOT", help="ImageFolder root of the training images")
    train.add_argument("--arch", default="resnet18", help="torchvision backbone")
    train.add_argument("--mode", choices=("scratch", "finetune", "posthoc"), default="scratch")
    train.add_argument("--weights", default=None,
                       help="backbone weights: torchvision name (DEFAULT) or a state-dict file")
    train.add_argument("--val", default=None, help="ImageFolder root of validation images")
    train.add_argument("--image-size", type=int, default=224)
    train.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    train.add_argument("--depth", type=int, default=4, help="FIN blocks")
    train.add_argument("--width", type=int, default=None, help="FIN channels (default: the backbone's)")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--lr", type=float, default=None,
                       help="default: 0.1 scratch, 0.01 finetune, 0.05 posthoc")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="lfi-checkpoint.pt", help="checkpoint file")
    train.add_argument("--resume", action="store_true", help="continue from --out when it exists")
    train.add_argument("--device", default=None)
    train.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_lfi_train)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 3 partial, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..errors import XcamError

    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if str(message) not in shown:  # the same automatic choice, made by several methods
            shown.add(str(message))
            print(f"xcam: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = show
            return int(args.func(args))
    except _UsageError as err:
        parser.print_usage(sys.stderr)
        print(f"xcam: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (XcamError, ModuleNotFoundError, OSError) as err:
        print(f"xcam: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        hint = " (run the same command again to resume)" if args.command == "compare" else ""
        print(f"xcam: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
