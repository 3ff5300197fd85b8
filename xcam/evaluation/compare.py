"""Compare explainers on a data set: every image x every method x every metric, resumable.

::

    result = xcam.compare(model, "images.csv", methods=["gradcam", "gradcampp"],
                          metrics=["pointing_game", "deletion"], out="runs/cmp")
    result.table()      # tidy rows: {"index", "image", "method", "metric", "value"}
    result.summary()    # per method x metric: mean, 95 % bootstrap CI, rank, paired test vs best
    result.timing()     # per method: seconds and forward passes per image

How a run proceeds, image by image (one image at a time, so that results do not depend on how
images are grouped into batches or shared between processes):

1. the image is read (upright, RGB; see :func:`xcam.data.load_images`), brought to the model
   input's geometry with its boxes (squashed, or resized and center-cropped as ``preprocess``
   says), scaled, and run once through the model in eval mode; its target class is chosen
   (``targets=``);
2. every method explains it, and every metric scores that map (faithfulness metrics reuse the
   clean forward pass);
3. one JSON line per (image, method) is appended to ``out/records.jsonl`` (``records.rank{r}.jsonl``
   per process under torchrun; no other file counts) and flushed. A re-run with the same ``out``
   skips every pair already written, so an interrupted run resumes where it stopped; a
   half-written or unreadable record is reported with a warning and redone. An image that cannot
   be read (missing, empty, truncated, not an image, a decompression bomb), or a method that fails
   on one image, is recorded with its error and skipped; the run goes on, and a resume does not
   retry it.

The run folder is compare's alone: it never deletes or replaces a file it did not write (a
``table.csv`` of your own, say) unless ``overwrite=True``.

Controls (``blank``, ``random``, ``center``, ``edges``) are added to the methods unless ``controls=False``.
Every metric is driven by its metadata (:class:`xcam.metrics.Metric`: ``needs``, ``scope``,
``curves``, ``baseline_label``, ...), so that compare names none of them: a metric with a baseline
(the pointing game's center point) has it scored for every image with ground truth; a
``sample_only`` metric (the sanity check ``model_parameter_randomization``) runs on the first
``sanity_images`` images once per method; a data-set scope metric (MaxBoxAcc) stores per-image
parts and builds its score over the images a table or summary selects.

Scale-out: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1), :func:`compare` joins the
process group (gloo on CPU, nccl on GPU), takes images ``i`` with ``i % N == rank``, writes
``records.rank{r}.jsonl``, and gathers every record on every rank; rank 0 writes the table, the
summary and the report, which equal a single-process run's.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import math
import os
import platform
import re
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__
from .._checks import eval_mode
from ..errors import InputError, InputTypeError, MissingDependencyError, XcamError, warn
from ..methods.controls import CONTROL_NAMES
from ..metrics.base import Metric, MetricInputs
from ..metrics.stats import CurveBand
from ..outputs import OutputFn, logits
from ..registry import EXPLAINERS, METRICS
from .data import ImageData, load_data
from .report import (
    LEDGER,
    OUTPUT_FILES,
    foreign_outputs,
    is_control,
    output_files,
    read_ledger,
    write_outputs,
)

__all__ = [
    "compare",
    "Comparison",
    "CompareError",
    "ResumeError",
    "RunFolderError",
    "RECORD_FILE",
    "DEFAULT_METHODS",
    "DEFAULT_METRICS",
    "CONTROLS",
    "sanity_layers",
    "RunConfig",
]

DEFAULT_METHODS = ("gradcam", "gradcampp")
CONTROLS = CONTROL_NAMES  # blank, random, center, edges: the floors every method must beat
DEFAULT_METRICS = (
    "pointing_game",
    "energy_pointing_game",
    "max_box_acc",
    "deletion",
    "insertion",
    "average_drop",
    "increase_in_confidence",
)
TARGET_POLICIES = ("auto", "label", "predicted")
# 2: records keep per-metric parts, baselines and sample-only records under the metric's name
_FORMAT = 2


class CompareError(XcamError, RuntimeError):
    """A comparison cannot go on (e.g. a method failed on every image it tried)."""


class ResumeError(XcamError, ValueError):
    """``out`` holds results computed with other settings."""


class RunFolderError(XcamError, FileExistsError):
    """``out`` is a file, or holds files that compare did not write and would replace."""


#: the record files of a run, and nothing else: ``records.jsonl`` or ``records.rank{r}.jsonl``
RECORD_FILE = re.compile(r"records(\.rank[0-9]+)?\.jsonl")


# --------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _aggregated(metric: Metric[..., Any], items: list[dict[str, Any]],
                settings: Mapping[str, Any]) -> dict[tuple[int, str], float]:
    """Per (image, method) values of a data-set scope metric from the parts stored in ``items``.

    Items without parts (no ground truth) stay NaN; the mean of the others equals the metric's
    data-set score on those images (:meth:`xcam.metrics.Metric.aggregate`).
    """
    out = {(it["index"], it["method"]): float("nan") for it in items}
    scored = [it for it in items if (parts := it.get("parts", {}).get(metric.name)) is not None
              and not math.isnan(parts[0])]
    if not scored:
        return out
    parts = torch.tensor([it["parts"][metric.name] for it in scored], dtype=torch.float64)  # (N, T)
    for it, v in zip(scored, metric.aggregate(parts, **settings).tolist()):
        out[(it["index"], it["method"])] = v
    return out


def _pairwise_rows(name: str, methods: list[str], vectors: dict[str, Tensor]) -> list[dict[str, Any]]:
    """Paired Wilcoxon tests between every two of ``methods`` on metric ``name``, Holm-corrected.

    The family is the ``k (k - 1) / 2`` comparisons of the ``k`` methods on this metric; ``p_holm`` is
    the Holm-Bonferroni step-down adjustment over it (:func:`xcam.metrics.holm`). A pair with no
    image where both are defined has NaN p-values and does not count in the family.
    """
    from ..metrics import holm, wilcoxon

    rows: list[dict[str, Any]] = []
    raw: list[float] = []
    nan = float("nan")
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            try:
                test = wilcoxon(vectors[a], vectors[b])
                stat, p, n, diff = test.statistic, test.p_value, test.n, test.median_difference
            except InputError:
                stat, p, n, diff = nan, nan, 0, nan
            rows.append({"metric": name, "method_a": a, "method_b": b, "n": n, "statistic": stat,
                         "median_difference": diff, "p": p, "p_holm": nan})
            raw.append(p)
    if rows:
        for row, adjusted in zip(rows, holm(raw).tolist()):
            row["p_holm"] = adjusted
    return rows


def _ranked_rows(name: str, higher: bool, methods: list[str], vectors: dict[str, Tensor],
                 confidence: float, n_resamples: int, seed: int,
                 pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows of metric ``name``: per method the mean, CI, rank and paired test vs the best.

    Controls (:func:`xcam.report.is_control`) get a mean and CI but no rank: the best method and
    the ranks are among the other methods only. ``p_vs_best`` is the raw paired test against the
    best method (for a control too); ``p_holm`` its Holm-adjusted value within ``pairs``, the
    family of comparisons between the ranked methods.
    """
    from ..metrics import mean_ci, wilcoxon

    stats = {m: (vec, mean_ci(vec, confidence, n_resamples, seed=seed) if len(vec) else None)
             for m, vec in vectors.items()}
    means = {m: s[1].mean for m, s in stats.items()
             if s[1] is not None and not math.isnan(s[1].mean) and not is_control(m)}
    ordered = sorted(means.values(), reverse=higher)
    best = None
    if means:
        best = min(means, key=lambda m: (-means[m] if higher else means[m], methods.index(m)))
    adjusted = {frozenset((r["method_a"], r["method_b"])): r["p_holm"] for r in pairs}
    rows = []
    nan = float("nan")
    for m in methods:
        vec, ci = stats[m]
        rank = ordered.index(means[m]) + 1 if m in means else None
        p = nan
        if best is not None and m != best and ci is not None and not math.isnan(ci.mean):
            try:
                p = wilcoxon(stats[best][0], vec).p_value
            except InputError:
                p = nan
        rows.append({
            "method": m, "metric": name, "higher_is_better": higher, "control": is_control(m),
            "mean": ci.mean if ci else nan, "ci_low": ci.low if ci else nan,
            "ci_high": ci.high if ci else nan, "n": ci.n if ci else 0,
            "rank": rank, "best": m == best, "p_vs_best": p,
            "p_holm": adjusted.get(frozenset((best, m)), nan) if best is not None else nan,
        })
    return rows


@dataclass
class Comparison:
    """Everything a comparison produced.

    Attributes:
        methods: method labels, in the order given (controls last).
        metrics: metric names, in the order given.
        images: one record per image (``index``, ``image`` key, ``label``, ``target``,
            ``predicted``, ``gt_fraction``, ``status``, ``error``), sorted by index.
        items: one record per (image, method): ``scores`` per metric, ``curves``, ``seconds``,
            ``forward_passes``, ``status`` / ``error``; sorted by (index, method order).
        sanity: one record per method and ``sample_only`` metric (``method``, ``metric``,
            ``images``, ``per_image`` scores, and the metric's details: for the randomization
            check ``layers``, ``spearman`` and ``ssim``, per layer the mean over the images).
        provenance: versions, seeds, model, layers, hyper-parameters, data.
        out: the output folder, if any.
        classes: the class names, index -> name, when known (``compare(classes=...)``).
    """

    methods: list[str]
    metrics: list[str]
    images: list[dict[str, Any]]
    items: list[dict[str, Any]]
    sanity: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    classes: list[str] | None = None

    # ---- per-image table ----------------------------------------------------------------

    def _selected(self, subset: Callable[[dict[str, Any]], bool] | Iterable[int] | None) -> set[int]:
        ok = [img for img in self.images if img.get("status") == "ok"]
        if subset is None:
            return {img["index"] for img in ok}
        if callable(subset):
            return {img["index"] for img in ok if subset(img)}
        wanted = {int(i) for i in subset}
        return {img["index"] for img in ok if img["index"] in wanted}

    def _values(self, name: str, indices: set[int]) -> dict[tuple[int, str], float]:
        """``{(image index, method): value}`` of metric ``name`` on the images ``indices``.

        A ``sample_only`` metric reads its per-image scores from the sample records; a data-set
        scope metric builds them from the stored parts over ``indices`` (:meth:`Metric.aggregate`:
        their mean is the data-set score on those images); any other metric reads the item scores.
        """
        metric = _metric(name)
        if metric.sample_only:
            out: dict[tuple[int, str], float] = {}
            for rec in self.sanity:
                if rec.get("status") == "ok" and rec.get("metric") == name:
                    for i, v in zip(rec["images"], rec["per_image"]):
                        out[(i, rec["method"])] = v
            return out
        items = [it for it in self.items if it.get("status") == "ok" and it["index"] in indices]
        if metric.scope == "dataset":
            settings = self.provenance.get("metrics", {}).get(name, {}) or {}
            return {key: v for m in self.methods
                    for key, v in _aggregated(metric, [it for it in items if it["method"] == m],
                                              settings).items()}
        return {(it["index"], it["method"]): it["scores"].get(name, float("nan")) for it in items}

    def table(
        self, subset: Callable[[dict[str, Any]], bool] | Iterable[int] | None = None
    ) -> list[dict[str, Any]]:
        """Tidy rows ``{"index", "image", "method", "metric", "value"}``, one per image x method x metric.

        Sorted by image index, then method and metric order. NaN where a metric is undefined (no
        box, or the method failed on that image).

        Args:
            subset: images to keep: a predicate on the image record (e.g.
                ``lambda img: img["gt_fraction"] < 0.25``) or indices. A data-set scope metric
                (``max_box_acc``) builds its per-image values within the subset.

        Returns:
            The rows, as dicts.
        """
        indices = self._selected(subset)
        keys = {img["index"]: img["image"] for img in self.images}
        values = {name: self._values(name, indices) for name in self.metrics}
        rows = []
        nan = float("nan")
        for i in sorted(indices):
            for m in self.methods:
                for name in self.metrics:
                    value = values[name].get((i, m), nan)
                    rows.append({"index": i, "image": keys[i], "method": m, "metric": name,
                                 "value": nan if value is None else float(value)})
        return rows

    # ---- summary ------------------------------------------------------------------------

    def summary(
        self,
        subset: Callable[[dict[str, Any]], bool] | Iterable[int] | None = None,
        confidence: float = 0.95,
        n_resamples: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Per method x metric: mean, bootstrap CI, rank and a paired test against the best.

        Rows ``{"method", "metric", "higher_is_better", "mean", "ci_low", "ci_high", "n", "rank",
        "best", "p_vs_best"}``: ``rank`` 1 is the best mean in the metric's direction (ties share
        the lower rank); ``p_vs_best`` is the two-sided paired Wilcoxon signed-rank p-value between
        this method and the best one over the images where both are defined (NaN for the best).
        A metric with a baseline (the pointing game's center point) is followed by a row whose
        method is the metric's ``baseline_label`` (no rank).

        Args:
            subset: images to keep (see :meth:`table`).
            confidence: level of the bootstrap confidence interval.
            n_resamples: bootstrap resamples.

        Returns:
            The rows, as dicts.
        """
        seed = int(self.provenance.get("seed", 0) or 0)
        vectors = self._vectors(subset)
        indices = self._selected(subset)
        out: list[dict[str, Any]] = []
        for name in self.metrics:
            metric = _metric(name)
            pairs = _pairwise_rows(name, self.ranked_methods, vectors[name])
            out += _ranked_rows(name, bool(metric.higher_is_better), self.methods, vectors[name],
                                confidence, n_resamples, seed, pairs)
            if metric.has_baseline:
                out.append(self._baseline_row(metric, indices, confidence, n_resamples, seed))
        return out

    @property
    def ranked_methods(self) -> list[str]:
        """The methods that are ranked: every method but the controls, in order."""
        return [m for m in self.methods if not is_control(m)]

    def _vectors(self, subset: Callable[[dict[str, Any]], bool] | Iterable[int] | None
                 ) -> dict[str, dict[str, Tensor]]:
        """``{metric: {method: (N,) float64 scores}}`` over the selected images, in index order."""
        values: dict[tuple[str, str], dict[int, float]] = {}
        for r in self.table(subset):
            values.setdefault((r["method"], r["metric"]), {})[r["index"]] = r["value"]
        indices = sorted(self._selected(subset))
        return {name: {m: torch.tensor([values.get((m, name), {}).get(i, float("nan")) for i in indices],
                                       dtype=torch.float64) for m in self.methods}
                for name in self.metrics}

    def pairwise(
        self, subset: Callable[[dict[str, Any]], bool] | Iterable[int] | None = None
    ) -> list[dict[str, Any]]:
        """Paired tests between every two ranked methods, per metric, Holm-corrected per metric.

        Rows ``{"metric", "method_a", "method_b", "n", "statistic", "median_difference", "p",
        "p_holm"}``: the two-sided paired Wilcoxon signed-rank test (:func:`xcam.metrics.wilcoxon`)
        over the images where both are defined (``median_difference`` of a - b), and its
        Holm-Bonferroni adjustment (Holm 1979) over the family of the ``k (k - 1) / 2`` comparisons
        of that metric (:func:`xcam.metrics.holm`). Controls are left out (they are not ranked).

        Args:
            subset: images to keep (see :meth:`table`).
        """
        vectors = self._vectors(subset)
        return [row for name in self.metrics
                for row in _pairwise_rows(name, self.ranked_methods, vectors[name])]

    def rank_agreement(self, summary: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """How far the metrics agree on the order of the methods: Kendall's tau per metric pair.

        Rows ``{"metric_a", "metric_b", "tau", "n"}``: tau-b (:func:`xcam.metrics.kendall_tau`)
        between the ranked methods' means on the two metrics, each signed so that larger is better;
        ``n`` methods defined on both. 1: the same order; -1: reversed; NaN with fewer than two
        methods. Controls are left out.

        Args:
            summary: the rows of :meth:`summary`, when the caller has them already.
        """
        from ..metrics import kendall_tau

        rows = summary if summary is not None else self.summary()
        ranked = self.ranked_methods
        signed: dict[str, list[float]] = {}
        for name in self.metrics:
            sign = 1.0 if _metric(name).higher_is_better else -1.0
            means = {r["method"]: r["mean"] for r in rows if r["metric"] == name}
            signed[name] = [sign * float(means.get(m, float("nan"))) for m in ranked]
        out = []
        for i, a in enumerate(self.metrics):
            for b in self.metrics[i + 1:]:
                n = sum(1 for x, y in zip(signed[a], signed[b]) if not (math.isnan(x) or math.isnan(y)))
                tau = kendall_tau(signed[a], signed[b]) if ranked else float("nan")
                out.append({"metric_a": a, "metric_b": b, "tau": tau, "n": n})
        return out

    def class_name(self, index: int | None) -> str:
        """The name of class ``index`` (``classes``), or ``"class {index}"`` when unknown."""
        if index is None:
            return "–"
        if self.classes is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return f"class {index}"

    def to_pandas(
        self, what: str = "table",
        subset: Callable[[dict[str, Any]], bool] | Iterable[int] | None = None,
    ) -> Any:
        """A table of the comparison as a ``pandas.DataFrame`` (pandas must be installed).

        Args:
            what: ``"table"`` (tidy, one row per image x method x metric, with the image's target
                class and its name), ``"summary"``, ``"pairwise"``, ``"agreement"`` or ``"timing"``.
            subset: images to keep (see :meth:`table`); not for ``"timing"``.

        Raises:
            MissingDependencyError: pandas is not installed.
            InputError: unknown ``what``.
        """
        kinds = ("table", "summary", "pairwise", "agreement", "timing")
        if what not in kinds:
            raise InputError(f"to_pandas: what must be one of {kinds}, got {what!r}")
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError(
                "Comparison.to_pandas needs pandas, which is not installed: pip install pandas "
                "(or use Comparison.table(), a list of dicts)") from None
        if what == "table":
            targets = {img["index"]: img.get("target") for img in self.images}
            rows = [{**r, "target": targets.get(r["index"]),
                     "target_name": self.class_name(targets.get(r["index"]))} for r in self.table(subset)]
        elif what == "summary":
            rows = self.summary(subset)
        elif what == "pairwise":
            rows = self.pairwise(subset)
        elif what == "agreement":
            rows = self.rank_agreement(self.summary(subset))
        else:
            rows = self.timing()
        return pd.DataFrame(rows)

    def _baseline_row(self, metric: Metric[..., Any], indices: set[int], confidence: float,
                      n_resamples: int, seed: int) -> dict[str, Any]:
        """The summary row of ``metric``'s baseline over the images ``indices`` that have one."""
        from ..metrics import mean_ci

        scores = [img.get("baselines", {}).get(metric.name) for img in self.images
                  if img["index"] in indices]
        base = torch.tensor([v for v in scores if v is not None], dtype=torch.float64)
        ci = mean_ci(base, confidence, n_resamples, seed=seed) if len(base) else None
        nan = float("nan")
        return {
            "method": metric.baseline_label, "metric": metric.name,
            "higher_is_better": bool(metric.higher_is_better),
            "mean": ci.mean if ci else nan, "ci_low": ci.low if ci else nan,
            "ci_high": ci.high if ci else nan, "n": ci.n if ci else 0,
            "rank": None, "best": False, "p_vs_best": nan,
        }

    def timing(self) -> list[dict[str, Any]]:
        """Per method: images explained, seconds and forward passes per image.

        Mean seconds and forward passes (images through the model) per image for the explanation, and the
        same for the metrics.
        """
        rows = []
        for m in self.methods:
            ok = [it for it in self.items if it["method"] == m and it.get("status") == "ok"]
            n = len(ok)

            def mean(key: str, items: list[dict[str, Any]] = ok) -> float:
                return sum(float(it.get(key, 0.0)) for it in items) / len(items) if items else float("nan")

            rows.append({
                "method": m, "images": n,
                "failed": sum(1 for it in self.items if it["method"] == m and it.get("status") != "ok"),
                "seconds_per_image": mean("seconds"),
                "forward_passes_per_image": mean("forward_passes"),
                "metric_seconds_per_image": mean("metric_seconds"),
                "metric_forward_passes_per_image": mean("metric_forward_passes"),
                "layer": next((it.get("layer") for it in ok if it.get("layer")), None),
            })
        return rows

    def errors(self) -> list[dict[str, Any]]:
        """Images and (image, method) pairs that failed, with their error."""
        out = [{"index": img["index"], "image": img["image"], "method": None, "error": img.get("error")}
               for img in self.images if img.get("status") != "ok"]
        out += [{"index": it["index"], "image": it["image"], "method": it["method"],
                 "error": it.get("error")} for it in self.items if it.get("status") != "ok"]
        out += [{"index": None, "image": None, "method": r["method"], "error": r.get("error")}
                for r in self.sanity if r.get("status") != "ok"]
        return sorted(out, key=lambda r: (r["index"] if r["index"] is not None else -1,
                                          str(r["method"])))

    def mean_curves(self, kind: str) -> dict[str, list[float]]:
        """Mean deletion or insertion curve per method (``kind``: ``"deletion"``/``"insertion"``)."""
        out = {}
        for m in self.methods:
            curves = self._curves(kind, m)
            if curves:
                t = torch.tensor(curves, dtype=torch.float64)
                out[m] = t.mean(dim=0).tolist()
        return out

    def _curves(self, kind: str, method: str, index: int | None = None) -> list[list[float]]:
        return [it["curves"][kind] for it in self.items
                if it["method"] == method and it.get("status") == "ok" and kind in it.get("curves", {})
                and (index is None or it["index"] == index)]

    def curve_bands(self, kind: str, confidence: float = 0.95,
                    n_resamples: int = 2000) -> dict[str, CurveBand]:
        """Per method, the mean curve of metric ``kind`` with a pointwise bootstrap band.

        See :func:`xcam.metrics.mean_band` (seeded with the run's seed).
        """
        from ..metrics import mean_band

        seed = int(self.provenance.get("seed", 0) or 0)
        out = {}
        for m in self.methods:
            curves = self._curves(kind, m)
            if curves:
                out[m] = mean_band(torch.tensor(curves, dtype=torch.float64), confidence, n_resamples,
                                   seed=seed)
        return out

    def to_dict(self, summary: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Summary, timing, errors and provenance as plain JSON-ready data (NaN -> None).

        This is the content of ``summary.json``.

        Args:
            summary: the rows of :meth:`summary`, when the caller has them already.
        """
        data: dict[str, Any] = _nan_to_none({
            "methods": self.methods,
            "metrics": self.metrics,
            "summary": self.summary() if summary is None else summary,
            "timing": self.timing(),
            "errors": self.errors(),
            "sanity": [{k: v for k, v in r.items() if k != "kind"} for r in self.sanity],
            "provenance": self.provenance,
        })
        return data

    def write(self, out: str | os.PathLike[str] | None = None, report: bool = True,
              overwrite: bool = False) -> dict[str, Path]:
        """Write ``table.csv``, ``summary.csv``, ``summary.json`` and ``report.html``; returns their paths.

        Into ``out`` (default: the run's folder).

        A file of those names that xcam did not write is replaced only with ``overwrite=True`` (see
        :func:`xcam.report.check_outputs`).
        """
        folder = Path(out) if out is not None else self.out
        if folder is None:
            raise InputError("write: pass out= (this comparison ran without an output folder)")
        return write_outputs(self, folder, report=report, overwrite=overwrite)


# --------------------------------------------------------------------------------------------
# storage: JSON lines, appended and flushed one record at a time
# --------------------------------------------------------------------------------------------


def _record_files(folder: Path) -> list[Path]:
    """The run's own record files in ``folder`` (exactly :data:`RECORD_FILE`), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and RECORD_FILE.fullmatch(p.name))


_REQUIRED: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    # kind -> (keys of every record, keys of a record with status "ok")
    "image": ({"image": str, "status": str}, {"target": int}),
    "item": ({"image": str, "method": str, "status": str}, {"scores": dict}),
    "sanity": ({"method": str, "metric": str, "status": str}, {"images": list, "per_image": list}),
}


def _valid_record(rec: Any) -> bool:
    """A record of this format: a dict with a known ``kind`` and the keys the tables read."""
    if not isinstance(rec, dict) or rec.get("kind") not in _REQUIRED:
        return False
    always, when_ok = _REQUIRED[rec["kind"]]
    if any(not isinstance(rec.get(k), t) for k, t in always.items()):
        return False
    if rec["status"] == "ok":
        if any(not isinstance(rec.get(k), t) or isinstance(rec.get(k), bool) for k, t in when_ok.items()):
            return False
        if rec["kind"] == "item" and not all(isinstance(rec.get(k, {}), dict) for k in ("curves", "parts")):
            return False
    return True


class _Store:
    """The run's record files in ``out`` (:data:`RECORD_FILE`); this process appends to its own."""

    def __init__(self, out: Path | None, rank: int, world: int) -> None:
        self.out = out
        self.path = None if out is None else out / (
            "records.jsonl" if world == 1 else f"records.rank{rank}.jsonl")
        self._handle: Any = None

    def read_all(self) -> list[dict[str, Any]]:
        if self.out is None or not self.out.exists():
            return []
        records = []
        for path in _record_files(self.out):
            torn = bad = 0
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.endswith("\n"):
                        torn += 1  # the last line of a killed run: incomplete, redone
                        break
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        rec = None
                    if not _valid_record(rec):
                        bad += 1
                        continue
                    records.append(rec)
            if torn:
                warn(f"xcam.compare: {path} ends with a half-written record (a run stopped while "
                     "writing it); it is skipped and its work redone")
            if bad:
                warn(f"xcam.compare: {path} holds {bad} record(s) that are not JSON or lack keys of "
                     f"this xcam's format (an older or damaged file); they are skipped and their work "
                     "redone (pass overwrite=True to start the folder again)")
        return records

    def open(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut != len(data):  # drop a partial last line so that the next record starts clean
                with open(self.path, "r+b") as handle:
                    handle.truncate(cut)
        self._handle = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            return
        self._handle.write(json.dumps(record, allow_nan=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist() if value.numel() <= 16 else f"Tensor{tuple(value.shape)}"
    return repr(value)


def _metric(name: str) -> Metric[..., Any]:
    """The registered :class:`xcam.metrics.Metric` and its metadata."""
    metric = METRICS.get(name)
    if not isinstance(metric, Metric):
        raise InputTypeError(f"metric {name!r} is registered as {type(metric).__name__}, not an "
                             "xcam.metrics.Metric; register it with @xcam.metrics.metric(...)")
    return metric


def _describe(obj: Any) -> str:
    """A description that is the same from one run to the next (no memory addresses)."""
    from .models import Preprocess

    if isinstance(obj, (str, Preprocess)):
        return repr(obj)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{getattr(obj, '__module__', '?')}.{name}"


def _model_fingerprint(model: nn.Module) -> str:
    """A cheap identity of the weights: shapes and sums of every parameter and buffer."""
    h = hashlib.sha1()
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            h.update(f"{name}{tuple(t.shape)}".encode())
            if t.is_floating_point():
                h.update(f"{float(t.double().sum()):.9e}{float(t.double().abs().sum()):.9e}".encode())
    return h.hexdigest()[:16]


def sanity_layers(model: nn.Module) -> list[str]:
    """Blocks to re-initialize for the sanity check, output side first.

    The model's direct children that own parameters; a ``Sequential`` or ``ModuleList`` child is
    split into its own children (ResNet-18: ``fc, layer4, ..., layer1, bn1, conv1``). Coarser
    than :func:`xcam.metrics.cascade_layers` (every parametrised module), which can mean hundreds
    of explanations per image.
    """
    names: list[str] = []

    def owns(module: nn.Module) -> bool:
        return any(True for _ in module.parameters())

    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            names += [f"{name}.{n}" for n, c in child.named_children() if owns(c)]
        elif owns(child):
            names.append(name)
    return names[::-1]


class _ForwardCounter:
    """Counts the images that go through ``model``.

    A forward pre-hook on the root module, removed by :meth:`close`.
    """

    def __init__(self, model: nn.Module) -> None:
        self.n = 0
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], Tensor) and args[0].dim() >= 1:
            self.n += int(args[0].shape[0])

    def close(self) -> None:
        self._handle.remove()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _png_base64(rgb: Any) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise CompareError("could not encode a thumbnail as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _thumbnail(pixels: Tensor, size: int, saliency: Tensor | None = None) -> str:
    """Base64 PNG of the image (``pixels`` (3, H, W) in [0, 255]) or of a map's overlay on it."""
    import cv2
    import numpy as np

    full = pixels.detach().cpu().permute(1, 2, 0).clamp(0, 255).numpy().astype(np.uint8)
    img = cv2.resize(full, (size, size), interpolation=cv2.INTER_AREA)
    if saliency is None:
        return _png_base64(img)
    from ..viz import overlay

    m = saliency.detach().cpu().float().numpy()
    m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    return _png_base64(overlay(img, m, alpha=0.5))


def _parse_methods(
    methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]] | str | None,
    controls: bool,
) -> dict[str, str | Callable[[nn.Module], Any]]:
    """Label -> registered name or factory; controls appended."""
    if methods is None:
        spec: dict[str, str | Callable[[nn.Module], Any]] = {m: m for m in DEFAULT_METHODS}
    elif isinstance(methods, str):
        spec = {m.strip(): m.strip() for m in methods.split(",") if m.strip()}
    elif isinstance(methods, Mapping):
        spec = dict(methods)
        for label, factory in spec.items():
            if not isinstance(factory, str) and not callable(factory):
                raise InputTypeError(
                    f"methods[{label!r}] must be a registered name or a factory model -> explainer, "
                    f"got {type(factory).__name__}"
                )
    elif isinstance(methods, Sequence):
        spec = {}
        for m in methods:
            if not isinstance(m, str):
                raise InputTypeError(
                    f"methods must hold registered names (see xcam.list_explainers()), got {m!r}; "
                    "pass a dict {label: factory} for explainers built by your own code"
                )
            spec[m] = m
    else:
        raise InputTypeError(f"methods must be a list of names or a dict label -> factory, got "
                             f"{type(methods).__name__}")
    if not spec:
        raise InputError("methods is empty; pass at least one explainer name (xcam.list_explainers())")
    for name in spec.values():
        if isinstance(name, str):
            EXPLAINERS.get(name)  # unknown name: an error with a suggestion, before any work
    if controls:
        for c in CONTROLS:
            if c not in spec and c in EXPLAINERS:
                spec[c] = c
    return spec


def _parse_metrics(metrics: Sequence[str] | str | None) -> list[str]:
    if metrics is None:
        names = list(DEFAULT_METRICS)
    elif isinstance(metrics, str):
        names = [m.strip() for m in metrics.split(",") if m.strip()]
    elif isinstance(metrics, Sequence):
        names = list(metrics)
    else:
        raise InputTypeError(f"metrics must be a list of names, got {type(metrics).__name__}")
    for name in names:
        if not isinstance(name, str):
            raise InputTypeError(f"metrics must hold names (see xcam.list_metrics()), got {name!r}")
        METRICS.get(name)
    if len(set(names)) != len(names):
        raise InputError(f"metrics lists a name twice: {names}")
    return names


def _build_explainer(label: str, spec: str | Callable[[nn.Module], Any], model: nn.Module,
                     kwargs: dict[str, Any], seed: int,
                     output_fn: OutputFn | None = None) -> tuple[Any, dict[str, Any]]:
    """The explainer and the constructor kwargs actually used (seed and progress filled in)."""
    if not isinstance(spec, str):
        if kwargs:
            raise InputError(f"method_kwargs[{label!r}]: a factory method takes no kwargs; bind them "
                             "in the factory")
        explainer = spec(model)
        if not callable(explainer):
            raise InputTypeError(f"methods[{label!r}]: the factory returned {type(explainer).__name__}, "
                                 "not an explainer")
        return explainer, {}
    cls = EXPLAINERS.get(spec)
    params = inspect.signature(cls).parameters
    used = dict(kwargs)
    unknown = sorted(k for k in used if k not in params)
    if unknown:
        valid = [p for p in params if p not in ("self", "model")]
        raise InputError(f"method_kwargs[{label!r}]: {spec} takes no {unknown}; valid: {valid}")
    if "seed" in params and "seed" not in used:
        used["seed"] = seed
    if "progress" in params and "progress" not in used:
        used["progress"] = False
    extra = {"output": output_fn} if output_fn is not None and "output" in params else {}
    return cls(model, **used, **extra), used


def _metric_kwargs(name: str, user: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The settings metric ``name`` runs with.

    The user's, checked against its ``settings``, plus its defaults (``seed``).
    """
    m = _metric(name)
    kw = dict(user)
    bad = sorted((set(kw) - set(m.parameters)) | (set(kw) & m.data_parameters))
    if bad:
        raise InputError(f"metric_kwargs[{name!r}]: {sorted(bad)} cannot be set; valid: {list(m.settings)}")
    for key, value in m.default_kwargs(seed).items():
        kw.setdefault(key, value)
    return kw


# --------------------------------------------------------------------------------------------
# distributed
# --------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    created: bool = False

    def gather(self, payload: Any) -> list[Any]:
        if self.world == 1:
            return [payload]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, payload)
        return out

    def broadcast(self, value: Any) -> Any:
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _join(distributed: bool | None, device: torch.device | None) -> tuple[_Dist, torch.device | None]:
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if distributed is False or (distributed is None and world <= 1):
        return _Dist(), device
    import torch.distributed as dist

    if not dist.is_available():
        raise CompareError("torch.distributed is not available in this PyTorch build")
    created = False
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise CompareError(
                "distributed=True needs the torchrun environment (MASTER_ADDR, RANK, WORLD_SIZE); "
                "start with `torchrun --nproc_per_node N -m xcam compare ...`"
            )
        use_cuda = (device.type == "cuda") if device is not None else torch.cuda.is_available()
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        created = True
    elif dist.get_backend() == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return _Dist(dist.get_rank(), dist.get_world_size(), created), device


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """The settings of one run, checked and resolved by :func:`compare`.

    Attributes:
        spec: method label -> registered name or factory ``model -> explainer`` (controls included).
        metrics: metric names, in order.
        metric_kwargs: the settings each metric runs with (defaults filled in).
        method_kwargs: the user's constructor arguments per method label.
        preprocess: pixels in [0, 255] (B, 3, H, W) -> model input.
        size: the model input's (height, width).
        targets: the target policy (``"auto"``, ``"label"``, ``"predicted"``) or a class index.
        seed: seeds explainers, metrics and the bootstrap.
        device: where the model runs.
        out: the run folder, or None.
        grid_images: the first images get thumbnails.
        thumbnail: the thumbnails' side in pixels.
        sanity_images: images of the ``sample_only`` metrics.
        sanity_layer_names: blocks they re-initialize, or None for :func:`sanity_layers`.
        max_failures: failures in a row, without a success, that stop the run.
        progress: show a progress bar (None: when stderr is a terminal).
        overwrite: start the folder again.
        report: write ``report.html``.
        model_name: recorded in the provenance.
        output_fn: picks (B, classes) scores from the model's output, or None.
        classes: class names, index -> name, or None.
    """

    spec: dict[str, str | Callable[[nn.Module], Any]]
    metrics: list[str]
    metric_kwargs: dict[str, dict[str, Any]]
    method_kwargs: dict[str, dict[str, Any]]
    preprocess: Callable[[Tensor], Tensor]
    size: tuple[int, int]
    targets: str | int
    seed: int
    device: torch.device
    out: Path | None = None
    grid_images: int = 8
    thumbnail: int = 112
    sanity_images: int = 4
    sanity_layer_names: Sequence[str] | None = None
    max_failures: int = 10
    progress: bool | None = None
    overwrite: bool = False
    report: bool = True
    model_name: str | None = None
    output_fn: OutputFn | None = None
    classes: list[str] | None = None

    @property
    def labels(self) -> list[str]:
        """The method labels, in order."""
        return list(self.spec)

    @property
    def per_image_metrics(self) -> list[str]:
        """The metrics scored on every (image, method) pair."""
        return [n for n in self.metrics if not _metric(n).sample_only]

    @property
    def sample_metrics(self) -> list[str]:
        """The metrics run once per method on the first ``sanity_images`` images."""
        return [n for n in self.metrics if _metric(n).sample_only]


@dataclass
class _Image:
    index: int
    x: Tensor
    pixels: Tensor
    output: Tensor
    target: int
    boxes: list[list[float]]


class _Runner:
    """Prepares images, explains them and scores the maps; counts forward passes."""

    def __init__(self, model: nn.Module, data: ImageData, cfg: RunConfig,
                 explainers: dict[str, Any]) -> None:
        from .models import Preprocess

        self.model = model
        self.data = data
        self.cfg = cfg
        self.geometry = cfg.preprocess if isinstance(cfg.preprocess, Preprocess) else None
        self.explainers = explainers
        self.counter = _ForwardCounter(model)

    def close(self) -> None:
        self.counter.close()

    # ---- one image ----

    def _target(self, key: str, label: int | None, predicted: int, n_classes: int) -> int:
        """The class to explain, by the target policy."""
        policy = self.cfg.targets
        if isinstance(policy, int):
            target = policy
        elif policy == "predicted" or (policy == "auto" and label is None):
            target = predicted
        elif label is None:
            raise InputError(f"targets='label' but image {key!r} has no label; use "
                             "targets='auto' (label when known, else the top class)")
        else:
            target = label
        if not 0 <= target < n_classes:
            raise InputError(
                f"target class {target} of image {key!r} is outside the model's {n_classes} "
                "outputs; check the labels (ImageFolder labels are sub-folder indices) or use "
                "targets='predicted'"
            )
        return target

    def _forward(self, key: str, x: Tensor) -> Tensor:
        """The model's (1, classes) scores on ``x``, checked."""
        with torch.no_grad():
            output = logits(self.model(x), self.cfg.output_fn)
        if output.dim() != 2 or output.shape[0] != 1:
            raise CompareError(f"the model must return (B, classes) scores; it returned "
                               f"{tuple(output.shape)} (pass output= to pick them from its output)")
        output = output.detach().float()
        if not bool(torch.isfinite(output).all()):
            raise CompareError(f"the model's output on image {key!r} holds NaN or infinite "
                               "values (check the weights and the preprocessing)")
        return output

    def prepare(self, index: int) -> tuple[_Image, dict[str, Any]]:
        """Read, preprocess and run image ``index``; returns it and its record."""
        sample = self.data[index]
        loaded = self.data.load(index, self.cfg.size, preprocess=self.geometry)
        pixels = loaded.pixels
        x = self.cfg.preprocess(pixels[None].to(self.cfg.device))
        output = self._forward(sample.key, x)
        probs = output.softmax(dim=1)[0]
        predicted = int(probs.argmax())
        target = self._target(sample.key, sample.label, predicted, int(output.shape[1]))
        record: dict[str, Any] = {
            "kind": "image", "image": sample.key, "index": index, "status": "ok",
            "label": sample.label, "target": target, "predicted": predicted,
            "probability": float(probs[target]), "n_boxes": len(loaded.boxes),
            "gt_fraction": loaded.gt_fraction() if loaded.boxes else None,
            "original_size": list(loaded.original_size), "baselines": {},
            "boxes": [[round(float(v), 2) for v in box] for box in loaded.boxes],
        }
        for key in ("exif_orientation", "dropped_boxes"):
            if key in loaded.info:
                record[key] = loaded.info[key]
        if loaded.boxes:
            data = MetricInputs(ground_truth=[loaded.boxes], image_size=self.cfg.size)
            for name in self.cfg.metrics:
                metric = _metric(name)
                if metric.has_baseline:
                    scores = metric.baseline_scores(data, **self.cfg.metric_kwargs.get(name, {}))
                    record["baselines"][name] = float(scores[0])
        if index < self.cfg.grid_images:
            record["thumbnail"] = _thumbnail(pixels, self.cfg.thumbnail)
        return _Image(index, x, pixels, output, target, loaded.boxes), record

    # ---- one (image, method) ----

    def _explain_map(self, img: _Image, label: str, target: Tensor) -> tuple[Any, Tensor, float, int]:
        """Run explainer ``label`` on the image: (result, checked (1, H, W) map, seconds, passes)."""
        size = self.cfg.size
        self.counter.n = 0
        _sync(self.cfg.device)
        start = time.perf_counter()
        result = self.explainers[label](img.x, target)
        _sync(self.cfg.device)
        seconds = time.perf_counter() - start
        maps = getattr(result, "maps", result)
        if not isinstance(maps, Tensor) or tuple(maps.shape) != (1, *size):
            got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            raise CompareError(f"{label}: expected maps of shape (1, {size[0]}, {size[1]}), got {got}")
        maps = maps.detach().float()
        if not bool(torch.isfinite(maps).all()):
            raise CompareError(f"{label}: the map holds NaN or infinite values")
        return result, maps, seconds, self.counter.n

    def explain(self, img: _Image, label: str) -> dict[str, Any]:
        """Explain the image with method ``label`` and score the map with every per-image metric."""
        target = torch.tensor([img.target], device=self.cfg.device)
        result, maps, seconds, passes = self._explain_map(img, label, target)
        record: dict[str, Any] = {
            "kind": "item", "image": self.data[img.index].key, "index": img.index, "method": label,
            "status": "ok", "layer": getattr(result, "layer", None),
            "seconds": seconds, "forward_passes": passes, "scores": {}, "curves": {}, "parts": {},
        }
        self.counter.n = 0
        start = time.perf_counter()
        data = MetricInputs(
            maps=maps, ground_truth=[img.boxes] if img.boxes else None, model=self.model,
            inputs=img.x, targets=target, explainer=self.explainers[label], clean_output=img.output,
            output=self.cfg.output_fn, image_size=self.cfg.size)
        for name in self.cfg.per_image_metrics:
            self._score(name, data, record)
        _sync(self.cfg.device)
        record["metric_seconds"] = time.perf_counter() - start
        record["metric_forward_passes"] = self.counter.n
        if img.index < self.cfg.grid_images:
            record["overlay"] = _thumbnail(img.pixels, self.cfg.thumbnail, maps[0])
        return record

    def _score(self, name: str, data: MetricInputs, record: dict[str, Any]) -> None:
        """Score one map with metric ``name`` into ``record`` (scores, curves, parts).

        A metric that needs ground truth scores NaN on an image without any.
        """
        metric = _metric(name)
        if "ground_truth" in metric.needs and data.ground_truth is None:
            record["scores"][name] = float("nan")
            if metric.scope == "dataset":
                record["parts"][name] = [float("nan")]
            return
        per_image = metric.per_image(metric.run(data, **self.cfg.metric_kwargs.get(name, {})))
        record["scores"][name] = float(per_image.scores[0])
        if per_image.curves is not None:
            record["curves"][name] = [round(v, 6) for v in per_image.curves[0].tolist()]
        if per_image.parts is not None:
            record["parts"][name] = [round(v, 6) for v in per_image.parts[0].tolist()]


def compare(
    model: nn.Module,
    data: Any,
    methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]] | str | None = None,
    metrics: Sequence[str] | str | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    image_size: int | None = None,
    targets: str | int = "auto",
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    metric_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    controls: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    columns: str | Mapping[str, str] | None = None,
    limit: int | None = None,
    grid_images: int = 8,
    thumbnail: int = 112,
    sanity_images: int = 4,
    sanity_layer_names: Sequence[str] | None = None,
    max_failures: int = 10,
    progress: bool | None = None,
    overwrite: bool = False,
    report: bool = True,
    distributed: bool | None = None,
    model_name: str | None = None,
    output: OutputFn | None = None,
    classes: Any = None,
) -> Comparison:
    """Explain every image with every method, score every map with every metric.

    Args:
        model: a classifier returning (B, classes) scores; put it in eval mode. It is moved to
            ``device``.
        data: a folder, a ``.csv`` manifest with boxes, a ``torchvision`` ``ImageFolder``, a list
            of paths, or an :class:`xcam.data.ImageData` (see :func:`xcam.data.load_data`).
        methods: registered explainer names (default ``("gradcam", "gradcampp")``), a
            comma-separated string, or a dict ``{label: factory}`` with ``factory(model) ->
            explainer``. Controls are appended unless ``controls=False``.
        metrics: registered metric names (default: pointing game, energy pointing game,
            MaxBoxAcc, deletion, insertion, average drop, increase in confidence). Localization
            metrics are NaN for images without boxes. ``"model_parameter_randomization"`` runs on
            the first ``sanity_images`` images; ``"random_logit"`` and ``"max_sensitivity"`` per
            image.
        out: folder for the records (resumable), the table, summary and report; ``None`` keeps
            everything in memory. The folder is compare's alone: it reads only its own record
            files (``records.jsonl``, ``records.rank{r}.jsonl``) and never deletes or replaces a
            file it did not write (unless ``overwrite=True``).
        preprocess: how an image becomes the model's input, geometry included: an
            :class:`xcam.models.Preprocess`, torchvision ``weights.transforms()``, a torchvision /
            timm ``Compose``, a Hugging Face image processor (see
            :meth:`xcam.models.Preprocess.from_transform`); ground-truth boxes follow its resize
            and center crop. A plain callable maps pixels in [0, 255] (B, 3, H, W) to the model
            input and must keep H and W (images are squashed to ``image_size``). Default: ImageNet
            mean / std, squashed to 224, with a warning.
        image_size: the model input's side (default: the preprocessing's, or 224); a resize before
            a center crop scales with it.
        targets: ``"auto"`` (the label when the data has one, else the top class),
            ``"label"``, ``"predicted"``, or one class index for every image.
        method_kwargs: constructor arguments per method label, e.g. ``{"scorecam": {"batch_size":
            32}}``. Stochastic explainers get ``seed=seed`` unless given.
        metric_kwargs: arguments per metric, e.g. ``{"deletion": {"steps": 50}}``. Stochastic
            metrics get ``seed=seed`` unless given.
        controls: add the ``blank``, ``random``, ``center`` and ``edges`` controls.
        seed: seeds explainers, metrics and the bootstrap.
        device: where to run (default: where the model's parameters are).
        columns: the column mapping of a manifest (see :func:`xcam.data.load_data`).
        limit: only the first ``limit`` images (see :func:`xcam.data.load_data`).
        grid_images: the first images get thumbnails for the report's grid.
        thumbnail: side of those thumbnails in pixels.
        sanity_images: images used by ``model_parameter_randomization``.
        sanity_layer_names: blocks it re-initializes, output side first (default
            :func:`sanity_layers`).
        max_failures: a method that fails on this many images in a row without one success stops
            the run (a systematic error rather than a bad image).
        progress: show a tqdm progress bar (default: when stderr is a terminal).
        overwrite: delete the records already in ``out`` instead of resuming.
        report: write ``report.html`` as well as the CSV / JSON files (rank 0 only).
        distributed: ``None`` joins a process group when ``WORLD_SIZE`` > 1; ``False`` never.
        model_name: recorded in the provenance (and checked when resuming).
        output: a callable ``f(model_output) -> (B, classes) Tensor`` for models whose output
            :func:`xcam.outputs.logits` cannot read; passed on to every explainer and metric that
            takes ``output=``.
        classes: the class names the report and tables show for the targets: a list, a names
            file (one per line, or JSON), ``"imagenet"``, or a torchvision weights enum (its
            ``meta["categories"]``); see :func:`xcam.models.class_names`. Not part of the run's
            settings: a resume may add or change them.

    The model runs in eval mode inside (:func:`xcam._checks.eval_mode`): its training flags are
    restored on return, and its batch-norm buffers are never updated.

    Returns:
        :class:`Comparison` (on every rank).

    Raises:
        ResumeError: ``out`` holds results computed with other settings (pass ``overwrite=True``
            or another ``out``).
        RunFolderError: ``out`` is a file, or holds a file compare did not write that it would
            replace (pass ``overwrite=True`` or another ``out``).
        CompareError: a method failed on its first ``max_failures`` images.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if targets not in TARGET_POLICIES and not (isinstance(targets, int) and not isinstance(targets, bool)):
        raise InputError(f"targets must be one of {TARGET_POLICIES} or a class index, got {targets!r}")
    for name, value in (("grid_images", grid_images), ("sanity_images", sanity_images)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name} must be an int >= 0, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputTypeError(f"seed must be an int, got {seed!r}")
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool)
                                   or image_size < 1):
        raise InputError(f"image_size must be an int >= 1 (the model input's side) or None, got "
                         f"{image_size!r}")
    if output is not None and not callable(output):
        raise InputTypeError(f"output must be a callable f(model_output) -> (B, classes) tensor, got "
                             f"{type(output).__name__}")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise RunFolderError(f"out {str(out)!r} is a file, not a folder; pass a folder (it is created "
                             "when missing)")
    from .models import class_names

    names = class_names(classes)
    preprocess, size = _resolve_preprocess(preprocess, image_size)
    spec = _parse_methods(methods, controls)
    metric_names = _parse_metrics(metrics)
    user_method_kwargs = {k: dict(v) for k, v in (method_kwargs or {}).items()}
    unknown = sorted(set(user_method_kwargs) - set(spec))
    if unknown:
        raise InputError(f"method_kwargs names {unknown}, which are not among the methods {list(spec)}")
    user_metric_kwargs = {k: dict(v) for k, v in (metric_kwargs or {}).items()}
    unknown = sorted(set(user_metric_kwargs) - set(metric_names))
    if unknown:
        raise InputError(f"metric_kwargs names {unknown}, which are not among the metrics {metric_names}")
    mkw = {name: _metric_kwargs(name, user_metric_kwargs.get(name, {}), seed) for name in metric_names}
    dataset = load_data(data, columns=columns, limit=limit)

    first: torch.device = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    ctx, joined = _join(distributed, first)
    cfg = RunConfig(
        spec=spec, metrics=metric_names, metric_kwargs=mkw, method_kwargs=user_method_kwargs,
        preprocess=preprocess, size=size, targets=targets, seed=seed,
        device=joined if joined is not None else first, out=Path(out) if out is not None else None,
        grid_images=grid_images, thumbnail=thumbnail, sanity_images=sanity_images,
        sanity_layer_names=sanity_layer_names, max_failures=max_failures, progress=progress,
        overwrite=overwrite, report=report, model_name=model_name, output_fn=output, classes=names)
    try:
        with eval_mode(model):  # flags restored on return; batch-norm buffers never updated
            return _run(model, dataset, cfg, ctx)
    finally:
        ctx.close()


def _resolve_preprocess(preprocess: Any, image_size: int | None) -> tuple[Callable[[Tensor], Tensor],
                                                                        tuple[int, int]]:
    """The preprocessing compare uses, and the model input's (height, width)."""
    from .models import Preprocess

    if preprocess is None:
        default = Preprocess.named("imagenet", image_size or 224)
        warn(f"xcam.compare: no preprocess given; using ImageNet mean / std with images squashed to "
             f"{default.hw[0]} x {default.hw[1]} (Preprocess.named('imagenet')); pass the model's own, "
             "e.g. preprocess=weights.transforms() (torchvision), a timm transform or a Hugging Face "
             "image processor")
        return default, default.hw
    prep: Preprocess | None
    try:
        prep = Preprocess.from_transform(preprocess)
    except InputTypeError:
        if not callable(preprocess):
            raise InputTypeError(
                f"preprocess must be an xcam.models.Preprocess, torchvision weights.transforms(), a "
                f"torchvision / timm Compose, a Hugging Face image processor or a callable, got "
                f"{type(preprocess).__name__}") from None
        prep = None
    if prep is not None:
        if image_size is not None:
            prep = prep.with_size(image_size)
        return prep, prep.hw
    # a plain callable: pixels in [0, 255] (B, 3, H, W) -> model input, H and W kept
    side = int(image_size or getattr(preprocess, "size", 224) or 224)
    probe = torch.full((1, 3, side, side), 127.0)
    try:
        shape = tuple(preprocess(probe).shape)
    except Exception as err:  # noqa: BLE001 - re-raised with the contract it broke
        raise InputError(
            f"preprocess {_describe(preprocess)} failed on a (1, 3, {side}, {side}) tensor of pixels "
            f"in [0, 255] ({type(err).__name__}: {err}); a plain callable takes such tensors, or pass "
            "torchvision weights.transforms() / an xcam.models.Preprocess") from err
    if len(shape) != 4 or shape[-2:] != (side, side):
        raise InputError(
            f"preprocess {_describe(preprocess)} turned (1, 3, {side}, {side}) pixels into {shape}: "
            "it resizes or crops, and boxes cannot follow a plain callable; pass torchvision "
            "weights.transforms(), a timm / Hugging Face preprocessing or an xcam.models.Preprocess("
            "size=..., resize=...), which compare applies to images and boxes together")
    return preprocess, (side, side)


def _run(model: nn.Module, dataset: ImageData, cfg: RunConfig, ctx: _Dist) -> Comparison:
    """Start or resume the run folder, do the work of this process, gather and write the result."""
    model = model.to(cfg.device)
    _start_folder(model, cfg, ctx)
    store = _Store(cfg.out, ctx.rank, ctx.world)
    done = _Done.read(store, dataset, cfg.spec)
    explainers: dict[str, Any] = {}
    used_kwargs: dict[str, dict[str, Any]] = {}
    for label, s in cfg.spec.items():
        explainers[label], used_kwargs[label] = _build_explainer(
            label, s, model, cfg.method_kwargs.get(label, {}), cfg.seed, cfg.output_fn)
    runner = _Runner(model, dataset, cfg, explainers)
    stopped: BaseException | None = None
    try:
        _Work(runner, store, done, ctx, used_kwargs).run()
    except Exception as err:  # noqa: BLE001 - re-raised in _gather, after the other ranks know
        if ctx.world == 1:
            raise
        stopped = err
    finally:
        runner.close()
    images, items, sanity, layers = _gather(ctx, cfg, done, explainers, stopped)
    provenance = _provenance(model, dataset, cfg, ctx, explainers, used_kwargs, layers, items)
    result = Comparison(cfg.labels, cfg.metrics, images, items, sanity, provenance, cfg.out, cfg.classes)
    if cfg.classes is not None:
        beyond = sorted({t for img in images
                         if (t := img.get("target")) is not None and t >= len(cfg.classes)})
        if beyond and ctx.rank == 0:
            warn(f"xcam.compare: classes names {len(cfg.classes)} classes, but target {beyond[0]} is "
                 "beyond them (shown as 'class N'); pass the names of every output of the model")
    if ctx.rank == 0 and cfg.out is not None:
        result.write(cfg.out, report=cfg.report, overwrite=cfg.overwrite)
    n_bad = len(result.errors())
    if n_bad and ctx.rank == 0:
        warn(f"xcam.compare: {n_bad} image(s) or (image, method) pairs failed and were skipped; see "
             "Comparison.errors()" + (f" or {cfg.out / 'summary.json'}" if cfg.out else ""))
    return result


def _start_folder(model: nn.Module, cfg: RunConfig, ctx: _Dist) -> None:
    """Rank 0 checks (or starts) the run folder; every rank gets the verdict and raises it."""
    fingerprint = {
        "format": _FORMAT,
        "model": cfg.model_name or type(model).__name__,
        "weights": _model_fingerprint(model),
        "image_size": list(cfg.size),
        "preprocess": _describe(cfg.preprocess),
        "targets": cfg.targets,
        "seed": cfg.seed,
        "metrics": _jsonable(cfg.metric_kwargs),
        # a definition change (issue 12: MaxBoxAcc above t, fractional ties) never mixes on resume
        "metric_versions": {name: _metric(name).version for name in cfg.metrics},
        "methods": {label: {"name": _describe(s) if not isinstance(s, str) else s,
                            "kwargs": _jsonable(cfg.method_kwargs.get(label, {}))}
                    for label, s in cfg.spec.items()},
    }
    verdict = None
    if ctx.rank == 0 and cfg.out is not None:
        verdict = _check_run_folder(cfg.out, fingerprint, cfg.overwrite, cfg.report)
    verdict = ctx.broadcast(verdict)
    if verdict:
        kind, message = verdict
        raise (ResumeError if kind == "resume" else RunFolderError)(message)
    ctx.barrier()


@dataclass
class _Done:
    """The records of the run so far: per image, per (image, method), per (method, metric) sample."""

    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    items: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    sanity: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, store: _Store, dataset: ImageData, spec: Mapping[str, Any]) -> _Done:
        """The records in the store's files of the images in ``dataset`` and the methods in ``spec``.

        A successful record wins over a failed one of the same work.
        """
        done = cls()
        keys = {s.key: i for i, s in enumerate(dataset)}
        for rec in store.read_all():
            kind = rec.get("kind")
            if kind == "sanity":
                if rec.get("method") in spec:
                    done.sanity.setdefault((rec["method"], str(rec.get("metric"))), rec)
                continue
            if rec.get("image") not in keys:
                continue
            rec["index"] = keys[rec["image"]]
            if kind == "image":
                _keep(done.images, rec["index"], rec)
            elif kind == "item" and rec.get("method") in spec:
                _keep(done.items, (rec["index"], rec["method"]), rec)
        return done


def _keep(records: dict[Any, dict[str, Any]], key: Any, rec: dict[str, Any]) -> None:
    """Store ``rec`` under ``key`` unless a record is there already that is not a failure."""
    prev = records.get(key)
    if prev is None or (prev.get("status") != "ok" and rec.get("status") == "ok"):
        records[key] = rec


class _Work:
    """This process's share of the run: every (image, method) left to do, then the samples."""

    def __init__(self, runner: _Runner, store: _Store, done: _Done, ctx: _Dist,
                 used_kwargs: dict[str, dict[str, Any]]) -> None:
        self.runner = runner
        self.cfg = runner.cfg
        self.store = store
        self.done = done
        self.used_kwargs = used_kwargs
        labels = self.cfg.labels
        mine = [i for i in range(len(runner.data)) if i % ctx.world == ctx.rank]
        self.todo: dict[int, list[str]] = {}
        for i in mine:
            if done.images.get(i, {}).get("status") == "error":
                continue
            for m in labels:
                if (i, m) not in done.items:
                    self.todo.setdefault(i, []).append(m)
        self.samples = [(m, name) for name in self.cfg.sample_metrics for j, m in enumerate(labels)
                        if j % ctx.world == ctx.rank and (m, name) not in done.sanity
                        and self.cfg.sanity_images > 0]
        self.failures = {m: 0 for m in labels}
        self.successes = {m: 0 for m in labels}
        self.bad_images = self.good_images = 0
        wanted = self.cfg.progress if self.cfg.progress is not None else sys.stderr.isatty()
        self.show = wanted and ctx.rank == 0

    def run(self) -> None:
        """Explain and score what is left, then run the sample-only metrics; records are appended."""
        from tqdm import tqdm

        n = sum(len(v) for v in self.todo.values()) + len(self.samples)
        bar = tqdm(total=n, desc="xcam compare", unit="map", disable=not self.show, dynamic_ncols=True)
        self.store.open()
        try:
            for i, methods in self.todo.items():
                bar.set_postfix_str(self.runner.data[i].key[-40:], refresh=False)
                self._image(i, methods, bar)
            for label, name in self.samples:
                rec = _sanity(self.runner, label, name, self.used_kwargs[label])
                self.store.append(rec)
                self.done.sanity[(label, name)] = rec
                bar.update(1)
        finally:
            bar.close()
            self.store.close()

    def _image(self, i: int, methods: list[str], bar: Any) -> None:
        """Image ``i`` with ``methods``: its record, then one record per method."""
        key = self.runner.data[i].key
        try:
            img, img_record = self.runner.prepare(i)
            self.good_images += 1
        except (XcamError, OSError, ValueError, RuntimeError) as err:
            rec = {"kind": "image", "image": key, "index": i, "status": "error",
                   "error": f"{type(err).__name__}: {err}"}
            self.store.append(rec)
            self.done.images[i] = rec
            bar.update(len(methods))
            self.bad_images += 1
            if self.good_images == 0 and self.bad_images >= self.cfg.max_failures:
                raise CompareError(
                    f"the first {self.bad_images} images all failed; last error: {rec['error']} "
                    "(check the data, the model's output and targets=)"
                ) from err
            return
        if self.done.images.get(i, {}).get("status") != "ok":
            self.store.append(img_record)
            self.done.images[i] = img_record
        for m in methods:
            self.store.append(self._item(img, key, m))
            bar.update(1)

    def _item(self, img: _Image, key: str, m: str) -> dict[str, Any]:
        """The record of method ``m`` on the image; stops the run when ``m`` fails every time."""
        try:
            rec = self.runner.explain(img, m)
            self.successes[m] += 1
        except (XcamError, ValueError, RuntimeError, TypeError, IndexError, OSError) as err:
            rec = {"kind": "item", "image": key, "index": img.index, "method": m, "status": "error",
                   "error": f"{type(err).__name__}: {err}"}
            self.failures[m] += 1
            if self.successes[m] == 0 and self.failures[m] >= self.cfg.max_failures:
                self.store.append(rec)
                raise CompareError(
                    f"method {m!r} failed on its first {self.failures[m]} images; last error: "
                    f"{rec['error']} (fix the method's settings with method_kwargs, or leave it out)"
                ) from err
        self.done.items[(img.index, m)] = rec
        return rec


def _gather(ctx: _Dist, cfg: RunConfig, done: _Done, explainers: dict[str, Any],
            stopped: BaseException | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                    list[dict[str, Any]], dict[str, Any]]:
    """Every rank's records, sorted, and the layer each explainer used; raises a rank's failure."""
    labels = cfg.labels
    layers = {}
    for m, e in explainers.items():
        params = e.params() if hasattr(e, "params") else {}
        layers[m] = params.get("layer") if isinstance(params, dict) else None
    payload = (
        [r for i, r in done.images.items() if i % ctx.world == ctx.rank],
        [r for (i, _), r in done.items.items() if i % ctx.world == ctx.rank],
        [r for (m, _), r in done.sanity.items() if labels.index(m) % ctx.world == ctx.rank],
        layers,
        None if stopped is None else f"rank {ctx.rank}: {type(stopped).__name__}: {stopped}",
    )
    # every rank reaches this collective, also one that failed, so that none waits forever
    gathered = ctx.gather(payload)
    if stopped is not None:
        raise stopped
    failed = [g[4] for g in gathered if g[4]]
    if failed:
        raise CompareError(f"another process stopped the run: {failed[0]}; what was written is kept "
                           "(re-run to resume)")
    order = {m: j for j, m in enumerate(labels)}
    metric_order = {n: j for j, n in enumerate(cfg.metrics)}
    images = sorted((r for g in gathered for r in g[0]), key=lambda r: r["index"])
    items = sorted((r for g in gathered for r in g[1]), key=lambda r: (r["index"], order[r["method"]]))
    sanity = sorted((r for g in gathered for r in g[2]),
                    key=lambda r: (metric_order.get(r.get("metric"), -1), order[r["method"]]))
    for g in gathered:
        for m, layer in g[3].items():
            if layer is not None:
                layers[m] = layer
    return images, items, sanity, layers


def _check_run_folder(folder: Path, fingerprint: dict[str, Any], overwrite: bool,
                      report: bool) -> tuple[str, str] | None:
    """Start ``folder`` or check that it holds a run with the same settings.

    Returns ``(kind, message)`` of an error (kind ``"resume"`` or ``"folder"``) or None.

    The folder is compare's alone: its record files (:data:`RECORD_FILE`), ``run.json`` and the
    outputs listed in ``xcam-outputs.json``. Nothing else in it is read, deleted or replaced;
    ``overwrite`` deletes only compare's own files and lets the outputs replace files of the same
    names.
    """
    if folder.exists() and not folder.is_dir():
        return ("folder", f"out {str(folder)!r} is a file, not a folder; pass a folder (it is created "
                          "when missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return ("folder", f"out {str(folder)!r} cannot be created ({err}); pass a folder")
    run_file = folder / "run.json"
    ours = False
    if run_file.is_file():
        try:
            ours = isinstance(json.loads(run_file.read_text(encoding="utf-8")), dict)
        except (ValueError, OSError):
            ours = False
    if overwrite:
        _clear_run(folder)
    else:
        records = _record_files(folder)
        if records and not ours:
            return ("folder", f"out {str(folder)!r} holds {records[0].name} but no run.json of a compare "
                              "run: xcam did not write it and will not add to it; pass overwrite=True "
                              "(CLI: --overwrite) to replace it, or another output folder")
        foreign = foreign_outputs(folder, output_files(report))
        if foreign:
            return ("folder", f"out: {str(foreign[0])!r} exists and was not written by xcam (or was "
                              "changed since); xcam will not replace it: pass overwrite=True (CLI: "
                              "--overwrite) to replace it, or another output folder")
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            previous = None
        if isinstance(previous, dict):
            mismatch = _settings_mismatch(folder, previous, fingerprint)
            if mismatch:
                return ("resume", mismatch)
            old = previous.get("methods", {})
            fingerprint = {**fingerprint, "methods": {**(old if isinstance(old, dict) else {}),
                                                      **fingerprint["methods"]}}
    tmp = run_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(fingerprint), indent=2))
    os.replace(tmp, run_file)
    return None


def _clear_run(folder: Path) -> None:
    """Delete compare's own files in ``folder``: records, ``run.json``, the ledger, the outputs it lists."""
    ledger = read_ledger(folder) or {}
    for path in _record_files(folder):
        path.unlink()
    for name in ledger:
        if name in OUTPUT_FILES and (folder / name).is_file():
            (folder / name).unlink()
    for path in (folder / "run.json", folder / LEDGER):
        if path.is_file():
            path.unlink()


def _settings_mismatch(folder: Path, previous: dict[str, Any], fingerprint: dict[str, Any]) -> str | None:
    """Why the run in ``folder`` (its ``run.json``: ``previous``) cannot be resumed now, or None.

    Every setting must be the same; a method label that both runs have must have the same settings
    (new labels may be added to a run).
    """
    for key in fingerprint:
        if key == "methods":
            continue
        if previous.get(key) != _jsonable(fingerprint[key]):
            return (f"{folder} holds results computed with another {key} "
                    f"({previous.get(key)!r}, now {_jsonable(fingerprint[key])!r}); pass "
                    "overwrite=True (CLI: --overwrite) to start again, or another output folder")
    old = previous.get("methods", {})
    if not isinstance(old, dict):
        old = {}
    for label, entry in fingerprint["methods"].items():
        if label in old and old[label] != _jsonable(entry):
            return (f"{folder} holds results of method {label!r} computed with "
                    f"other settings ({old[label]!r}, now {entry!r}); pass overwrite=True "
                    "(--overwrite), another output folder, or another label")
    return None


def _sample_images(runner: _Runner) -> tuple[list[int], list[Tensor], list[int]]:
    """The first ``sanity_images`` readable images: (indices, inputs, targets)."""
    idx: list[int] = []
    xs: list[Tensor] = []
    tg: list[int] = []
    for i in range(len(runner.data)):
        if len(xs) == runner.cfg.sanity_images:
            break
        try:
            img, _ = runner.prepare(i)
        except (XcamError, OSError, ValueError, RuntimeError):
            continue
        idx.append(i)
        xs.append(img.x)
        tg.append(img.target)
    return idx, xs, tg


def _sanity(runner: _Runner, label: str, name: str, used_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run the ``sample_only`` metric ``name`` on method ``label`` over the first images.

    The metric gets the explainer by registered name (or factory) and re-creates it for each
    model it changes; a ``layers`` setting defaults to ``sanity_layer_names`` or
    :func:`sanity_layers`, an ``explainer_kwargs`` setting to the explainer's own arguments.
    """
    cfg = runner.cfg
    metric = _metric(name)
    spec = cfg.spec[label]
    idx, xs, tg = _sample_images(runner)
    record: dict[str, Any] = {"kind": "sanity", "method": label, "metric": name, "images": idx}
    try:
        if not xs:
            raise CompareError(f"no readable image for {name}")
        x = torch.cat(xs)
        settings = dict(cfg.metric_kwargs.get(name, {}))
        if "layers" in metric.settings and not settings.get("layers"):
            settings["layers"] = list(cfg.sanity_layer_names or sanity_layers(runner.model))
        if "explainer_kwargs" in metric.settings and isinstance(spec, str):
            settings["explainer_kwargs"] = _explainer_kwargs(spec, used_kwargs, runner.explainers[label])
        result = metric.run(MetricInputs(model=runner.model, explainer=spec, inputs=x,
                                         targets=torch.tensor(tg, device=x.device)), **settings)
        per_image = metric.per_image(result)
        record.update({"status": "ok", **_jsonable(dict(per_image.details or {})),
                       "per_image": [float(v) for v in per_image.scores.tolist()]})
    except (XcamError, ValueError, RuntimeError, TypeError) as err:
        record.update({"status": "error", "error": f"{type(err).__name__}: {err}"})
    return record


def _explainer_kwargs(spec: str, used_kwargs: dict[str, Any], explainer: Any) -> dict[str, Any]:
    """The constructor arguments that re-create ``explainer`` (its resolved layer included)."""
    ekw = dict(used_kwargs)
    layer = explainer.params().get("layer") if hasattr(explainer, "params") else None
    takes_layer = "layer" in inspect.signature(EXPLAINERS.get(spec)).parameters
    if takes_layer and ekw.get("layer") is None and layer is not None:
        ekw["layer"] = layer
    return ekw


def _provenance(model: nn.Module, dataset: ImageData, cfg: RunConfig, ctx: _Dist,
                explainers: dict[str, Any], used_kwargs: dict[str, dict[str, Any]],
                layers: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """Versions, settings, model, data and methods of the run, as JSON-ready data."""
    import torchvision

    seen_layers = {it["method"]: it.get("layer") for it in items if it.get("layer")}
    methods = {}
    for label, e in explainers.items():
        params = e.params() if hasattr(e, "params") else {}
        methods[label] = {
            "class": type(e).__name__,
            "params": _jsonable({**used_kwargs.get(label, {}), **(params or {})}),
            "layer": seen_layers.get(label) or layers.get(label),
        }
    provenance: dict[str, Any] = _jsonable({
        "xcam": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(cfg.device),
        "world_size": ctx.world,
        "seed": cfg.seed,
        "model": {"name": cfg.model_name or type(model).__name__, "class": type(model).__name__,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "fingerprint": _model_fingerprint(model)},
        "preprocess": _describe(cfg.preprocess),
        "image_size": list(cfg.size),
        "targets": cfg.targets,
        "data": dataset.describe(),
        "methods": methods,
        "metrics": cfg.metric_kwargs,
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    })
    return provenance


class _CallableModule(types.ModuleType):
    """``xcam.compare`` is this module, and calling it calls :func:`compare`.

    The lazy package attribute and ``import xcam.compare`` then agree on one object.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Comparison:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
