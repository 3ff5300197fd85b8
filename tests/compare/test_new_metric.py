"""Adding a metric is one file plus its test: compare and the report pick it up from its metadata.

A toy metric is registered here at test time (and unregistered afterwards); neither
``xcam/compare.py`` nor ``xcam/report.py`` knows its name, yet it reaches the table, the summary
(with its baseline row), the text summary of the CLI and ``report.html`` (label, unit, curves).
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.nets import tiny
from xcam.cli import EXIT_OK, main
from xcam.compare import compare
from xcam.metrics.base import PerImage, metric
from xcam.models import Preprocess
from xcam.registry import METRICS

NAME = "toy_peak_share"


def _peak_share(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Share of the pixels at the map's maximum, and the sorted map quantiles as a 'curve'."""
    flat = maps.flatten(1)
    share = (flat >= flat.amax(dim=1, keepdim=True)).double().mean(dim=1)
    curve = torch.quantile(flat.double(), torch.linspace(0, 1, 5, dtype=torch.float64), dim=1).T
    return share, curve


def _floor(boxes: list, size: tuple[int, int]) -> torch.Tensor:
    return torch.full((len(boxes),), 0.25, dtype=torch.float64)


@pytest.fixture
def toy():

    def toy_peak_share(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _peak_share(maps)

    registered = metric(
        NAME, higher_is_better=False, family="localization", label="Toy peak share (%)", unit="%",
        curves=True, curve_xlabel="quantile", curve_ylabel="map value",
        per_image=lambda result: PerImage(scores=result[0], curves=result[1]),
        baseline=_floor, baseline_label="toy floor",
    )(toy_peak_share)
    yield registered
    assert METRICS.unregister(NAME) is registered and NAME not in METRICS


def test_a_registered_metric_reaches_table_summary_and_report(toy, tmp_path, dataset, capsys):
    out = tmp_path / "out"
    result = compare(tiny(), dataset / "boxes.csv", ["gradcam"], ["pointing_game", NAME], out=out,
                     preprocess=Preprocess.named("unit", 32),
                     method_kwargs={"gradcam": {"layer": "features"}}, grid_images=0)
    rows = [r for r in result.table() if r["metric"] == NAME]
    assert len(rows) == 6 * 5  # every image (it needs maps only: im5 without a box too) x 5 methods
    values = {(r["index"], r["method"]): r["value"] for r in rows}
    assert all(values[(i, "blank")] == 1.0 for i in range(6))  # a constant map peaks everywhere
    assert all(0 < values[(i, "center")] < 0.01 for i in range(6))  # a Gaussian peaks at its center
    assert all(0 < values[(i, "gradcam")] <= 1 for i in range(6))
    curves = result.mean_curves(NAME)
    assert set(curves) == {"gradcam", "blank", "random", "center", "edges"} and len(curves["gradcam"]) == 5

    summary = {(r["method"], r["metric"]): r for r in result.summary()}
    row = summary[("gradcam", NAME)]
    assert row["higher_is_better"] is False and row["n"] == 6
    assert row["mean"] == pytest.approx(sum(values[(i, "gradcam")] for i in range(6)) / 6)
    assert summary[("blank", NAME)]["mean"] == 1.0 and summary[("blank", NAME)]["rank"] is None  # a control
    assert summary[("gradcam", NAME)]["rank"] == 1
    floor = summary[("toy floor", NAME)]
    assert floor["mean"] == pytest.approx(0.25) and floor["n"] == 5 and floor["rank"] is None
    assert ("center point", NAME) not in summary and ("toy floor", "pointing_game") not in summary

    data = json.loads((out / "summary.json").read_text())
    assert {r["metric"] for r in data["summary"]} == {"pointing_game", NAME}
    assert json.loads((out / "run.json").read_text())["metric_versions"][NAME] == 1
    page = (out / "report.html").read_text()
    assert "Toy peak share (%) ↓" in page
    assert "toy floor (baseline)" in page and "25.0" in page  # the baseline row, in %
    assert "Toy peak share curves" in page
    assert f'class="chart" role="img" id="curve-{NAME}"' in page  # an inline SVG chart
    assert "Toy peak share in %." in page
    assert f'data-metric="{NAME}" data-value="1.0">100.0' in page  # the blank map, in %



def test_the_cli_shows_a_registered_metric(toy, tmp_path, dataset, capsys):
    args = ["compare", str(dataset / "boxes.csv"), "--model", "tests.nets:tiny", "--image-size",
            "32", "--preprocess", "unit", "--methods", "gradcam", "--method-arg", "gradcam.layer=features",
            "--metrics", NAME, "--no-controls", "--limit", "2", "--out", str(tmp_path / "cli"),
            "--no-progress", "--no-report"]
    assert main(args) == EXIT_OK
    text = capsys.readouterr().out
    assert f"{NAME} ↓" in text and "toy floor" in text and "25.000" in text
    assert "toy peak share in %" in text
