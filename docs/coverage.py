"""Regenerate docs/coverage.md: which method works on which torchvision classification builder.

It also writes docs/coverage-timm.md and docs/coverage-hf.md (``--zoo timm`` / ``--zoo hf``: only
that one; ``--zoo torchvision``: only docs/coverage.md): the timm
and Hugging Face lists of tests/transformers/models.py (random weights, small inputs, tiny HF
configs). There a cell is "ok" only when the map is finite and not constant for one of the four
top classes; an error that is no XcamError is written as such ("error: ...").

Every builder from ``torchvision.models.list_models(module=torchvision.models)`` is built with
random weights (nothing is downloaded) and explained with no ``layer`` argument on one small image.
A cell says "ok" with the layer chosen, or "n/a" with the reason the method does not apply.

Every registered explainer is a column of that table (the controls, which ignore the model,
excepted: class flag ``is_control``), with small settings chosen by parameter name (few samples,
masks and steps). An explainer that needs another kind of model (class flag ``model_type``: LFI-CAM's
own network, D-RISE's detectors) reports "n/a" with the reason its own error gives, like any other.
``--merge`` keeps the cells of the existing docs/coverage.md and adds the columns and rows run now.

Run: ``python docs/coverage.py [--methods cam gradcam ...] [--only resnet18 vit_b_16 ...]``
(all builders take a while on a CPU: the largest have more than 600 M parameters).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xcam  # noqa: E402
from tests.test_torchvision_models import build, size_of  # noqa: E402
from tests.transformers import models as zoo  # noqa: E402

#: small settings, by parameter name: the table asks "does it run, at which layer", not "how well"
SMALL = {"n_samples": 2, "n_masks": 8, "steps": 2, "n_steps": 4, "seed": 0}


def default_methods() -> list[str]:
    """Every registered explainer but the controls (class flag ``is_control``)."""
    from xcam.registry import EXPLAINERS

    return [m for m in xcam.list_explainers() if not EXPLAINERS.get(m).is_control]


def settings(method: str, x: torch.Tensor) -> dict[str, object]:
    from xcam.registry import EXPLAINERS

    params = inspect.signature(EXPLAINERS.get(method)).parameters
    kwargs: dict[str, object] = {k: v for k, v in SMALL.items() if k in params}
    if "window" in params:  # occlusion: two windows a side
        s = x.shape[-1] // 2
        kwargs.update(window=(s, s), stride=(s, s))
    return kwargs


def cell(model, method: str, x: torch.Tensor) -> str:
    kwargs = settings(method, x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exp = xcam.create(method, model, **kwargs)(x)
    except xcam.XcamError as err:
        return "n/a: " + str(err).split(";")[0].replace("|", "/")
    ok = bool(torch.isfinite(exp.maps).all())
    return f"ok ({exp.layer})" if ok and exp.layer else ("ok" if ok else "non-finite map")


ZOO_METHODS = ["gradcam", "gradcampp", "layercam", "cam", "occlusion"]


def zoo_cell(model, method: str, x: torch.Tensor, classes: list[int]) -> str:
    """"ok (layer)" when the map of one of ``classes`` is finite and not constant; else why not."""
    kwargs = {}
    if method == "occlusion":
        s = x.shape[-1] // 4
        kwargs.update(window=(s, s), stride=(s, s))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = xcam.create(method, model, **kwargs)
            for cls in classes:
                exp = explainer(x, cls)
                m = exp.maps[0]
                if not bool(torch.isfinite(m).all()):
                    return "non-finite map"
                if float(m.max() - m.min()) > 1e-5 * float(m.abs().max()):
                    return f"ok ({exp.layer})" if exp.layer else "ok"
    except xcam.XcamError as err:
        return "n/a: " + str(err).split(";")[0].replace("|", "/")
    except Exception as err:  # noqa: BLE001 - the table reports what a user would meet
        return f"error: {type(err).__name__}: {str(err)[:80]}".replace("|", "/")
    return "constant map"


def main_zoo(which: str, methods: list[str], only: list[str] | None, out: str | None) -> None:
    """The timm or Hugging Face table (see the module docstring)."""
    if which == "timm":
        import timm as lib
        entries = [(n, f, s) for n, f, s, _ in zoo.TIMM]
        build_fn = zoo.build_timm
    else:
        import transformers as lib
        entries = [(e[0], e[1].replace("ForImageClassification", ""), e[3]) for e in zoo.HF]
        build_fn = zoo.build_hf
    entries = [e for e in entries if not only or e[0] in only]
    if not entries:
        return  # --only names models of another list: leave this table as it is
    rows = []
    works = 0
    for name, family, size in tqdm(entries, desc=which):
        start = time.perf_counter()
        x = zoo_scene(size)
        try:
            model = build_fn(name)
            with torch.no_grad():
                classes = xcam.outputs.logits(model(x)).argsort(1, descending=True)[0, :4].tolist()
            cells = [zoo_cell(model, m, x, classes) for m in methods]
        except Exception as err:  # noqa: BLE001
            cells = [f"error: {type(err).__name__}: {str(err)[:80]}"] * len(methods)
        core = [c for m, c in zip(methods, cells) if m in ("gradcam", "gradcampp", "occlusion")]
        works += all(c.startswith("ok") for c in core)
        rows.append([name, family, str(size)] + cells + [f"{time.perf_counter() - start:.0f} s"])
    head = ["model", "family", "px", *methods, "time"]
    title = "timm" if which == "timm" else "Hugging Face transformers"
    text = [
        f"# Coverage: methods x {title} image classifiers",
        "",
        f"Generated by `python docs/coverage.py --zoo {which}` (random weights, `layer=None`, one "
        "scene per model; the list is tests/transformers/models.py).",
        f"torch {torch.__version__}, {lib.__name__} {lib.__version__}. Works (Grad-CAM, Grad-CAM++ "
        f"and occlusion all ok): {works} of {len(rows)}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    text += ["| " + " | ".join(r) + " |" for r in rows]
    path = out or str(Path(__file__).with_name(f"coverage-{which}.md"))
    Path(path).write_text("\n".join(text) + "\n")
    print(f"wrote {path}: {works} of {len(rows)} work")


def zoo_scene(size: int) -> torch.Tensor:
    from tests.test_torchvision_models import scene
    return scene(size, 0, seed=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--zoo", choices=["all", "torchvision", "timm", "hf"], default="all")
    parser.add_argument("--merge", action="store_true",
                        help="docs/coverage.md: keep the existing cells, add the columns and rows run now")
    args = parser.parse_args()
    for which in ("timm", "hf"):
        if args.zoo in ("all", which):
            main_zoo(which, args.methods or ZOO_METHODS, args.only, None if args.zoo == "all" else args.out)
    if args.zoo not in ("all", "torchvision"):
        return
    args.out = args.out or str(Path(__file__).with_name("coverage.md"))
    methods = [m for m in (args.methods or default_methods()) if m in xcam.list_explainers()]
    names = args.only or sorted(torchvision.models.list_models(module=torchvision.models))
    rows = []
    for name in tqdm(names, desc="builders"):
        start = time.perf_counter()
        model = build(name)
        size = size_of(name)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        rows.append([name] + [cell(model, m, x) for m in methods]
                    + [f"{time.perf_counter() - start:.0f} s"])
        del model
    head = ["builder", *methods, "time"]
    if args.merge and Path(args.out).exists():
        head, rows = merge(Path(args.out).read_text(), head, rows)
    missing = [m for m in default_methods() if m not in head]
    text = [
        "# Coverage: methods x torchvision classification builders",
        "",
        "Generated by `python docs/coverage.py` (random weights, one image, `layer=None`; "
        "registered explainers but the controls, small settings). \"not run\": a column added with "
        "`--merge` for a few builders only; `python docs/coverage.py --zoo torchvision` fills it. "
        "time: seconds of the last run on that builder (of the columns it ran).",
        *([f"Not yet a column here (`--merge --methods {' '.join(missing)}` adds them): "
           f"{', '.join(missing)}. tests/test_torchvision_models.py runs Grad-CAM, Grad-CAM++, "
           "occlusion and CAM on every builder (`make test-all`)."] if missing else []),
        f"torch {torch.__version__}, torchvision {torchvision.__version__}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    text += ["| " + " | ".join(r) + " |" for r in rows]
    Path(args.out).write_text("\n".join(text) + "\n")
    print(f"wrote {args.out}")


def merge(text: str, head: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The existing table's cells, updated with the ``rows`` just run ("not run" where neither has one)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    old_head = [c.strip() for c in lines[0].strip("|").split("|")]
    table = {r[0]: dict(zip(old_head, r)) for r in
             ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}
    for row in rows:
        table.setdefault(row[0], {}).update(dict(zip(head, row)))
    columns = [c for c in old_head if c != "time"] + [c for c in head if c not in old_head and c != "time"]
    columns.append("time")
    return columns, [[table[name].get(c, "not run") if c != "builder" else name for c in columns]
                     for name in sorted(table)]


if __name__ == "__main__":
    main()
