"""The report's statistics and paper tables, on hand-made comparisons (no model runs).

Holm-Bonferroni against statsmodels and a hand computation; Kendall's tau by hand and against
scipy; the curve bands; controls never ranked; summary.tex parsed as a booktabs table body;
summary.md; to_pandas.
"""

from __future__ import annotations

import builtins
import csv
import math
import re

import pytest
import torch

from xcam.errors import MissingDependencyError
from xcam.evaluation.compare import Comparison
from xcam.evaluation.report import render_latex, render_markdown, tex_escape, write_outputs
from xcam.metrics import holm, kendall_tau, mean_band, wilcoxon

# ---------------------------------------------------------------------------------------------
# Holm-Bonferroni
# ---------------------------------------------------------------------------------------------


def test_holm_by_hand():
    # m = 4, sorted 0.01 < 0.02 < 0.03 < 0.04: 4 x 0.01 = 0.04; 3 x 0.02 = 0.06; 2 x 0.03 = 0.06;
    # 1 x 0.04 = 0.04 -> running maximum 0.06; in the input's order
    p = [0.03, 0.01, 0.04, 0.02]
    assert holm(p).tolist() == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # capped at 1, NaN kept and left out of m (m = 2 here: 2 x 0.6 = 1.2 -> 1)
    got = holm([0.6, float("nan"), 0.7]).tolist()
    assert got[0] == 1.0 and math.isnan(got[1]) and got[2] == 1.0
    assert holm([0.2, float("nan")]).tolist()[0] == pytest.approx(0.2)  # one test: unchanged
    # ties keep their order and get the same value
    assert holm([0.01, 0.01, 0.5]).tolist() == pytest.approx([0.03, 0.03, 0.5])


@pytest.mark.parametrize("seed", range(5))
def test_holm_equals_statsmodels(seed):
    from statsmodels.stats.multitest import multipletests

    gen = torch.Generator().manual_seed(seed)
    p = (torch.rand(12, generator=gen, dtype=torch.float64) ** 3).tolist()
    assert holm(p).tolist() == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-12)


def test_holm_refuses_values_outside_0_1():
    with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
        holm([0.5, 1.5])


# ---------------------------------------------------------------------------------------------
# Kendall's tau
# ---------------------------------------------------------------------------------------------


def test_kendall_tau_by_hand():
    # 4 items, 6 pairs: a = 1 2 3 4, b = 1 3 2 4: one discordant pair (2, 3) -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties, tau-b: a = 1 2 2, b = 1 2 3: C = 2, D = 0, n0 = 3, n1 = 1, n2 = 0 -> 2 / sqrt(2 * 3)
    assert kendall_tau([1, 2, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([1.0], [2.0])) and math.isnan(kendall_tau([1, 1], [1, 2]))
    assert kendall_tau([1, float("nan"), 2, 3], [1, 5, 2, 3]) == pytest.approx(1.0)  # NaN left out


def test_kendall_tau_equals_scipy():
    from scipy.stats import kendalltau

    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = torch.randint(0, 4, (9,), generator=gen).double()  # many ties
        b = torch.randint(0, 4, (9,), generator=gen).double()
        assert kendall_tau(a, b) == pytest.approx(kendalltau(a.numpy(), b.numpy()).statistic)


# ---------------------------------------------------------------------------------------------
# curve bands
# ---------------------------------------------------------------------------------------------


def test_mean_band_brackets_the_mean_and_is_seeded():
    curves = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.7, 0.2], [1.0, 0.9, 0.1], [1.0, 0.3, 0.3]])
    band = mean_band(curves, n_resamples=500, seed=3)
    assert band.mean == pytest.approx([1.0, 0.6, 0.15]) and band.n == 4
    assert band.low[0] == band.high[0] == 1.0  # every curve agrees at step 0: no width
    for lo, m, hi in zip(band.low, band.mean, band.high):
        assert lo <= m <= hi
    # a resampled mean lies between the smallest and largest curve value at that step
    assert band.low[1] >= 0.3 and band.high[1] <= 0.9 and band.high[1] - band.low[1] > 0.1
    assert mean_band(curves, n_resamples=500, seed=3) == band
    assert mean_band(curves[:1]).low == curves[0].tolist()


def test_mean_band_equals_a_plain_loop_bootstrap():
    """The same resamples (same seeded draws), averaged and cut at the quantiles one by one."""
    from xcam._checks import make_generator

    gen = torch.Generator().manual_seed(1)
    curves = torch.rand(5, 4, generator=gen, dtype=torch.float64)
    band = mean_band(curves, confidence=0.9, n_resamples=50, seed=7)
    idx = torch.randint(0, 5, (50, 5), generator=make_generator(7, torch.device("cpu"))).tolist()
    for t in range(4):
        means = sorted(sum(float(curves[i, t]) for i in draw) / 5 for draw in idx)

        def quantile(q, means=means):  # linear interpolation between order statistics (numpy's)
            pos = q * (len(means) - 1)
            lo = int(pos)
            return means[lo] + (pos - lo) * (means[min(lo + 1, len(means) - 1)] - means[lo])

        assert band.low[t] == pytest.approx(quantile(0.05)) and band.high[t] == pytest.approx(quantile(0.95))
        assert band.mean[t] == pytest.approx(float(curves[:, t].mean()))


# ---------------------------------------------------------------------------------------------
# a hand-made comparison
# ---------------------------------------------------------------------------------------------

METHODS = ["a_cam", "b&cam", "c%cam", "random"]  # the last is a registered control
# pointing game (higher better) and deletion (lower better) per image, per method
PG = {"a_cam": [1, 1, 1, 0, 1, 1], "b&cam": [1, 0, 1, 0, 0, 1], "c%cam": [0, 0, 1, 0, 0, 0],
      "random": [1, 1, 1, 1, 1, 1]}
DEL = {"a_cam": [0.10, 0.20, 0.15, 0.30, 0.12, 0.18], "b&cam": [0.30, 0.25, 0.35, 0.40, 0.33, 0.20],
       "c%cam": [0.20, 0.22, 0.22, 0.39, 0.30, 0.19], "random": [0.01, 0.02, 0.01, 0.01, 0.02, 0.01]}


def hand_made() -> Comparison:
    images = [{"index": i, "image": f"im{i}.png", "status": "ok", "target": i % 3, "predicted": 0,
               "probability": 0.5, "baselines": {}, "boxes": [[2, 2, 8, 8]]} for i in range(6)]
    items = []
    for i in range(6):
        for m in METHODS:
            d = DEL[m][i]
            items.append({"index": i, "image": f"im{i}.png", "method": m, "status": "ok",
                          "scores": {"pointing_game": float(PG[m][i]), "deletion": d},
                          "curves": {"deletion": [1.0, 0.5 * (1 + d), d]}, "seconds": 0.01,
                          "forward_passes": 1})
    return Comparison(METHODS, ["pointing_game", "deletion"], images, items,
                      provenance={"seed": 0, "image_size": [16, 16]}, classes=["cat", "dog_1", "car"])


def test_controls_are_shown_but_never_ranked():
    rows = {(r["method"], r["metric"]): r for r in hand_made().summary(n_resamples=200)}
    # the random control has the best raw values on both metrics, and still is neither best nor ranked
    assert rows[("random", "pointing_game")]["mean"] == 1.0 and rows[("random", "deletion")]["mean"] < 0.02
    for metric in ("pointing_game", "deletion"):
        assert rows[("random", metric)]["rank"] is None and not rows[("random", metric)]["best"]
        assert rows[("random", metric)]["control"] and not rows[("a_cam", metric)]["control"]
        assert rows[("a_cam", metric)]["best"] and rows[("a_cam", metric)]["rank"] == 1
    assert rows[("b&cam", "pointing_game")]["rank"] == 2 and rows[("c%cam", "pointing_game")]["rank"] == 3
    assert rows[("c%cam", "deletion")]["rank"] == 2 and rows[("b&cam", "deletion")]["rank"] == 3


def test_pairwise_tests_are_holm_corrected_per_metric():
    from statsmodels.stats.multitest import multipletests

    comparison = hand_made()
    pairs = comparison.pairwise()
    ranked = ["a_cam", "b&cam", "c%cam"]
    for metric, values in (("pointing_game", PG), ("deletion", DEL)):
        rows = [r for r in pairs if r["metric"] == metric]
        # the family: every pair of ranked methods, controls left out
        assert [(r["method_a"], r["method_b"]) for r in rows] == [
            ("a_cam", "b&cam"), ("a_cam", "c%cam"), ("b&cam", "c%cam")]
        raw = []
        for r in rows:
            a = torch.tensor(values[r["method_a"]], dtype=torch.float64)
            b = torch.tensor(values[r["method_b"]], dtype=torch.float64)
            raw.append(wilcoxon(a, b).p_value)
        assert [r["p"] for r in rows] == pytest.approx(raw)
        assert [r["p_holm"] for r in rows] == pytest.approx(list(multipletests(raw, method="holm")[1]))
        # the summary's p vs best is the raw test, p_holm its adjusted value in that family
        summary = {r["method"]: r for r in comparison.summary(n_resamples=100) if r["metric"] == metric}
        for m in ranked[1:]:
            pair = next(r for r in rows if {r["method_a"], r["method_b"]} == {"a_cam", m})
            assert summary[m]["p_vs_best"] == pytest.approx(pair["p"])
            assert summary[m]["p_holm"] == pytest.approx(pair["p_holm"])
        assert math.isnan(summary["a_cam"]["p_holm"]) and math.isnan(summary["random"]["p_holm"])
    # deletion, by hand: a < c < b on every image, so each exact two-sided p is 2 / 2^6 = 1 / 32;
    # Holm over 3 tests: 3/32, then max(3/32, 2/32), then max(3/32, 1/32) -> all 3 / 32
    rows = [r for r in pairs if r["metric"] == "deletion"]
    assert [r["p"] for r in rows] == pytest.approx([1 / 32] * 3)
    assert [r["p_holm"] for r in rows] == pytest.approx([3 / 32] * 3)


def test_rank_agreement_by_hand():
    comparison = hand_made()
    (row,) = comparison.rank_agreement(comparison.summary(n_resamples=100))
    # pointing game means: a 5/6, b 3/6, c 1/6 (higher better) -> order a, b, c;
    # deletion means: a 0.175, b 0.305, c 0.253 (lower better) -> order a, c, b.
    # signed scores: pg (5, 3, 1)/6, -del (-0.175, -0.305, -0.253): pairs (a,b) C, (a,c) C, (b,c) D
    assert row == {"metric_a": "pointing_game", "metric_b": "deletion", "tau": pytest.approx(1 / 3), "n": 3}


def test_curve_bands_per_method():
    bands = hand_made().curve_bands("deletion", n_resamples=300)
    assert list(bands) == METHODS
    assert bands["a_cam"].mean[2] == pytest.approx(sum(DEL["a_cam"]) / 6)
    assert bands["a_cam"].low[2] < bands["a_cam"].mean[2] < bands["a_cam"].high[2]
    assert bands["a_cam"].low[0] == bands["a_cam"].high[0] == 1.0


def _cells(row: str) -> list[str]:
    """The cells of a tabular row, split at & that are not escaped (\\&)."""
    return re.split(r"(?<!\\)&", row)


def test_summary_tex_parses_as_a_booktabs_table_body():
    tex = render_latex(hand_made())
    lines = [ln for ln in tex.splitlines() if ln and not ln.startswith("%")]
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lcr]+)\}", lines[0])
    assert spec and lines[-1] == r"\end{tabular}"
    body = lines[1:-1]
    assert body[0] == r"\toprule" and body[2] == r"\midrule" and body[-1] == r"\bottomrule"
    assert body.count(r"\toprule") == 1 and body.count(r"\bottomrule") == 1
    rows = [ln for ln in body if not ln.startswith("\\") or ln.startswith(r"\textit")]
    assert len(rows) == 1 + 4  # header + 3 methods + 1 control
    columns = len(spec.group(1))
    assert columns == 3  # method, pointing game, deletion
    for row in rows:
        assert row.endswith(r" \\") and len(_cells(row[:-3])) == columns, row
        # braces balance, and no unescaped special character is left
        assert row.count("{") - row.count(r"\{") == row.count("}") - row.count(r"\}")
        assert not re.search(r"(?<!\\)[%#_]", row) and "$\\" not in row.replace("$\\uparrow$", "").replace(
            "$\\downarrow$", "")
    # the controls come after their own \midrule, italic and not ranked; the best is bold
    control = next(j for j, ln in enumerate(body) if ln.startswith(r"\textit{random} (control) & 1.000"))
    assert body[control - 1] == r"\midrule" and control > 3 and r"\textbf" not in body[control]
    assert r"a\_cam & \textbf{0.833}" in tex and r"b\&cam" in tex and r"c\%cam" in tex
    assert r"Pointing game $\uparrow$" in tex and r"Deletion AUC $\downarrow$" in tex
    assert tex_escape("50%_a&b#{x}~^\\") == (r"50\%\_a\&b\#\{x\}\textasciitilde{}\textasciicircum{}"
                                            r"\textbackslash{}")


def test_summary_md_is_a_markdown_table():
    md = render_markdown(hand_made())
    rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert rows[1] == "|---|---:|---:|"
    assert all(ln.count("|") - ln.count("\\|") == 4 for ln in rows)
    assert rows[2].startswith(r"| a\_cam | **0.833** [") and "| *random* (control) |" in md
    assert md.index("a\\_cam") < md.index("c%cam") < md.index("*random*")


def test_written_files_include_md_tex_pairwise_agreement(tmp_path):
    comparison = hand_made()
    paths = write_outputs(comparison, tmp_path)
    assert {"summary.md", "summary.tex", "pairwise.csv", "agreement.csv", "report.html"} <= set(paths)
    with open(paths["summary.csv"], newline="") as handle:
        rows = {(r["method"], r["metric"]): r for r in csv.DictReader(handle)}
    assert rows[("random", "deletion")]["rank"] == "" and rows[("random", "deletion")]["control"] == "True"
    with open(paths["pairwise.csv"], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6
    page = paths["report.html"].read_text()
    assert "dog_1 (1, p=0.50)" not in page  # no thumbnails here: no grid, no image pages
    assert 'id="curve-deletion"' in page and "ci-band" in page
    assert 'id="curves"' in page and "Insertion" not in page  # only the requested curve panel


def test_to_pandas(monkeypatch):
    comparison = hand_made()
    frame = comparison.to_pandas()
    assert len(frame) == 6 * 4 * 2 and set(frame.columns) >= {"index", "method", "metric", "value",
                                                             "target_name"}
    assert frame.loc[frame["index"] == 1, "target_name"].iloc[0] == "dog_1"
    assert len(comparison.to_pandas("pairwise")) == 6
    assert comparison.to_pandas("summary").set_index(["method", "metric"]).loc[
        ("a_cam", "pointing_game"), "rank"] == 1
    with pytest.raises(ValueError, match="what must be one of"):
        comparison.to_pandas("tables")
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(MissingDependencyError, match="pip install pandas"):
        comparison.to_pandas()


def test_class_names(tmp_path):
    from xcam.evaluation.models import class_names, model_class_names

    assert hand_made().class_name(1) == "dog_1" and hand_made().class_name(7) == "class 7"
    (tmp_path / "names.txt").write_text("cat\ndog\n\n")
    assert class_names(tmp_path / "names.txt") == ["cat", "dog"]
    (tmp_path / "names.json").write_text('{"0": ["n01", "tench"], "1": ["n02", "goldfish"]}')
    assert class_names(str(tmp_path / "names.json")) == ["tench", "goldfish"]
    (tmp_path / "gap.json").write_text('{"0": "a", "2": "c"}')
    with pytest.raises(ValueError, match="names no class 1"):
        class_names(str(tmp_path / "gap.json"))
    with pytest.raises(TypeError, match="classes must be a list of names"):
        class_names(3)
    imagenet = class_names("imagenet")
    assert len(imagenet) == 1000 and imagenet[0] == "tench"
    from torchvision.models import ResNet18_Weights

    assert class_names(ResNet18_Weights.IMAGENET1K_V1) == imagenet  # weights.meta["categories"]
    assert model_class_names("resnet18", "DEFAULT") == imagenet  # no download: the enum's metadata
    assert model_class_names("efficientnet_lite0", "DEFAULT") == imagenet
    assert model_class_names("resnet18", "none") is None


def test_cli_classes_option(tmp_path):
    import argparse

    from xcam.cli.commands import _classes, build_parser

    args = build_parser().parse_args(["compare", "data.csv", "--model", "resnet18", "--out", "o",
                                      "--classes", str(tmp_path / "names.txt")])
    assert args.classes == str(tmp_path / "names.txt") and _classes(args) == args.classes
    ns = argparse.Namespace(classes=None, model="resnet18", weights="DEFAULT")
    assert _classes(ns)[:2] == ["tench", "goldfish"]  # from the weights' metadata, no download
    assert _classes(argparse.Namespace(classes=None, model="tests.nets:tiny", weights="DEFAULT")) is None
