"""A hand-written table of bad inputs to load_images, Preprocess, compare and the CLI.

Each row is an action and its expected outcome: an ``XcamError`` whose message holds the named
words (the argument and the fix), a warning, a result equal to a reference, or a CLI exit code
with one clear ``xcam:`` line and no traceback.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.nets import tiny
from xcam.cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from xcam.compare import CompareError, RunFolderError, compare
from xcam.data import ImageLoadError, load_images, read_manifest
from xcam.errors import InputError, InputTypeError, XcamError
from xcam.models import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from xcam.report import OutputExistsError, csv_cell

from .conftest import write_images

PREP = Preprocess.named("unit", 32)
TINY = ["--model", "tests.nets:tiny", "--image-size", "32", "--preprocess", "unit"]
ARR = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


class Env:
    """What a row acts on: a data folder with ``boxes.csv`` (6 images), the tiny model, tmp_path."""

    def __init__(self, tmp: Path, data: Path) -> None:
        self.tmp, self.data, self.model = tmp, data, tiny()

    def compare(self, model=None, out=None, layer="features", **kw):
        kw.setdefault("preprocess", PREP)
        kw.setdefault("limit", 2)
        return compare(model if model is not None else self.model, self.data / "boxes.csv", ["gradcam"],
                       ["pointing_game"], controls=False, method_kwargs={"gradcam": {"layer": layer}},
                       out=out, report=False, **kw)

    def file(self, name: str, text: str = "mine") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def cli(self, *argv: str) -> int:
        try:
            return main(list(argv))
        except SystemExit as err:  # argparse's own usage errors
            return int(err.code)


def raises(exc, *words):
    return ("raises", exc, words)


def warns(category, *words):
    return ("warns", category, words)


def exits(code, *words):
    return ("exit", code, words)


EQUAL = ("equal", None, ())


# ---- actions that need a few lines -------------------------------------------------------------


def _table(result):
    return json.dumps(result.table())


def _foreign_table(env):
    mine = env.file("out/table.csv", "my own table\n")
    try:
        env.compare(out=env.tmp / "out")
    finally:
        assert mine.read_text() == "my own table\n"  # refused, and untouched


def _foreign_records(env):
    env.file("out/records.jsonl", '{"kind": "note"}\n')
    env.compare(out=env.tmp / "out")


def _stray_records(env):
    clean = env.compare(out=env.tmp / "clean")
    out = env.tmp / "stray"
    out.mkdir()
    # a file compare did not write: an error record for im0 would have removed it from the tables
    (out / "records_old.jsonl").write_text(
        '{"kind": "image", "image": "im0.png", "status": "error", "error": "old"}\n')
    return _table(env.compare(out=out)), _table(clean)


def _old_format(env):
    env.compare(out=env.tmp / "out")
    with open(env.tmp / "out" / "records.jsonl", "a") as handle:
        handle.write('{"image": "im1.png", "method": "gradcam", "value": 0.5}\n')  # no "kind"
        handle.write('{"kind": "item", "image": "im0.png", "method": "gradcam", "status": "ok"}\n')
    result = env.compare(out=env.tmp / "out")
    assert [r["image"] for r in result.table()] == ["im0.png", "im1.png"]


def _torn(env):
    env.compare(out=env.tmp / "out")
    with open(env.tmp / "out" / "records.jsonl", "a") as handle:
        handle.write('{"kind": "item", "image": "im0.pn')
    env.compare(out=env.tmp / "out")


class _DictModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return {"aux": x.mean(), "logits": self.inner(x)}


class _NaNModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * float("nan")


def _dict_model(env):
    return _table(env.compare(model=_DictModel(env.model), layer="inner.features")), _table(env.compare())


def _overwrite(env):
    env.file("out/table.csv", "my own table\n")
    env.compare(out=env.tmp / "out", overwrite=True)
    return (env.tmp / "out" / "table.csv").read_text().splitlines()[0], "index,image,method,metric,value"


def _bom(env):
    text = "file,class_index,x0,y0,x1,y1\nim0.png,1,1,2,10,20\n"
    (env.data / "bom.csv").write_text("\ufeff" + text, encoding="utf-8")
    (env.data / "plain.csv").write_text(text, encoding="utf-8")
    return read_manifest(env.data / "bom.csv").samples, read_manifest(env.data / "plain.csv").samples


def _injection(env):
    folder = env.tmp / "inject"
    write_images(folder, ["=cmd.png", "@sum.png"])
    result = compare(env.model, folder, ["gradcam"], ["deletion"], preprocess=PREP, controls=False,
                     method_kwargs={"gradcam": {"layer": "features"}}, out=env.tmp / "o", report=False,
                     metric_kwargs={"deletion": {"steps": 4}})
    with open(env.tmp / "o" / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["value"]) for r in rows] == pytest.approx([r["value"] for r in result.table()])
    return [r["image"] for r in rows], ["'=cmd.png", "'@sum.png"]


def _same_names(env):
    for sub in ("a", "b"):
        write_images(env.tmp / sub, ["cat.png"], seed=len(sub))
    code = env.cli("explain", str(env.tmp / "a" / "cat.png"), str(env.tmp / "b" / "cat.png"),
                   str(env.tmp / "a" / "cat.png"), *TINY, "--methods", "gradcam", "--layer", "features",
                   "--out", str(env.tmp / "maps"), "--no-progress")
    names = sorted(p.name for p in (env.tmp / "maps").glob("*.png"))
    return (code, names), (EXIT_OK, ["a_cat-2_gradcam.png", "a_cat_gradcam.png", "b_cat_gradcam.png"])


def _cli_no_preprocess(env):
    code = env.cli("explain", str(env.data / "im0.png"), "--model", "tests.nets:tiny", "--image-size",
                   "32", "--methods", "gradcam", "--layer", "features", "--out", str(env.tmp / "m"),
                   "--no-progress")
    err = env.capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("xcam: warning:")
              and "states no preprocessing" in line and "--preprocess imagenet" in line]
    return (code, len(warned)), (EXIT_OK, 1)


def _compare_with_torchvision_transform(env):
    """compare(preprocess=<a torchvision Compose>): the model sees what the transform gives, and
    the boxes follow its resize and centre crop (reference: torchvision's own tv_tensors)."""
    from torchvision import tv_tensors

    from xcam.metrics import boxes_to_masks

    T, v2 = _tv(), _v2()
    transform = T.Compose([T.Resize(36), T.CenterCrop(32), T.ToTensor(), T.Normalize([0.4] * 3, [0.2] * 3)])
    seen = []
    handle = env.model.register_forward_pre_hook(  # the clean pass of each image runs under no_grad
        lambda m, a: None if torch.is_grad_enabled() else seen.append(a[0].detach().clone()))
    try:
        result = env.compare(preprocess=transform, limit=3)
    finally:
        handle.remove()
    data = read_manifest(env.data / "boxes.csv")
    clean = seen[0]  # the first no-grad pass: the clean forward of the batch of 3 images
    for i in range(3):
        img = Image.open(data[i].path)
        assert torch.allclose(clean[i], transform(img), atol=1e-6)  # the clean pass of image i
        boxes = tv_tensors.BoundingBoxes(list(data[i].boxes), format="XYXY", canvas_size=(40, 48))
        _, moved = v2.Compose([v2.Resize(36), v2.CenterCrop(32)])(
            tv_tensors.Image(torch.zeros(3, 40, 48)), boxes)
        ref = float(boxes_to_masks([moved.tolist()], (32, 32)).float().mean())
        assert result.images[i]["gt_fraction"] == pytest.approx(ref, abs=1 / 1024)
    return float(max(x.abs().max() for x in seen)) < 6, True  # normalised, not ~1136


def _hf(make):
    def action(env):
        transformers = pytest.importorskip("transformers")
        return make(transformers)
    return action


def _compare_args(env, out, *extra):
    return ("compare", str(env.data / "boxes.csv"), *TINY, "--methods", "gradcam", "--method-arg",
            "gradcam.layer=features", "--metrics", "pointing_game", "--limit", "2", "--no-controls",
            "--no-report", "--no-progress", "--out", str(out), *extra)


def _tv():
    import torchvision.transforms as T

    return T


def _v2():
    import torchvision.transforms.v2 as v2

    return v2


TV_REFERENCE = Preprocess(IMAGENET_MEAN, IMAGENET_STD, 255.0, 224, "torchvision", resize=256,
                          interpolation="bilinear")

ROWS = [
    # ---- load_images ---------------------------------------------------------------------------
    pytest.param(lambda env: load_images(ARR.astype(np.float64), preprocess=PREP),
                 raises(InputTypeError, "sources[0]", "float64", "astype(np.uint8)"), id="li-float-array"),
    pytest.param(lambda env: load_images(ARR.transpose(2, 0, 1).copy(), preprocess=PREP),
                 raises(InputError, "sources[0]", "channel-first", "transpose(1, 2, 0)"), id="li-chw-array"),
    pytest.param(lambda env: load_images(torch.from_numpy(ARR), preprocess=PREP),
                 raises(InputError, "channel-last", "permute(2, 0, 1)"), id="li-hwc-tensor"),
    pytest.param(lambda env: load_images(torch.full((3, 8, 8), 200.0), preprocess=PREP),
                 raises(InputError, "[0, 1]", "divide by 255"), id="li-float-0-255"),
    pytest.param(lambda env: load_images(torch.full((3, 8, 8), float("nan")), preprocess=PREP),
                 raises(InputError, "NaN"), id="li-nan"),
    pytest.param(lambda env: load_images(torch.zeros(3, 8, 8, dtype=torch.int64), preprocess=PREP),
                 raises(InputTypeError, "torch.int64", "uint8"), id="li-int64-tensor"),
    pytest.param(lambda env: load_images([], preprocess=PREP),
                 raises(InputError, "sources is empty"), id="li-empty-list"),
    pytest.param(lambda env: load_images({"a": 1}, preprocess=PREP),
                 raises(InputTypeError, "sources must be", "dict"), id="li-dict"),
    pytest.param(lambda env: load_images(env.tmp / "missing.jpg", preprocess=PREP),
                 raises(ImageLoadError, "missing.jpg", "does not exist"), id="li-missing-file"),
    pytest.param(lambda env: load_images(env.data, preprocess=PREP),
                 raises(ImageLoadError, "is a folder"), id="li-folder"),
    pytest.param(lambda env: load_images(np.zeros((0, 5, 3), np.uint8), preprocess=PREP),
                 raises(InputError, "no pixels"), id="li-zero-height"),
    pytest.param(lambda env: load_images(np.zeros((8, 8, 5), np.uint8), preprocess=PREP),
                 raises(InputError, "(H, W, 3)"), id="li-five-channels"),
    pytest.param(lambda env: load_images(ARR, preprocess=PREP, size=0),
                 raises(InputError, "size must be", ">= 1"), id="li-size-0"),
    pytest.param(lambda env: load_images(ARR, preprocess=lambda x: x),
                 raises(InputTypeError, "is not a preprocessing", "Preprocess("), id="li-lambda"),
    pytest.param(lambda env: load_images(ARR),
                 warns(UserWarning, "no preprocess given", "Preprocess.named('imagenet')"), id="li-no-prep"),
    pytest.param(lambda env: (load_images(ARR[..., 0], preprocess=PREP).inputs,
                              load_images(np.repeat(ARR[..., :1], 3, axis=2), preprocess=PREP).inputs),
                 EQUAL, id="li-gray-array"),
    pytest.param(lambda env: (load_images(torch.from_numpy(ARR[..., 0])[None], preprocess=PREP).inputs,
                              load_images(np.repeat(ARR[..., :1], 3, axis=2), preprocess=PREP).inputs),
                 EQUAL, id="li-one-channel-tensor"),
    pytest.param(lambda env: (load_images(Image.fromarray(ARR).convert("RGBA"), preprocess=PREP).inputs,
                              load_images(ARR, preprocess=PREP).inputs), EQUAL, id="li-rgba-pil"),
    # ---- Preprocess ----------------------------------------------------------------------------
    pytest.param(lambda env: Preprocess(std=(0.0, 1.0, 1.0)),
                 raises(InputError, "Preprocess.std", "division by zero"), id="pp-std-0"),
    pytest.param(lambda env: Preprocess(mean=(0.5, 0.5)),
                 raises(InputError, "Preprocess.mean", "3 values"), id="pp-mean-2"),
    pytest.param(lambda env: Preprocess(resize=0),
                 raises(InputError, "Preprocess.resize", "int >= 1"), id="pp-resize-0"),
    pytest.param(lambda env: Preprocess(size=224, resize=200),
                 raises(InputError, "smaller than the crop", "resize >= 224"), id="pp-resize-small"),
    pytest.param(lambda env: Preprocess(interpolation="cubic"),
                 raises(InputError, "Preprocess.interpolation", "bicubic"), id="pp-interp"),
    pytest.param(lambda env: Preprocess(size=(0, 4)),
                 raises(InputError, "Preprocess.size", ">= 1 pixel"), id="pp-size-0"),
    pytest.param(lambda env: Preprocess.named("imagenette"),
                 raises(InputError, "preprocess must be one of", "imagenet"), id="pp-named"),
    pytest.param(lambda env: Preprocess()(torch.zeros(3, 8, 8)),
                 raises(InputError, "(B, 3, H, W)", "load_images"), id="pp-call-3d"),
    pytest.param(lambda env: Preprocess.from_transform(42),
                 raises(InputTypeError, "int is not a preprocessing", "Preprocess("), id="pp-int"),
    pytest.param(lambda env: Preprocess.from_transform(_tv().Compose(
                     [_tv().Resize(40), _tv().CenterCrop(32), _tv().Lambda(lambda x: x)])),
                 raises(InputError, "step Lambda", "Preprocess("), id="pp-lambda-step"),
    pytest.param(lambda env: Preprocess.from_transform(_tv().Compose(
                     [_tv().RandomResizedCrop(32), _tv().ToTensor()])),
                 raises(InputError, "RandomResizedCrop", "boxes"), id="pp-random-crop"),
    pytest.param(lambda env: Preprocess.from_transform(_tv().Compose([_tv().Resize(40), _tv().ToTensor()])),
                 raises(InputError, "without a CenterCrop", "CenterCrop"), id="pp-no-crop"),
    pytest.param(lambda env: Preprocess.from_transform(_tv().Compose(
                     [_tv().Resize(32, max_size=40), _tv().CenterCrop(32)])),
                 raises(InputError, "max_size"), id="pp-max-size"),
    pytest.param(lambda env: Preprocess.from_transform(_tv().Normalize([0.5] * 3, [0.5] * 3)),
                 raises(InputError, "neither resizes nor crops", "size="), id="pp-normalize-only"),
    pytest.param(lambda env: (Preprocess.from_transform(
                     __import__("torchvision").models.ResNet18_Weights.DEFAULT.transforms()), TV_REFERENCE),
                 EQUAL, id="pp-tv-transforms"),
    pytest.param(lambda env: (Preprocess.from_transform(
                     __import__("torchvision").models.ResNet18_Weights.DEFAULT), TV_REFERENCE),
                 EQUAL, id="pp-tv-weights-enum"),
    pytest.param(lambda env: (Preprocess.from_transform(_v2().Compose(
                     [_v2().Resize(40), _v2().CenterCrop(32), _v2().ToImage(),
                      _v2().ToDtype(torch.float32, scale=True), _v2().Normalize([0.4] * 3, [0.2] * 3)])),
                     Preprocess((0.4,) * 3, (0.2,) * 3, 255.0, 32, "torchvision", resize=40,
                                interpolation="bilinear")), EQUAL, id="pp-v2-compose"),
    pytest.param(lambda env: (Preprocess.from_transform(_v2().Compose(
                     [_v2().Resize((24, 32)), _v2().ToImage(), _v2().ToDtype(torch.float32, scale=False),
                      _v2().Normalize([127.0] * 3, [128.0] * 3)])),
                     Preprocess((127.0,) * 3, (128.0,) * 3, 1.0, (24, 32), "torchvision",
                                interpolation="bilinear")), EQUAL, id="pp-v2-unscaled-squash"),
    pytest.param(_hf(lambda tf: Preprocess.from_transform(tf.ViTImageProcessor(do_resize=False))),
                 raises(InputError, "ViTImageProcessor", "does not resize"), id="pp-hf-no-resize"),
    pytest.param(_hf(lambda tf: (Preprocess.from_transform(tf.ViTImageProcessor()),
                                 Preprocess((0.5,) * 3, (0.5,) * 3, 255.0, 224, "huggingface",
                                            interpolation="bilinear", crop_rounding="floor"))),
                 EQUAL, id="pp-hf-vit"),
    # ---- compare -------------------------------------------------------------------------------
    pytest.param(lambda env: env.compare(
                     preprocess=lambda p: torch.nn.functional.interpolate(p / 255, size=16)),
                 raises(InputError, "boxes cannot follow", "weights.transforms()"),
                 id="cmp-resizing-callable"),
    pytest.param(lambda env: env.compare(preprocess=None),
                 warns(UserWarning, "no preprocess given", "weights.transforms()"), id="cmp-no-prep"),
    pytest.param(lambda env: env.compare(preprocess=42),
                 raises(InputTypeError, "preprocess must be", "int"), id="cmp-prep-int"),
    pytest.param(lambda env: env.compare(out=env.file("out.txt")),
                 raises(RunFolderError, "out.txt", "is a file"), id="cmp-out-file"),
    pytest.param(_foreign_table, raises(RunFolderError, "table.csv", "overwrite=True"),
                 id="cmp-foreign-table"),
    pytest.param(_foreign_records, raises(RunFolderError, "records.jsonl", "overwrite=True"),
                 id="cmp-foreign-records"),
    pytest.param(lambda env: env.compare(image_size=0),
                 raises(InputError, "image_size", ">= 1"), id="cmp-image-size-0"),
    pytest.param(lambda env: env.compare(output="logits"),
                 raises(InputTypeError, "output must be a callable"), id="cmp-output-str"),
    pytest.param(lambda env: env.compare(model=_NaNModel(env.model), layer="inner.features", max_failures=2),
                 raises(CompareError, "first 2 images all failed", "NaN"), id="cmp-nan-model"),
    pytest.param(_stray_records, EQUAL, id="cmp-stray-records"),
    pytest.param(_old_format, warns(UserWarning, "records.jsonl", "lack keys", "overwrite=True"),
                 id="cmp-old-format-record"),
    pytest.param(_torn, warns(UserWarning, "half-written record"), id="cmp-torn-record"),
    pytest.param(_dict_model, EQUAL, id="cmp-dict-output"),
    pytest.param(_overwrite, EQUAL, id="cmp-overwrite"),
    pytest.param(_bom, EQUAL, id="cmp-manifest-bom"),
    pytest.param(_compare_with_torchvision_transform, EQUAL, id="cmp-torchvision-transform"),
    pytest.param(_injection, EQUAL, id="cmp-csv-injection"),
    pytest.param(lambda env: env.compare().write(env.file("result.csv")),
                 raises(OutputExistsError, "result.csv", "is a file"), id="cmp-write-to-file"),
    pytest.param(lambda env: (csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)"), EQUAL, id="csv-equals"),
    pytest.param(lambda env: (csv_cell("+cmd"), "'+cmd"), EQUAL, id="csv-plus"),
    pytest.param(lambda env: (csv_cell("-cmd|x"), "'-cmd|x"), EQUAL, id="csv-minus"),
    pytest.param(lambda env: (csv_cell("@SUM(A1)"), "'@SUM(A1)"), EQUAL, id="csv-at"),
    pytest.param(lambda env: ([csv_cell("-0.5"), csv_cell(-0.5), csv_cell("-1e-3")], ["-0.5", -0.5, "-1e-3"]),
                 EQUAL, id="csv-negative-numbers"),
    pytest.param(lambda env: (csv_cell("gradcam"), "gradcam"), EQUAL, id="csv-plain"),
    # ---- the CLI -------------------------------------------------------------------------------
    pytest.param(lambda env: env.cli("explain", str(env.tmp / "nope.jpg"), *TINY,
                                     "--out", str(env.tmp / "m")),
                 exits(EXIT_PARTIAL, "nope.jpg", "does not exist"), id="cli-explain-missing"),
    pytest.param(lambda env: env.cli("explain", str(env.file("t.jpg", "text")), *TINY,
                                     "--out", str(env.tmp / "m")),
                 exits(EXIT_PARTIAL, "t.jpg", "not an image format"), id="cli-explain-text-jpg"),
    pytest.param(lambda env: env.cli("explain", str(env.data / "im0.png"), *TINY,
                                     "--out", str(env.file("o.png"))),
                 exits(EXIT_USAGE, "--out", "is a file"), id="cli-explain-out-file"),
    pytest.param(lambda env: env.cli("explain", str(env.data / "im0.png"), *TINY, "--target", "99",
                                     "--out", str(env.tmp / "m")),
                 exits(EXIT_USAGE, "--target 99", "5 classes"), id="cli-explain-target"),
    pytest.param(lambda env: env.cli(*_compare_args(env, env.file("o.csv"))),
                 exits(EXIT_USAGE, "--out", "is a file"), id="cli-compare-out-file"),
    pytest.param(lambda env: (env.file("run/table.csv"), env.cli(*_compare_args(env, env.tmp / "run")))[1],
                 exits(EXIT_ERROR, "table.csv", "--overwrite"), id="cli-compare-foreign-table"),
    pytest.param(lambda env: (env.file("run/report.html"),
                              env.cli(*_compare_args(env, env.tmp / "run", "--overwrite")))[1],
                 exits(EXIT_OK), id="cli-compare-overwrite"),
    pytest.param(lambda env: env.cli("compare", str(env.tmp / "none.csv"), *TINY,
                                     "--out", str(env.tmp / "r")),
                 exits(EXIT_ERROR, "none.csv", "does not exist"), id="cli-compare-missing-data"),
    pytest.param(lambda env: env.cli("explain", str(env.data / "im0.png"), "--model",
                                     "tests.nets:tiny", "--preprocess", "imagenette"),
                 exits(EXIT_USAGE, "--preprocess", "imagenet"), id="cli-bad-preprocess"),
    pytest.param(_same_names, EQUAL, id="cli-explain-same-names"),
    pytest.param(_cli_no_preprocess, EQUAL, id="cli-no-preprocess-warns"),
]


@pytest.mark.parametrize("action,expect", ROWS)
def test_bad_input(action, expect, tmp_path, dataset, capsys):
    env = Env(tmp_path, dataset)
    env.capsys = capsys
    kind, what, words = expect
    if kind == "raises":
        assert issubclass(what, XcamError)
        with pytest.raises(what) as info:
            action(env)
        message = str(info.value)
        missing = [w for w in words if w not in message]
        assert not missing, f"{missing} not in {message!r}"
    elif kind == "warns":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            action(env)
        texts = [str(w.message) for w in caught if issubclass(w.category, what)]
        assert any(all(w in t for w in words) for t in texts), texts
    elif kind == "equal":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, expected = action(env)
        if isinstance(got, torch.Tensor):
            assert torch.equal(got, expected)
        else:
            assert got == expected
    else:
        code = action(env)
        err = capsys.readouterr().err
        assert code == what and "Traceback" not in err, err
        if words:
            lines = [line for line in err.splitlines()
                     if line.startswith("xcam") and ("error:" in line or "skipped" in line)]
            assert len(lines) == 1, err
            missing = [w for w in words if w not in lines[0]]
            assert not missing, f"{missing} not in {lines[0]!r}"


def test_the_table_has_at_least_30_rows():
    assert len(ROWS) >= 30
