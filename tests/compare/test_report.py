from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xcam.compare import compare
from xcam.models import Preprocess

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()),
                None) or shutil.which("chromium")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from tests.nets import tiny

    from .conftest import BOXES, LABELS, write_images, write_manifest

    folder = tmp_path_factory.mktemp("data")
    write_images(folder)
    rows = [f"{n},{LABELS[n]}," + ",".join(str(v) for v in b) for n, bs in BOXES.items() for b in bs]
    write_manifest(folder / "boxes.csv", rows)
    (folder / "broken.png").write_bytes(b"nope")
    with open(folder / "boxes.csv", "a") as handle:
        handle.write("broken.png,0,1,1,4,4\n")
    out = tmp_path_factory.mktemp("out")
    with pytest.warns(UserWarning, match="failed and were skipped"):
        result = compare(
            tiny(), folder / "boxes.csv", ["gradcam", "gradcampp"],
            ["pointing_game", "deletion", "insertion", "average_drop", "model_parameter_randomization"],
            out=out, preprocess=Preprocess.named("unit", 32),
            method_kwargs={"gradcam": {"layer": "features"}, "gradcampp": {"layer": "features"}},
            metric_kwargs={"deletion": {"steps": 8}, "insertion": {"steps": 8}},
            grid_images=3, sanity_images=2,
        )
    return result, out


def test_csv_and_json_hold_the_table_and_summary(written):
    result, out = written
    with open(out / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = result.table()
    assert len(rows) == len(table) == 5 * 6 * 5  # images x methods (2 + 4 controls) x metrics
    for row, ref in zip(rows, table):
        assert (int(row["index"]), row["image"], row["method"], row["metric"]) == (
            ref["index"], ref["image"], ref["method"], ref["metric"])
        assert (row["value"] == "") if math.isnan(ref["value"]) else float(row["value"]) == ref["value"]
    data = json.loads((out / "summary.json").read_text())  # strict JSON: NaN written as null
    assert data["methods"] == ["gradcam", "gradcampp", "blank", "random", "center", "edges"]
    assert data["errors"][0]["image"] == "broken.png"
    assert data["provenance"]["methods"]["gradcam"]["layer"] == "features"
    assert data["provenance"]["seed"] == 0 and data["provenance"]["torch"]
    with open(out / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    means = {(r["method"], r["metric"]): r["mean"] for r in summary}
    assert float(means[("gradcam", "deletion")]) == pytest.approx(
        sum(r["value"] for r in table if r["method"] == "gradcam" and r["metric"] == "deletion") / 5)


def test_html_is_self_contained_and_has_every_part(written):
    result, out = written
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", page)  # nothing fetched
    assert "Pointing game ↑" in page and "Deletion AUC ↓" in page and "Average drop (%) ↓" in page
    for part in ('id="metrics"', 'id="timing"', 'class="grid"', "Deletion and insertion curves",
                 "Sanity checks", 'id="provenance"', "broken.png"):
        assert part in page
    # 3 grid rows x (image + 2 methods + 4 controls) + the curves chart + the sanity chart
    assert page.count("data:image/png;base64,") == 3 * 7 + 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(written, tmp_path):
    _, out = written
    url = (out / "report.html").resolve().as_uri()
    dom = subprocess.run([CHROMIUM, *HEADLESS, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    # the page's script ran after load: every picture decoded, one metrics row per method
    assert attrs["data-images"] == attrs["data-images-ok"] == str(3 * 7 + 2)
    assert attrs["data-metric-rows"] == "6"  # 2 methods + 4 controls
    assert "rendered: 23 of 23 pictures, 6 metric rows" in dom.stdout
    shot = tmp_path / "shot.png"
    done = subprocess.run([CHROMIUM, *HEADLESS, "--window-size=1200,900", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1200)
    assert (pixels < 128).any(axis=2).mean() > 0.01  # text and tables drawn, not a blank page
