"""The result of a comparison: :class:`Comparison` (tidy table, summary, timing, errors, curves)."""

from __future__ import annotations

import base64
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, MissingDependencyError
from ..metrics.base import Metric
from ..metrics.stats import CurveBand
from .report import is_control, write_outputs
from .spec import metric_of

__all__ = ["Comparison"]


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
        metric = metric_of(name)
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
            metric = metric_of(name)
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
            sign = 1.0 if metric_of(name).higher_is_better else -1.0
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
        return write_outputs(self.with_pictures_inline() if report else self, folder, report=report,
                             overwrite=overwrite)

    def with_pictures_inline(self) -> Comparison:
        """A copy whose thumbnails and overlays are base64 PNG data instead of file paths.

        The records point to PNG files beside them (``thumbnails/``, ``overlays/`` in :attr:`out`);
        the report embeds them so that ``report.html`` stands alone. A missing file is left out.
        """

        def inline(rec: dict[str, Any], key: str) -> dict[str, Any]:
            value = rec.get(key)
            if not isinstance(value, str) or not value.endswith(".png") or self.out is None:
                return rec
            path = self.out / value
            rec = {k: v for k, v in rec.items() if k != key}
            if path.is_file():
                rec[key] = base64.b64encode(path.read_bytes()).decode("ascii")
            return rec

        return dataclasses.replace(self, images=[inline(r, "thumbnail") for r in self.images],
                                   items=[inline(r, "overlay") for r in self.items])

