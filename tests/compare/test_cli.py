from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xcam.cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from xcam.registry import METRICS

from .conftest import write_images

ROOT = Path(__file__).parents[2]
TINY = ["--model", "tests.nets:tiny", "--image-size", "32", "--preprocess", "unit"]


def compare_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", str(dataset / "boxes.csv"), *TINY, "--methods", "gradcam",
            "--method-arg", "gradcam.layer=features", "--metrics", "pointing_game,deletion,max_box_acc",
            "--metric-arg", "deletion.steps=6", "--out", str(out), "--no-progress", *extra]


@pytest.mark.parametrize("command", [["--help"], ["explain", "--help"], ["compare", "--help"],
                                     ["demo", "--help"], ["list", "--help"], ["lfi", "train", "--help"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as err:
        main(command)
    assert err.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: xcam")
    if command[0] == "compare":
        assert "--columns" in text and "--metric-arg" in text and "resumes" in text


def test_compare_writes_outputs_and_exit_codes(tmp_path, dataset, capsys):
    assert main(compare_args(dataset, tmp_path / "ok")) == EXIT_OK
    out = capsys.readouterr().out
    center = METRICS.get("pointing_game").baseline_label
    assert "gradcam" in out and center in out and "pointing_game ↑" in out
    for name in ("table.csv", "summary.csv", "timing.csv", "summary.json", "report.html"):
        assert (tmp_path / "ok" / name).exists()
    with open(tmp_path / "ok" / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 * 5 * 3  # images x (gradcam + 4 controls) x metrics
    (dataset / "broken.png").write_bytes(b"nope")
    with open(dataset / "boxes.csv", "a") as handle:
        handle.write("broken.png,0,1,1,4,4\n")
    assert main(compare_args(dataset, tmp_path / "ok")) == EXIT_PARTIAL  # resumes, 1 bad image
    assert "broken.png" in capsys.readouterr().err


def test_usage_and_errors(tmp_path, dataset, capsys):
    assert main(compare_args(dataset, tmp_path, "--metric-arg", "deletion")) == EXIT_USAGE
    assert "NAME.ARGUMENT=VALUE" in capsys.readouterr().err
    args = compare_args(dataset, tmp_path)
    args[args.index("tests.nets:tiny")] = "resnt18"
    assert main(args) == EXIT_ERROR
    assert "did you mean 'resnet18'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["compare", str(dataset)])  # --model and --out are required
    assert err.value.code == EXIT_USAGE


def test_explain_writes_overlays(tmp_path, dataset, capsys):
    images = [str(dataset / "im0.png"), str(dataset / "im1.png")]
    code = main(["explain", *images, *TINY, "--methods", "gradcam,center", "--layer", "features",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert "im0.png: class" in out and "layer features" in out
    from PIL import Image

    for stem in ("im0", "im1"):
        for method in ("gradcam", "center"):
            with Image.open(tmp_path / f"{stem}_{method}.png") as img, \
                    Image.open(dataset / f"{stem}.png") as photo:
                assert img.size == photo.size  # the photo's own size, not the model's 32 x 32
    assert main(["explain", str(tmp_path / "missing.png"), *TINY, "--out", str(tmp_path),
                 "--no-progress"]) == EXIT_PARTIAL


def test_lfi_train(tmp_path, capsys):
    pytest.importorskip("xcam.lfi")
    write_images(tmp_path / "data" / "a", ["0.png", "1.png"], seed=1)
    write_images(tmp_path / "data" / "b", ["2.png", "3.png"], seed=2)
    ckpt = tmp_path / "lfi.pt"
    code = main(["lfi", "train", str(tmp_path / "data"), "--arch", "resnet18", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "4", "--depth", "2", "--width", "8", "--out", str(ckpt),
                 "--no-progress"])
    assert code == EXIT_OK and ckpt.exists()
    assert "train loss" in capsys.readouterr().out
    from xcam.lfi import load_checkpoint

    net = load_checkpoint(ckpt)
    assert net.classes == ["a", "b"]


def test_distributed_run_equals_single_process(tmp_path, dataset):
    """torchrun with 2 gloo processes shards the images by batch and writes the same table.

    5 images in batches of 2 (not divisible by 2 processes): rank 0 runs batches 0 and 2 (im0,
    im1, im4), rank 1 batch 1 (im2, im3); every image exactly once, no padding duplicate.
    """
    extra = ("--limit", "5", "--batch-size", "2")
    assert main(compare_args(dataset, tmp_path / "single", *extra)) == EXIT_OK
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(port), "-m", "xcam",
           *compare_args(dataset, tmp_path / "multi", *extra)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("table.csv", "summary.csv"):  # bit for bit: the same batches in both runs
        assert (tmp_path / "multi" / name).read_text() == (tmp_path / "single" / name).read_text()
    shards = [[json.loads(line) for line in (tmp_path / "multi" / f"records.rank{r}.jsonl").open()]
              for r in (0, 1)]
    images = [sorted(rec["image"] for rec in shard if rec["kind"] == "image") for shard in shards]
    assert images == [["im0.png", "im1.png", "im4.png"], ["im2.png", "im3.png"]]
    items = [(rec["image"], rec["method"]) for shard in shards for rec in shard if rec["kind"] == "item"]
    assert len(items) == len(set(items)) == 5 * 5  # gradcam + 4 controls, each image once
    assert not (tmp_path / "multi" / "records.jsonl").exists()


def test_methods_all_runs_every_explainer_then_the_controls(tmp_path, dataset):
    import json

    from xcam import list_explainers
    from xcam.registry import EXPLAINERS

    args = ["compare", str(dataset / "boxes.csv"), *TINY, "--methods", "all", "--metrics",
            "pointing_game", "--out", str(tmp_path), "--limit", "1", "--no-report", "--no-progress"]
    assert main(args) == EXIT_OK
    methods = json.loads((tmp_path / "summary.json").read_text())["methods"]
    # explainers that need a model of their own kind (model_type: LFI-CAM, D-RISE) are left out
    expected = [m for m in list_explainers() if EXPLAINERS.get(m).model_type is None
                and m not in ("blank", "random", "center", "edges")]
    assert methods == expected + ["blank", "random", "center", "edges"]
