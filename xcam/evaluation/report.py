r"""Reports of a comparison: one self-contained HTML file, plus CSV, JSON, Markdown and LaTeX.

:func:`write_outputs` writes, into a folder:

- ``table.csv``: the tidy per-image table (index, image, method, metric, value);
- ``summary.csv``: per method x metric, the mean, its 95 % bootstrap CI, rank (controls are not
  ranked) and the paired test against the best method, raw and Holm-corrected;
- ``summary.md`` and ``summary.tex``: the same as a table for a paper (Markdown; a booktabs
  ``tabular`` to ``\input``), controls and baselines apart;
- ``pairwise.csv``: per metric, the paired test between every two ranked methods, with the
  Holm-Bonferroni adjustment over that metric's family of comparisons;
- ``agreement.csv``: Kendall's tau between every two metrics' orders of the methods;
- ``timing.csv``: per method, seconds and forward passes per image;
- ``summary.json``: summary, timing, errors, sanity curves and provenance;
- ``report.html``: all of it in one file that works offline (inline SVG charts, an inline script,
  no network): the metrics table (click a header to sort it), the metrics' agreement, the image x
  method grid with ground-truth boxes (every map min-max normalized and colored with the same
  colormap, one color bar), a page per grid image (``report.html#image-N``: every method's map,
  its scores and its curves), the mean curves of the requested curve metrics with 95 %
  bootstrap bands, sanity-check curves, timing, errors and a provenance block;
- ``xcam-outputs.json``: the files above with their SHA-1, so that a later run knows which files
  are its own. A file of those names that xcam did not write (or that changed since) is never
  replaced unless ``overwrite=True`` (CLI ``--overwrite``).

CSV cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return are prefixed with
``'`` so that a spreadsheet shows them as text (CSV injection); numbers stay numbers.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Protocol

from ..errors import XcamError
from ..metrics.base import Metric
from ..registry import EXPLAINERS, METRICS
from .svgchart import Series, line_chart

__all__ = ["write_outputs", "render_html", "render_markdown", "render_latex", "tex_escape",
           "check_outputs", "foreign_outputs", "csv_cell", "OutputExistsError", "OUTPUT_FILES",
           "output_files", "LEDGER", "ComparisonLike", "read_ledger", "format_value", "is_control"]


class ComparisonLike(Protocol):
    """What a report reads of a comparison (:class:`xcam.compare.Comparison` is one).

    The report depends on this shape only, so that ``xcam.compare`` imports ``xcam.report`` and
    never the other way round.
    """

    methods: list[str]
    metrics: list[str]
    images: list[dict[str, Any]]
    items: list[dict[str, Any]]
    sanity: list[dict[str, Any]]
    provenance: dict[str, Any]

    def table(self) -> list[dict[str, Any]]:
        """Tidy rows, one per image x method x metric."""

    def summary(self) -> list[dict[str, Any]]:
        """Per method x metric: mean, CI, rank, paired test against the best (raw and Holm)."""

    def pairwise(self) -> list[dict[str, Any]]:
        """Per metric, the paired tests between every two ranked methods, Holm-corrected."""

    def rank_agreement(self, summary: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Kendall's tau between the metrics' orders of the ranked methods, per metric pair."""

    def timing(self) -> list[dict[str, Any]]:
        """Per method: seconds and forward passes per image."""

    def errors(self) -> list[dict[str, Any]]:
        """Images and (image, method) pairs that failed."""

    def curve_bands(self, kind: str) -> dict[str, Any]:
        """Per method, the mean curve of metric ``kind`` and its band (``mean``, ``low``, ``high``)."""

    def class_name(self, index: int | None) -> str:
        """The name of class ``index``."""

    def to_dict(self, summary: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Summary, timing, errors and provenance as JSON-ready data."""


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.name,th.name{text-align:left}
th.sortable{cursor:pointer;user-select:none}th.sortable:after{content:" \\21C5";color:#bbb;font-size:10px}
th[aria-sort=ascending]:after{content:" \\25B2";color:#333}
th[aria-sort=descending]:after{content:" \\25BC";color:#333}
td.best{font-weight:bold;background:#eaf6ea}tr.control td.name{color:#777;font-style:italic}
tbody.group td{background:#fafafa;color:#555;text-align:left;font-size:12px;font-style:italic}
tr.baseline td{color:#555;background:#fafafa}
.ci{color:#666;font-size:11px}.rank{color:#333;font-size:11px}.p{color:#888;font-size:10px;display:block}
.meta{color:#555}.legend{color:#555;font-size:12px;max-width:1100px}
.grid td{padding:2px;text-align:center}.grid th{font-size:11px}
.pic{position:relative;display:inline-block;width:112px;height:112px;vertical-align:top}
.pic img{display:block;width:100%;height:100%}
.pic svg.boxes{position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none}
rect.gt-box{fill:none;stroke:#00ff66;stroke-width:2;vector-effect:non-scaling-stroke}
.caption{font-size:11px;color:#444;max-width:112px;overflow-wrap:anywhere}
.colorbar{display:inline-block;width:240px;height:12px;vertical-align:middle;
 background:linear-gradient(to right,#00007f,#0000ff,#007fff,#00ffff,#7fff7f,#ffff00,#ff7f00,#ff0000,#7f0000)}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}
svg.chart{max-width:100%;height:auto;margin:4px 12px 4px 0}
.image-page{display:none}.image-page:target{display:block}
body:has(.image-page:target)>:not(.image-page:target):not(script){display:none}
.maps{display:flex;flex-wrap:wrap;gap:8px}.maps figure{margin:0}
"""

_SCRIPT = """
function xcamKey(row, col) {
  var cell = row.cells[col];
  if (!cell) return {num: NaN, text: ''};
  var raw = cell.getAttribute('data-value');
  var text = cell.textContent.trim();
  var num = raw !== null ? parseFloat(raw) : parseFloat(text);
  return {num: num, text: text};
}
function xcamSort(th) {
  var table = th.closest('table');
  var col = Array.prototype.indexOf.call(th.parentNode.children, th);
  var before = th.getAttribute('aria-sort');
  var dir;
  if (before === 'ascending') dir = 'descending';
  else if (before === 'descending') dir = 'ascending';
  else dir = th.getAttribute('data-higher') === '1' ? 'descending' : 'ascending';
  table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
  th.setAttribute('aria-sort', dir);
  var sign = dir === 'ascending' ? 1 : -1;
  table.querySelectorAll('tbody.sortable').forEach(function (body) {
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = xcamKey(a, col), y = xcamKey(b, col);
      var xn = isNaN(x.num), yn = isNaN(y.num), c;
      if (!xn && !yn) c = x.num - y.num;
      else if (xn && yn) c = x.text.localeCompare(y.text, undefined, {numeric: true});
      else return xn ? 1 : -1;  /* undefined values last, either way */
      if (c === 0) return Number(a.getAttribute('data-order')) - Number(b.getAttribute('data-order'));
      return sign * c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
}
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('th.sortable').forEach(function (th) {
    th.addEventListener('click', function () { xcamSort(th); });
    th.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); xcamSort(th); }
    });
  });
});
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-ok', String(ok));
  var rows = document.querySelectorAll('#metrics tbody.sortable tr').length;
  document.body.setAttribute('data-metric-rows', String(rows));
  document.getElementById('render-status').textContent =
    'rendered: ' + ok + ' of ' + imgs.length + ' pictures, ' + rows + ' metric rows';
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric(name: str) -> Metric[..., Any]:
    metric = METRICS.get(name)
    if not isinstance(metric, Metric):
        raise TypeError(f"metric {name!r} is registered as {type(metric).__name__}, not an "
                        "xcam.metrics.Metric")
    return metric


def is_control(method: str) -> bool:
    """``method`` names a registered control explainer, a floor every method must beat.

    Read from the class flag ``is_control`` (the random map, the center Gaussian, ...).
    """
    if method not in EXPLAINERS:
        return False
    return bool(getattr(EXPLAINERS.get(method), "is_control", False))


def format_value(value: Any, metric: str = "", digits: int = 3) -> str:
    """A score as shown in tables.

    ``"–"`` when undefined, x100 with one decimal for a metric whose ``unit`` is ``"%"``, else ``digits``
    decimals.
    """
    if not _finite(value):
        return "–"
    if metric and _metric(metric).unit == "%":
        return f"{100 * value:.1f}"
    return f"{value:.{digits}f}"


_fmt = format_value


def _label(metric: str) -> str:
    return _metric(metric).label


def _arrow(higher: bool) -> str:
    return "↑" if higher else "↓"


def _p(value: Any) -> str:
    return f"{value:.2g}" if _finite(value) else "–"


def _src(picture: str) -> str:
    """The ``src`` of a stored picture: a file beside the report (``*.png``) or base64 PNG data."""
    if picture.lower().endswith(".png") and not picture.startswith("data:"):
        return _e(picture)
    return f"data:image/png;base64,{picture}"


def _picture(picture: str | None, alt: str, title: str, boxes: list[list[float]] | None,
             size: tuple[int, int]) -> str:
    """A thumbnail with the ground-truth boxes drawn over it (an SVG in the model input's pixels)."""
    if not picture:
        return "–"
    h, w = size
    svg = ""
    if boxes:
        rects = "".join(f'<rect class="gt-box" x="{x0:g}" y="{y0:g}" width="{max(x1 - x0, 0):g}" '
                        f'height="{max(y1 - y0, 0):g}"/>' for x0, y0, x1, y1 in boxes)
        svg = (f'<svg class="boxes" viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
               f'aria-label="{len(boxes)} ground-truth box(es)">{rects}</svg>')
    return (f'<span class="pic"><img alt="{_e(alt)}" title="{_e(title)}" src="{_src(picture)}">'
            f"{svg}</span>")


def _size(comparison: ComparisonLike) -> tuple[int, int]:
    size = comparison.provenance.get("image_size") or [224, 224]
    return int(size[0]), int(size[1])


def _curve_metrics(comparison: ComparisonLike) -> list[str]:
    """The requested metrics that return curves (deletion, insertion, ...)."""
    return [m for m in comparison.metrics if _metric(m).curves]


def _curve_chart(name: str, series: list[Series], ident: str, note: str = "") -> str:
    metric = _metric(name)
    direction = "higher" if metric.higher_is_better else "lower"
    return line_chart(series, title=f"{metric.label}: area {direction} is better{note}",
                      xlabel=metric.curve_xlabel, ylabel=metric.curve_ylabel, ident=ident)


def _curves_charts(comparison: ComparisonLike) -> list[str]:
    """One chart per requested curve metric: every method's mean curve with its CI band."""
    charts = []
    for name in _curve_metrics(comparison):
        bands = comparison.curve_bands(name)
        if not bands:
            continue
        series = [Series(m, _field(b, "mean"), _field(b, "low"), _field(b, "high"), dashed=is_control(m))
                  for m, b in bands.items()]
        charts.append(_curve_chart(name, series, f"curve-{name}"))
    return charts


def _field(band: Any, key: str) -> list[float]:
    value = band[key] if isinstance(band, dict) else getattr(band, key)
    return [float(v) for v in value]


def _sanity_charts(comparison: ComparisonLike) -> list[str]:
    records = [r for r in comparison.sanity if r.get("status") == "ok" and r.get("layers")]
    if not records:
        return []
    charts = []
    for key in ("spearman", "ssim"):
        series = [Series(r["method"], [float(v) for v in r[key]], dashed=is_control(r["method"]))
                  for r in records if key in r]
        what = "Spearman rank correlation" if key == "spearman" else "SSIM"
        charts.append(line_chart(series, title=f"{what} with the original map",
                                 xlabel="blocks re-initialized (output side first, cumulative)",
                                 ylabel=what, xticklabels=[str(v) for v in records[0]["layers"]],
                                 ident=f"sanity-{key}"))
    return charts


def _cell(r: dict[str, Any] | None, metric: str) -> str:
    """One cell of the metrics table: mean, CI, rank, p-values against the best (raw, Holm)."""
    if r is None or not _finite(r["mean"]):
        return '<td data-value="">–</td>'
    cls = ' class="best"' if r["best"] else ""
    p_text = ""
    if _finite(r.get("p_vs_best")):
        holm = f", Holm {_p(r.get('p_holm'))}" if _finite(r.get("p_holm")) else ""
        p_text = f'<span class="p">p={_p(r["p_vs_best"])}{holm} vs best</span>'
    rank = f' <span class="rank">#{r["rank"]}</span>' if r.get("rank") is not None else ""
    return (f'<td{cls} data-metric="{_e(metric)}" data-value="{r["mean"]!r}">{_fmt(r["mean"], metric)} '
            f'<span class="ci">[{_fmt(r["ci_low"], metric)}, {_fmt(r["ci_high"], metric)}]</span>'
            f"{rank}{p_text}</td>")


def _baselines(comparison: ComparisonLike, cells: dict[tuple[str, str], dict[str, Any]]
               ) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """``[(baseline label, {metric: summary row})]`` for the baselines with a defined mean."""
    labels: dict[str, list[str]] = {}
    for metric in comparison.metrics:
        label = _metric(metric).baseline_label
        if label is not None:
            labels.setdefault(label, []).append(metric)
    out = []
    for label, metrics in labels.items():
        rows = {m: r for m in metrics if (r := cells.get((label, m))) is not None and _finite(r["mean"])}
        if rows:
            out.append((label, rows))
    return out


def _baseline_rows(comparison: ComparisonLike, cells: dict[tuple[str, str], dict[str, Any]]) -> str:
    """One footer row per baseline label (the pointing game's center point), in its metrics' columns."""
    rows = []
    for label, found in _baselines(comparison, cells):
        tds = []
        for metric in comparison.metrics:
            r = found.get(metric)
            tds.append(f'<td>{_fmt(r["mean"], metric)} <span class="ci">[{_fmt(r["ci_low"], metric)}, '
                       f'{_fmt(r["ci_high"], metric)}]</span></td>' if r else "<td></td>")
        rows.append(f'<tr class="baseline"><td class="name">{_e(label)} (baseline)</td>{"".join(tds)}</tr>')
    return f'<tfoot>{"".join(rows)}</tfoot>' if rows else ""


def _metrics_table(comparison: ComparisonLike, summary: list[dict[str, Any]]) -> str:
    """The metrics table: ranked methods, then the controls apart, then the baselines (footer).

    Every header sorts the rows when clicked (methods and controls each within their group).
    """
    cells = {(r["method"], r["metric"]): r for r in summary}
    head = "".join(
        f'<th class="sortable" tabindex="0" data-key="{_e(m)}" '
        f'data-higher="{1 if _metric(m).higher_is_better else 0}" title="{_e(m)}: click to sort">'
        f'{_e(_label(m))} {_arrow(bool(_metric(m).higher_is_better))}</th>'
        for m in comparison.metrics)

    def rows(methods: list[str], cls: str) -> str:
        return "".join(
            f'<tr{cls} data-method="{_e(m)}" data-order="{j}"><td class="name">{_e(m)}</td>'
            + "".join(_cell(cells.get((m, metric)), metric) for metric in comparison.metrics) + "</tr>"
            for j, m in enumerate(methods))

    ranked = [m for m in comparison.methods if not is_control(m)]
    controls = [m for m in comparison.methods if is_control(m)]
    control = ' class="control"'
    parts = [f'<table id="metrics"><thead><tr><th class="name sortable" tabindex="0" data-key="method">'
             f'method</th>{head}</tr></thead>',
             f'<tbody class="sortable" id="ranked">{rows(ranked, "")}</tbody>']
    if controls:
        parts.append(f'<tbody class="group"><tr><td colspan="{len(comparison.metrics) + 1}">controls: '
                     "floors a method must beat, not ranked</td></tr></tbody>"
                     f'<tbody class="sortable" id="controls">{rows(controls, control)}</tbody>')
    parts += [_baseline_rows(comparison, cells), "</table>"]
    return "".join(parts)


def _agreement_table(comparison: ComparisonLike, summary: list[dict[str, Any]]) -> str:
    """Kendall's tau between the metrics' orders of the ranked methods, as a metric x metric matrix."""
    rows = comparison.rank_agreement(summary)
    if not rows:
        return "<p>One metric only: nothing to compare.</p>"
    tau = {(r["metric_a"], r["metric_b"]): r for r in rows}
    tau.update({(r["metric_b"], r["metric_a"]): r for r in rows})
    n = max(r["n"] for r in rows)
    head = "".join(f"<th>{_e(_label(m))}</th>" for m in comparison.metrics)
    body = []
    for a in comparison.metrics:
        tds = []
        for b in comparison.metrics:
            r = tau.get((a, b))
            value = 1.0 if a == b else (r["tau"] if r else float("nan"))
            tds.append(f'<td data-value="{value!r}">{_fmt(value, digits=2)}</td>')
        body.append(f'<tr><td class="name">{_e(_label(a))}</td>{"".join(tds)}</tr>')
    note = "" if n >= 3 else (" With fewer than three methods tau is only ±1 or undefined: compare more "
                              "methods for a meaningful agreement.")
    return (f'<table id="agreement"><thead><tr><th class="name">Kendall τ</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>'
            f'<p class="legend">Kendall\'s tau-b between the orders in which two metrics put the {n} ranked '
            "methods (each metric read in its own better direction): 1 the same order, -1 the reverse, "
            f"0 unrelated. Controls are left out.{_e(note)}</p>")


def _pairwise_table(comparison: ComparisonLike) -> str:
    rows = comparison.pairwise()
    if not rows:
        return "<p>Fewer than two ranked methods: no paired test.</p>"
    body = "".join(
        f'<tr><td class="name">{_e(_label(r["metric"]))}</td><td class="name">{_e(r["method_a"])}</td>'
        f'<td class="name">{_e(r["method_b"])}</td><td>{r["n"]}</td>'
        f'<td>{_fmt(r["median_difference"], r["metric"])}</td><td>{_p(r["p"])}</td>'
        f'<td>{_p(r["p_holm"])}</td></tr>' for r in rows)
    return ('<details><summary>every pair of methods (paired Wilcoxon, Holm-corrected per metric)</summary>'
            '<table id="pairwise"><thead><tr><th class="name">metric</th><th class="name">method a</th>'
            '<th class="name">method b</th><th>images</th><th>median a − b</th><th>p</th>'
            f'<th>p (Holm)</th></tr></thead><tbody>{body}</tbody></table></details>')


def _ms(seconds: Any) -> str:
    return _fmt(seconds * 1e3, digits=1) if _finite(seconds) else "–"


def _timing_table(comparison: ComparisonLike) -> str:
    rows = []
    for r in comparison.timing():
        rows.append(
            f'<tr><td class="name">{_e(r["method"])}</td><td class="name">{_e(r["layer"] or "–")}</td>'
            f'<td>{r["images"]}</td><td>{r["failed"]}</td>'
            f'<td>{_ms(r["seconds_per_image"])}</td>'
            f'<td>{_fmt(r["forward_passes_per_image"], digits=1)}</td>'
            f'<td>{_ms(r["metric_seconds_per_image"])}</td>'
            f'<td>{_fmt(r["metric_forward_passes_per_image"], digits=1)}</td></tr>')
    return ('<table id="timing"><thead><tr><th class="name">method</th><th class="name">layer</th>'
            '<th>images</th><th>failed</th><th>explain ms / image</th><th>explain forward passes / image</th>'
            '<th>metrics ms / image</th><th>metric forward passes / image</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _target_text(comparison: ComparisonLike, img: dict[str, Any]) -> str:
    target = img.get("target")
    p = img.get("probability")
    prob = f", p={p:.2f}" if _finite(p) else ""
    return f"{comparison.class_name(target)} ({target}{prob})" if target is not None else "–"


def _grid_images(comparison: ComparisonLike) -> list[dict[str, Any]]:
    return [img for img in comparison.images if img.get("thumbnail") and img.get("status") == "ok"]


def _grid(comparison: ComparisonLike) -> str:
    images = _grid_images(comparison)
    if not images:
        return "<p>No thumbnails (grid_images=0).</p>"
    size = _size(comparison)
    overlays = {(it["index"], it["method"]): it.get("overlay") for it in comparison.items}
    head = "".join(f"<th>{_e(m)}</th>" for m in comparison.methods)
    rows = []
    for img in images:
        boxes = img.get("boxes")
        target = _target_text(comparison, img)
        cells = [f'<td><a href="#image-{img["index"]}" title="open the page of {_e(img["image"])}">'
                 + _picture(img["thumbnail"], img["image"], f'{img["image"]}: {target}', boxes, size)
                 + f'</a><div class="caption">{_e(img["image"])}<br>{_e(target)}</div></td>']
        for m in comparison.methods:
            png = overlays.get((img["index"], m))
            cells.append("<td>" + _picture(png, m, f'{m} on {img["image"]}', boxes, size) + "</td>"
                         if png else "<td>–</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="grid"><thead><tr><th>image (click: its page)</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            '<p class="legend">Every map is min-max normalized per image and colored with the same '
            'colormap (JET, blended at 50 %): 0 <span class="colorbar"></span> 1 '
            "(map minimum to map maximum). Green rectangles: ground-truth boxes. Click an image for its "
            "page: every method's map, scores and curves.</p>")


def _image_page(comparison: ComparisonLike, img: dict[str, Any],
                values: dict[tuple[int, str, str], float]) -> str:
    """The page of one image: every method's map, its scores and its curves (shown at ``#image-N``)."""
    i = img["index"]
    size = _size(comparison)
    boxes = img.get("boxes")
    items = {it["method"]: it for it in comparison.items if it["index"] == i}
    maps = ['<figure>' + _picture(img["thumbnail"], img["image"], img["image"], boxes, size)
            + '<figcaption class="caption">image</figcaption></figure>']
    for m in comparison.methods:
        it = items.get(m, {})
        picture = it.get("overlay")
        maps.append("<figure>" + (_picture(picture, m, f"{m} on {img['image']}", boxes, size) if picture
                                  else f'<span class="pic">{_e(it.get("error") or "–")}</span>')
                    + f'<figcaption class="caption">{_e(m)}</figcaption></figure>')
    head = "".join(f"<th>{_e(_label(n))} {_arrow(bool(_metric(n).higher_is_better))}</th>"
                   for n in comparison.metrics)
    body = "".join(
        f'<tr{" class=control" if is_control(m) else ""}><td class="name">{_e(m)}</td>'
        + "".join(f"<td>{_fmt(values.get((i, m, n), float('nan')), n)}</td>" for n in comparison.metrics)
        + "</tr>" for m in comparison.methods)
    charts = []
    for name in _curve_metrics(comparison):
        series = [Series(m, [float(v) for v in it["curves"][name]], dashed=is_control(m))
                  for m, it in items.items() if name in it.get("curves", {})]
        if series:
            charts.append(_curve_chart(name, series, f"image-{i}-{name}", " (this image)"))
    predicted = img.get("predicted")
    return (f'<section class="image-page" id="image-{i}"><p><a href="#summary">← back to the report</a></p>'
            f'<h2>{_e(img["image"])}</h2><p class="meta">image {i}; '
            f'target {_e(_target_text(comparison, img))}'
            f'; predicted {_e(comparison.class_name(predicted))} ({_e(predicted)}); '
            f'{len(boxes or [])} ground-truth box(es).</p>'
            f'<div class="maps">{"".join(maps)}</div>'
            f'<h3>Scores</h3><table class="image-scores"><thead><tr><th class="name">method</th>{head}'
            f'</tr></thead><tbody>{body}</tbody></table>'
            + (f'<h3>Curves</h3>{"".join(charts)}' if charts else "") + "</section>")


def _image_pages(comparison: ComparisonLike) -> list[str]:
    images = _grid_images(comparison)
    if not images:
        return []
    values = {(r["index"], r["method"], r["metric"]): r["value"] for r in comparison.table()}
    return [_image_page(comparison, img, values) for img in images]


def _provenance(comparison: ComparisonLike) -> str:
    p = comparison.provenance
    rows = []
    for key in ("xcam", "torch", "torchvision", "python", "platform", "device", "world_size", "seed",
                "image_size", "targets", "preprocess", "command", "finished"):
        if key in p:
            rows.append(f'<tr><th class="name">{_e(key)}</th><td class="name">{_e(p[key])}</td></tr>')
    model = p.get("model", {})
    rows.append(f'<tr><th class="name">model</th><td class="name">{_e(model.get("name"))} '
                f'({_e(model.get("class"))}, {model.get("parameters", 0):,} parameters, '
                f'fingerprint {_e(model.get("fingerprint"))})</td></tr>')
    data = json.dumps(p.get("data", {}))
    rows.append(f'<tr><th class="name">data</th><td class="name">{_e(data)}</td></tr>')
    methods = "".join(
        f'<tr><td class="name">{_e(m)}</td><td class="name">{_e(v.get("class"))}</td>'
        f'<td class="name">{_e(v.get("layer") or "–")}</td>'
        f'<td class="name"><code>{_e(json.dumps(v.get("params", {})))}</code></td></tr>'
        for m, v in p.get("methods", {}).items())
    metrics = "".join(
        f'<tr><td class="name">{_e(m)}</td><td class="name"><code>{_e(json.dumps(v))}</code></td></tr>'
        for m, v in p.get("metrics", {}).items())
    return (f'<table id="provenance-table">{"".join(rows)}</table>'
            '<h3>Methods</h3><table><thead><tr><th class="name">method</th><th class="name">class</th>'
            '<th class="name">layer</th><th class="name">hyper-parameters</th></tr></thead>'
            f'<tbody>{methods}</tbody></table>'
            '<h3>Metrics</h3><table><thead><tr><th class="name">metric</th><th class="name">arguments</th>'
            f'</tr></thead><tbody>{metrics}</tbody></table>'
            '<details><summary>provenance as JSON</summary>'
            f'<pre>{_e(json.dumps(p, indent=2))}</pre></details>')


def _names(metrics: list[str]) -> str:
    """``["average_drop", "increase_in_confidence"]`` -> ``"Average drop and increase in confidence"``."""
    text = " and ".join(m.replace("_", " ") for m in metrics)
    return text[:1].upper() + text[1:]


def _legend(comparison: ComparisonLike) -> str:
    """What the summary tables show (units, tests, controls, data-set scores: from the metadata)."""
    percent = [m for m in comparison.metrics if _metric(m).unit == "%"]
    dataset = [m for m in comparison.metrics
               if _metric(m).scope == "dataset" and not _metric(m).sample_only]
    legend = ("↑ higher is better, ↓ lower is better. Mean over images [95 % percentile-bootstrap CI], "
              "#rank among the methods (controls are not ranked), p = two-sided paired Wilcoxon "
              "signed-rank test against the best method (bold), raw and Holm-corrected over the "
              "family of every pair of ranked methods on that metric.")
    if percent:
        legend += f" {_names(percent)} in %."
    if any(is_control(m) for m in comparison.methods):
        legend += (" Controls (blank, random map, center Gaussian, Sobel edges) are shown apart: a "
                   "method that does not beat them is not explaining the model.")
    for m in dataset:
        legend += (f" {_label(m)} is a data-set score: its value per image is the image's share of "
                   "the score over the images shown.")
    return legend


def _summary_section(comparison: ComparisonLike, summary: list[dict[str, Any]]) -> list[str]:
    """The sortable metrics table, its legend, the paired tests and the metrics' agreement."""
    return ['<section id="summary"><h2>Metrics</h2>', _metrics_table(comparison, summary),
            f'<p class="legend">{_e(_legend(comparison))} Click a column header to sort.</p>',
            _pairwise_table(comparison), "</section>",
            '<section id="agreement-section"><h2>Do the metrics agree?</h2>',
            _agreement_table(comparison, summary), "</section>"]


def _curves_section(comparison: ComparisonLike) -> list[str]:
    """The mean curves of the requested curve metrics, with CI bands; nothing when none was asked for."""
    names = _curve_metrics(comparison)
    if not names:
        return []
    what = _names(names)
    charts = _curves_charts(comparison)
    return [f'<section id="curves"><h2>{_e(what)} curves</h2>',
            "".join(charts) if charts else f"<p>No {_e(what.lower())} curve was computed.</p>",
            '<p class="legend">Mean over images; shaded: pointwise 95 % percentile-bootstrap band of the '
            "mean. Dashed: controls.</p></section>"]


def _sanity_section(comparison: ComparisonLike) -> list[str]:
    """The curves and final values of the sample-only checks (model-parameter randomization)."""
    if not any(_metric(m).sample_only for m in comparison.metrics):
        return []
    charts = _sanity_charts(comparison)

    def last(r: dict[str, Any], key: str) -> str:
        values = r.get(key)
        return _fmt(values[-1]) if r.get("status") == "ok" and values else "–"

    rows = "".join(
        f'<tr><td class="name">{_e(r["method"])}</td><td>{len(r.get("images", []))}</td>'
        f'<td>{last(r, "spearman")}</td><td>{last(r, "ssim")}</td>'
        f'<td class="name">{_e(r.get("error", ""))}</td></tr>'
        for r in comparison.sanity)
    return [
        '<section id="sanity"><h2>Sanity checks (cascading model-parameter randomization)</h2>',
        "".join(charts) if charts else "<p>No method could be checked (see the errors).</p>",
        ('<table><thead><tr><th class="name">method</th><th>images</th><th>Spearman, all blocks</th>'
         f'<th>SSIM, all blocks</th><th class="name">error</th></tr></thead><tbody>{rows}</tbody>'
         "</table><p class=\"legend\">A method that depends on the model shows falling curves; "
         "lower is better.</p>") if comparison.sanity else "",
        "</section>",
    ]


def _errors_section(errors: list[dict[str, Any]]) -> list[str]:
    """The images and (image, method) pairs that failed."""
    table = ("<table><thead><tr><th>index</th><th class=\"name\">image</th><th class=\"name\">method</th>"
             '<th class="name">error</th></tr></thead><tbody>'
             + "".join(f'<tr><td>{_e(r["index"] if r["index"] is not None else "–")}</td>'
                       f'<td class="name">{_e(r["image"] or "–")}</td>'
                       f'<td class="name">{_e(r["method"] or "(image)")}</td>'
                       f'<td class="name">{_e(r["error"])}</td></tr>' for r in errors)
             + "</tbody></table>")
    return [f'<section id="errors"><h2>Errors ({len(errors)})</h2>',
            table if errors else "<p>None.</p>", "</section>"]


def render_html(comparison: ComparisonLike, title: str | None = None,
                summary: list[dict[str, Any]] | None = None) -> str:
    """The report as one HTML string (no external resources, no network; plain inline script).

    Args:
        comparison: the comparison to show.
        title: the page title (default: ``"xcam comparison: {model name}"``).
        summary: the rows of ``comparison.summary()``, when the caller has them already.

    Returns:
        The HTML page.
    """
    summary = summary if summary is not None else comparison.summary()
    n_ok = sum(1 for img in comparison.images if img.get("status") == "ok")
    model = comparison.provenance.get("model", {}).get("name", "model")
    title = title or f"xcam comparison: {model}"
    curves = _curves_section(comparison)
    sanity = _sanity_section(comparison)
    links = [("summary", "metrics"), ("agreement-section", "agreement"), ("timing-section", "run time"),
             ("grid", "maps"), *([("curves", "curves")] if curves else []),
             *([("sanity", "sanity")] if sanity else []), ("errors", "errors"), ("provenance", "provenance")]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{n_ok} images, {len(comparison.methods)} methods, '
        f'{len(comparison.metrics)} metrics; xcam {_e(comparison.provenance.get("xcam", "?"))}, '
        f'{_e(comparison.provenance.get("finished", ""))}. <span id="render-status"></span></p>',
        "<nav>" + " · ".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>",
        *_summary_section(comparison, summary),
        '<section id="timing-section"><h2>Run time</h2>', _timing_table(comparison),
        '<p class="legend">Forward passes: images run through the model (a batch of n counts n).</p>'
        "</section>",
        '<section id="grid"><h2>Maps</h2>', _grid(comparison), "</section>",
        *curves,
        *sanity,
        *_errors_section(comparison.errors()),
        '<section id="provenance"><h2>Provenance</h2>', _provenance(comparison), "</section>",
        *_image_pages(comparison),
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# summary.md and summary.tex: the metrics table for a paper
# --------------------------------------------------------------------------------------------

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "–": "--", "−": "-", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "τ": r"$\tau$"}


def tex_escape(text: Any) -> str:
    r"""``text`` with LaTeX's special characters escaped (``&`` -> ``\&``, ``_`` -> ``\_``, ...)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _md_escape(text: Any) -> str:
    return "".join("\\" + ch if ch in "\\|*_`[]<>#" else ch for ch in str(text))


def _table_rows(comparison: ComparisonLike, summary: list[dict[str, Any]]
                ) -> tuple[list[str], list[tuple[str, str, list[tuple[str, str, bool]]]]]:
    """Header labels and rows ``(kind, name, [(mean, ci, best)])`` of the paper tables.

    ``kind`` is ``"method"``, ``"control"`` or ``"baseline"``; values as :func:`format_value`.
    """
    cells = {(r["method"], r["metric"]): r for r in summary}
    header = [f"{_label(m)} {_arrow(bool(_metric(m).higher_is_better))}" for m in comparison.metrics]

    def values(name: str, found: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, str, bool]]:
        out = []
        for metric in comparison.metrics:
            r = (found or {}).get(metric) if found is not None else cells.get((name, metric))
            if r is None or not _finite(r["mean"]):
                out.append(("–", "", False))
            else:
                out.append((_fmt(r["mean"], metric), f'[{_fmt(r["ci_low"], metric)}, '
                            f'{_fmt(r["ci_high"], metric)}]', bool(r["best"])))
        return out

    rows = [("method", m, values(m)) for m in comparison.methods if not is_control(m)]
    rows += [("control", m, values(m)) for m in comparison.methods if is_control(m)]
    rows += [("baseline", label, values(label, found)) for label, found in _baselines(comparison, cells)]
    return header, rows


def render_markdown(comparison: ComparisonLike, summary: list[dict[str, Any]] | None = None) -> str:
    """The metrics table as GitHub-flavoured Markdown: mean [95 % CI], best in bold, controls apart."""
    summary = summary if summary is not None else comparison.summary()
    header, rows = _table_rows(comparison, summary)
    lines = ["| method | " + " | ".join(_md_escape(h) for h in header) + " |",
             "|---|" + "---:|" * len(header)]
    for kind, name, values in rows:
        label = {"method": _md_escape(name), "control": f"*{_md_escape(name)}* (control)",
                 "baseline": f"{_md_escape(name)} (baseline)"}[kind]
        texts = [(f"**{mean}**" if best else mean) + (f" {ci}" if ci else "") for mean, ci, best in values]
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n\n" + _legend(comparison) + "\n"


def render_latex(comparison: ComparisonLike, summary: list[dict[str, Any]] | None = None) -> str:
    r"""The metrics table as a booktabs ``tabular`` (``\usepackage{booktabs}``), for ``\input``.

    One row per method (best in bold, mean and 95 % CI), a ``\midrule``, the controls (italic), then
    the baselines; every text is escaped (:func:`tex_escape`).
    """
    summary = summary if summary is not None else comparison.summary()
    header, rows = _table_rows(comparison, summary)

    def line(cells: list[str]) -> str:
        return " & ".join(cells) + r" \\"

    out = ["% xcam summary: mean [95% percentile-bootstrap CI] over images; best method in bold;",
           "% controls (italic) and baselines are not ranked. Needs \\usepackage{booktabs}.",
           r"\begin{tabular}{l" + "r" * len(header) + "}", r"\toprule",
           line(["Method", *(tex_escape(h) for h in header)]), r"\midrule"]
    previous = "method"
    for kind, name, values in rows:
        if kind != previous:
            out.append(r"\midrule")
            previous = kind
        label = {"method": tex_escape(name), "control": r"\textit{" + tex_escape(name) + "} (control)",
                 "baseline": tex_escape(name) + " (baseline)"}[kind]
        texts = [(r"\textbf{" + tex_escape(mean) + "}" if best else tex_escape(mean))
                 + (" {\\small " + tex_escape(ci) + "}" if ci else "") for mean, ci, best in values]
        out.append(line([label, *texts]))
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


OUTPUT_FILES = ("table.csv", "summary.csv", "summary.md", "summary.tex", "pairwise.csv", "agreement.csv",
                "timing.csv", "summary.json", "report.html")
LEDGER = "xcam-outputs.json"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def output_files(report: bool = True) -> tuple[str, ...]:
    """The files :func:`write_outputs` writes (``report.html`` only with ``report``)."""
    return OUTPUT_FILES if report else tuple(n for n in OUTPUT_FILES if n != "report.html")


class OutputExistsError(XcamError, FileExistsError):
    """The output folder holds a file xcam did not write (or one changed since) and would replace."""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value: Any) -> Any:
    """A cell safe to open in a spreadsheet.

    Text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'``
    (OWASP's CSV-injection rule), so that Excel or LibreOffice shows it instead of running it as a formula;
    numbers (``-0.5`` too) stay numbers.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            cells = {}
            for k in columns:
                v = row.get(k)
                blank = v is None or (isinstance(v, float) and math.isnan(v))
                cells[k] = "" if blank else csv_cell(v)
            writer.writerow(cells)


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def read_ledger(folder: Path) -> dict[str, str] | None:
    """``{file name: sha1}`` of the outputs xcam wrote into ``folder``; None when it wrote none."""
    path = folder / LEDGER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


def foreign_outputs(folder: str | Path, names: tuple[str, ...] = OUTPUT_FILES) -> list[Path]:
    """Files among ``names`` in ``folder`` that xcam did not write there, or that changed since.

    A file is xcam's when the folder's ledger (``xcam-outputs.json``) lists it with the same
    content; in a run folder of an xcam that kept no ledger (a ``run.json`` but no ledger), the
    output files count as xcam's.
    """
    folder = Path(folder)
    ledger = read_ledger(folder)
    legacy = ledger is None and (folder / "run.json").is_file()
    out = []
    for name in names:
        path = folder / name
        if not path.exists():
            continue
        if legacy:
            continue
        if ledger is None or ledger.get(name) is None or not path.is_file() or _digest(path) != ledger[name]:
            out.append(path)
    return out


def check_outputs(folder: str | Path, overwrite: bool = False, names: tuple[str, ...] = OUTPUT_FILES) -> None:
    """Refuse to replace a file xcam did not write.

    Raises :class:`OutputExistsError` when writing ``names`` into ``folder`` would replace a file xcam did
    not write, unless ``overwrite``, or when ``folder`` is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(
            f"out {str(folder)!r} is a file, not a folder; pass a folder (created when missing)")
    if overwrite:
        return
    foreign = foreign_outputs(folder, names)
    if foreign:
        listed = ", ".join(repr(str(p)) for p in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise OutputExistsError(
            f"out: {listed} exists and was not written by xcam (or was changed since); xcam will not "
            "replace it: pass overwrite=True (CLI: --overwrite) to replace it, or another output folder"
        )


def write_outputs(comparison: ComparisonLike, out: str | Path, report: bool = True,
                  overwrite: bool = False) -> dict[str, Path]:
    """Write the tables, ``summary.json`` and the report into ``out``; returns ``{name: path}``.

    The files are those of :func:`output_files`: ``table.csv``, ``summary.csv``, ``summary.md``,
    ``summary.tex``, ``pairwise.csv``, ``agreement.csv``, ``timing.csv``, ``summary.json`` and (with
    ``report``) ``report.html``.

    A file of those names that xcam did not write is never replaced unless ``overwrite`` (see
    :func:`check_outputs`); what was written is listed with its checksum in
    ``out/xcam-outputs.json``.
    """
    folder = Path(out)
    names = output_files(report)
    check_outputs(folder, overwrite, names)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputExistsError(f"out {str(folder)!r} cannot be created ({err}); pass a folder") from err
    ledger = read_ledger(folder) or {}
    paths = {name: folder / name for name in names}
    summary = comparison.summary()
    _write_csv(paths["table.csv"], comparison.table(), ["index", "image", "method", "metric", "value"])
    _write_csv(paths["summary.csv"], summary, ["method", "metric", "higher_is_better", "control", "mean",
                                               "ci_low", "ci_high", "n", "rank", "best", "p_vs_best",
                                               "p_holm"])
    paths["summary.md"].write_text(render_markdown(comparison, summary), encoding="utf-8")
    paths["summary.tex"].write_text(render_latex(comparison, summary), encoding="utf-8")
    _write_csv(paths["pairwise.csv"], comparison.pairwise(),
               ["metric", "method_a", "method_b", "n", "statistic", "median_difference", "p", "p_holm"])
    _write_csv(paths["agreement.csv"], comparison.rank_agreement(summary),
               ["metric_a", "metric_b", "tau", "n"])
    timing = comparison.timing()
    _write_csv(paths["timing.csv"], timing, list(timing[0]) if timing else ["method"])
    data = comparison.to_dict(summary=summary)
    paths["summary.json"].write_text(json.dumps(data, indent=2, allow_nan=False))
    if report:
        paths["report.html"].write_text(render_html(comparison, summary=summary), encoding="utf-8")
    ledger.update({name: _digest(path) for name, path in paths.items()})
    tmp = folder / (LEDGER + ".tmp")
    tmp.write_text(json.dumps(ledger, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / LEDGER)
    return paths
