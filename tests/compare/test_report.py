from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.nets import tiny
from xcam.compare import compare
from xcam.models import Preprocess

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()),
                None) or shutil.which("chromium")
METHODS = ["gradcam", "gradcampp", "scorecam"]
CONTROLS = ["blank", "random", "center", "edges"]
CLASSES = ["cat", "dog", "car_&_50%", "tree", "bird"]
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
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
            tiny(), folder / "boxes.csv", METHODS,
            ["pointing_game", "deletion", "insertion", "average_drop", "model_parameter_randomization"],
            out=out, preprocess=Preprocess.named("unit", 32),
            method_kwargs={m: {"layer": "features"} for m in METHODS},
            metric_kwargs={"deletion": {"steps": 8}, "insertion": {"steps": 8}},
            grid_images=3, sanity_images=2, classes=CLASSES,
        )
    return result, out


def test_csv_and_json_hold_the_table_and_summary(written):
    result, out = written
    with open(out / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = result.table()
    assert len(rows) == len(table) == 5 * 7 * 5  # images x methods (3 + 4 controls) x metrics
    for row, ref in zip(rows, table):
        assert (int(row["index"]), row["image"], row["method"], row["metric"]) == (
            ref["index"], ref["image"], ref["method"], ref["metric"])
        assert (row["value"] == "") if math.isnan(ref["value"]) else float(row["value"]) == ref["value"]
    data = json.loads((out / "summary.json").read_text())  # strict JSON: NaN written as null
    assert data["methods"] == METHODS + CONTROLS
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
    assert "<script src" not in page and "<link" not in page
    assert "Pointing game ↑" in page and "Deletion AUC ↓" in page and "Average drop (%) ↓" in page
    for part in ('id="metrics"', 'id="agreement"', 'id="pairwise"', 'id="timing"', 'class="grid"',
                 "Deletion and insertion curves", 'id="curve-deletion"', 'id="curve-insertion"',
                 'id="sanity-spearman"', "Sanity checks", 'id="provenance"', "broken.png",
                 'id="image-0"', 'href="#image-0"', "car_&amp;_50%"):
        assert part in page, part
    # pictures: 3 grid rows and 3 image pages x (image + 3 methods + 4 controls); charts are SVG
    assert page.count("<img ") == 2 * 3 * 8
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 2 + 2 + 3 * 2
    # im0 has two boxes, im1 and im2 one: drawn on the thumbnail and on every map (grid and page)
    assert page.count('class="gt-box"') == 2 * 8 * (2 + 1 + 1)
    assert 'polygon class="ci-band"' in page


def test_only_the_requested_panels(tmp_path, dataset):
    out = tmp_path / "out"
    compare(tiny(), dataset / "boxes.csv", ["gradcam"], ["deletion"], out=out,
            preprocess=Preprocess.named("unit", 32), method_kwargs={"gradcam": {"layer": "features"}},
            metric_kwargs={"deletion": {"steps": 4}}, grid_images=0, controls=False)
    page = (out / "report.html").read_text()
    assert 'id="curve-deletion"' in page and "nsertion" not in page  # no empty insertion panel
    assert 'id="sanity"' not in page and "Sanity checks" not in page
    assert page.count('class="chart"') == 1


def _run_in_chromium(page: Path, check: str, fragment: str = "") -> dict:
    """Open ``page`` in headless Chromium with ``check`` (JS returning an object) run after load."""
    probe = page.with_name(f"probe-{page.name}")
    script = ("<script>window.addEventListener('load', function () { setTimeout(function () {"
              "var out; try { out = (function () {" + check + "})(); }"
              "catch (e) { out = {error: String(e)}; }"
              "var pre = document.createElement('pre'); pre.id = 'xcam-probe';"
              "pre.textContent = JSON.stringify(out); document.body.appendChild(pre); }, 0); });</script>")
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    url = probe.resolve().as_uri() + fragment
    dom = subprocess.run([CHROMIUM, *HEADLESS, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="xcam-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-1000:]
    result = json.loads(html.unescape(found.group(1)))
    assert "error" not in result, result
    return result


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_clicking_a_header_sorts_the_table(written):
    _, out = written
    order = """
      function order(id) { return Array.prototype.map.call(document.querySelectorAll(id + ' tr'),
                                                            function (r) { return r.dataset.method; }); }
      var th = document.querySelector('#metrics th[data-key="average_drop"]');
      var res = {before: order('#ranked')};
      th.click(); res.first = order('#ranked'); res.first_controls = order('#controls');
      res.first_aria = th.getAttribute('aria-sort');
      th.click(); res.second = order('#ranked'); res.second_aria = th.getAttribute('aria-sort');
      var pg = document.querySelector('#metrics th[data-key="pointing_game"]');
      pg.click(); res.pg = order('#ranked'); res.pg_aria = pg.getAttribute('aria-sort');
      res.cleared = th.getAttribute('aria-sort');
      document.querySelector('#metrics th[data-key="method"]').click(); res.names = order('#controls');
      res.rows = document.querySelectorAll('#metrics tbody.sortable tr').length;
      return res;"""
    got = _run_in_chromium(out / "report.html", order)
    with open(out / "summary.csv", newline="") as handle:
        mean = {(r["method"], r["metric"]): float(r["mean"]) for r in csv.DictReader(handle)}
    assert got["before"] == METHODS and got["rows"] == 7

    def expect(methods, metric, descending):
        position = {m: j for j, m in enumerate(methods)}
        sign = -1 if descending else 1
        return sorted(methods, key=lambda m: (sign * mean[(m, metric)], position[m]))

    # average drop: lower is better, so the first click puts the lowest first; the second reverses
    assert got["first_aria"] == "ascending" and got["first"] == expect(METHODS, "average_drop", False)
    assert got["second_aria"] == "descending" and got["second"] == expect(METHODS, "average_drop", True)
    assert got["first_controls"] == expect(CONTROLS, "average_drop", False)  # sorted within the controls
    assert len({mean[(m, "average_drop")] for m in METHODS}) == 3  # distinct: the order is a real check
    # pointing game: higher is better, the highest first; the other header is cleared
    assert got["pg_aria"] == "descending" and got["cleared"] is None
    assert got["pg"] == expect(got["second"], "pointing_game", True)
    assert got["names"] == sorted(CONTROLS)  # the name column sorts as text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_image_page_boxes_and_ci_bands_in_chromium(written):
    _, out = written
    check = """
      function box(el) { var r = el.getBoundingClientRect(); return [r.width, r.height]; }
      var page = document.getElementById('image-0');
      var res = {page_display: getComputedStyle(page).display,
                 summary_display: getComputedStyle(document.getElementById('summary')).display};
      var imgs = page.querySelectorAll('img');
      res.page_images = imgs.length;
      res.page_images_ok = Array.prototype.filter.call(imgs, function (i) {
        return i.complete && i.naturalWidth > 0; }).length;
      res.page_boxes = Array.prototype.map.call(page.querySelectorAll('rect.gt-box'), box);
      res.score_rows = page.querySelectorAll('table.image-scores tbody tr').length;
      res.curves = page.querySelectorAll('svg.chart polyline.series').length;
      res.meta = page.querySelector('.meta').textContent;
      return res;"""
    got = _run_in_chromium(out / "report.html", check, "#image-0")
    # the page is shown alone; every method's map decoded; im0's 2 boxes on each of the 8 pictures
    assert got["page_display"] == "block" and got["summary_display"] == "none"
    assert got["page_images"] == got["page_images_ok"] == 8
    assert len(got["page_boxes"]) == 16 and all(w > 5 and h > 5 for w, h in got["page_boxes"])
    assert got["score_rows"] == 7 and got["curves"] == 2 * 7  # deletion + insertion, every method
    assert "target cat (0" in got["meta"] and "2 ground-truth box(es)" in got["meta"]

    check = """
      var res = {};
      ['deletion', 'insertion'].forEach(function (k) {
        var bands = document.querySelectorAll('#curve-' + k + ' polygon.ci-band');
        res[k] = Array.prototype.map.call(bands, function (b) {
          var r = b.getBoundingClientRect(); return [b.dataset.series, r.width, r.height]; });
      });
      var grid = document.querySelectorAll('table.grid rect.gt-box');
      res.grid_boxes = grid.length;
      res.grid_box = (function (r) { return [r.width, r.height]; })(grid[0].getBoundingClientRect());
      res.image_display = getComputedStyle(document.getElementById('image-0')).display;
      return res;"""
    got = _run_in_chromium(out / "report.html", check)
    for kind in ("deletion", "insertion"):
        assert [b[0] for b in got[kind]] == METHODS + CONTROLS  # one band per method
        assert all(w > 100 for _, w, _ in got[kind])  # each band spans the x axis
    assert got["grid_boxes"] == 8 * (2 + 1 + 1) and min(got["grid_box"]) > 5
    assert got["image_display"] == "none"  # image pages are hidden until opened
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
    assert attrs["data-images"] == attrs["data-images-ok"] == str(2 * 3 * 8)
    assert attrs["data-metric-rows"] == "7"  # 3 methods + 4 controls
    assert "rendered: 48 of 48 pictures, 7 metric rows" in dom.stdout
    shot = tmp_path / "shot.png"
    done = subprocess.run([CHROMIUM, *HEADLESS, "--window-size=1200,900", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1200)
    assert (pixels < 128).any(axis=2).mean() > 0.01  # text and tables drawn, not a blank page
