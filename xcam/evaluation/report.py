"""Reports of a comparison: one self-contained HTML file, plus CSV and JSON.

:func:`write_outputs` writes, into a folder:

- ``table.csv``: the tidy per-image table (index, image, method, metric, value);
- ``summary.csv``: per method x metric, the mean, its 95 % bootstrap CI, rank and the paired
  test against the best method;
- ``timing.csv``: per method, seconds and forward passes per image;
- ``summary.json``: summary, timing, errors, sanity curves and provenance;
- ``report.html``: all of it in one file that needs nothing else (pictures are inline PNG data):
  the metrics table with direction arrows, the image x method grid (every map min-max normalized
  and colored with the same colormap, one color bar), deletion / insertion curves,
  sanity-check curves, timing, errors and a provenance block;
- ``xcam-outputs.json``: the files above with their SHA-1, so that a later run knows which files
  are its own. A file of those names that xcam did not write (or that changed since) is never
  replaced unless ``overwrite=True`` (CLI ``--overwrite``).

CSV cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return are prefixed with
``'`` so that a spreadsheet shows them as text (CSV injection); numbers stay numbers.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Protocol

from ..errors import XcamError
from ..metrics.base import Metric
from ..registry import EXPLAINERS, METRICS

__all__ = ["write_outputs", "render_html", "check_outputs", "foreign_outputs", "csv_cell",
           "OutputExistsError", "OUTPUT_FILES", "LEDGER", "ComparisonLike", "read_ledger",
           "format_value", "is_control"]




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
        """Per method x metric: mean, CI, rank, paired test against the best."""

    def timing(self) -> list[dict[str, Any]]:
        """Per method: seconds and forward passes per image."""

    def errors(self) -> list[dict[str, Any]]:
        """Images and (image, method) pairs that failed."""

    def mean_curves(self, kind: str) -> dict[str, list[float]]:
        """Mean curve of metric ``kind`` per method."""

    def to_dict(self, summary: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Summary, timing, errors and provenance as JSON-ready data."""


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.name,th.name{text-align:left}
td.best{font-weight:bold;background:#eaf6ea}tr.control td.name{color:#777;font-style:italic}
tr.baseline td{color:#555;background:#fafafa}
.ci{color:#666;font-size:11px}.rank{color:#333;font-size:11px}.p{color:#888;font-size:10px;display:block}
.meta{color:#555}.legend{color:#555;font-size:12px}
.grid td{padding:2px;text-align:center}.grid img{display:block;width:112px;height:112px;image-rendering:auto}
.grid th{font-size:11px}
.colorbar{display:inline-block;width:240px;height:12px;vertical-align:middle;
 background:linear-gradient(to right,#00007f,#0000ff,#007fff,#00ffff,#7fff7f,#ffff00,#ff7f00,#ff0000,#7f0000)}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}
img.chart{max-width:100%}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-ok', String(ok));
  var rows = document.querySelectorAll('#metrics tbody tr').length;
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


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float, panels: int = 2) -> tuple[Any, Any]:
    """A figure outside pyplot: the caller's backend and open figures are left alone."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, panels, squeeze=False)


def _style(method: str) -> dict[str, Any]:
    return {"linestyle": "--", "alpha": 0.7} if is_control(method) else {}


def _curve_metrics(comparison: ComparisonLike) -> list[str]:
    """The metrics of the comparison that return curves (deletion, insertion, ...)."""
    return [m for m in comparison.metrics if _metric(m).curves]


def _curves_chart(comparison: ComparisonLike) -> str | None:
    """One panel per curve metric: the mean curve of every method."""
    names = _curve_metrics(comparison)
    curves = {name: comparison.mean_curves(name) for name in names}
    if not any(curves.values()):
        return None
    fig, axes = _figure(5.5 * max(len(names), 2), 3.6, max(len(names), 2))
    for ax in axes[0][len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes[0], names):
        metric = _metric(name)
        for method, curve in curves[name].items():
            n = len(curve)
            xs = [k / (n - 1) for k in range(n)] if n > 1 else [0.0]
            ax.plot(xs, curve, label=method, **_style(method))
        direction = "higher" if metric.higher_is_better else "lower"
        ax.set_title(f"{name} (area {direction} is better)", fontsize=10)
        ax.set_xlabel(metric.curve_xlabel)
        ax.set_ylabel(metric.curve_ylabel)
        ax.set_xlim(0, 1)
        if curves[name]:
            ax.legend(fontsize=7)
        else:
            ax.set_axis_off()
    return _png(fig)


def _sanity_chart(comparison: ComparisonLike) -> str | None:
    records = [r for r in comparison.sanity if r.get("status") == "ok"]
    if not records:
        return None
    fig, axes = _figure(11, 3.8)
    for ax, key in zip(axes[0], ("spearman", "ssim")):
        for rec in records:
            xs = list(range(1, len(rec[key]) + 1))
            ax.plot(xs, rec[key], marker="o", markersize=3, label=rec["method"], **_style(rec["method"]))
        layers = records[0]["layers"]
        ax.set_xticks(range(1, len(layers) + 1))
        ax.set_xticklabels(layers, rotation=90, fontsize=6)
        ax.set_title(f"{'Spearman rank correlation' if key == 'spearman' else 'SSIM'} with the "
                     "original map", fontsize=10)
        ax.set_xlabel("blocks re-initialized (output side first, cumulative)")
        ax.axhline(0, color="#999", linewidth=0.5)
        ax.legend(fontsize=7)
    return _png(fig)


def _cell(r: dict[str, Any] | None, metric: str) -> str:
    """One cell of the metrics table: mean, CI, rank, p-value against the best."""
    if r is None or not _finite(r["mean"]):
        return "<td>–</td>"
    cls = ' class="best"' if r["best"] else ""
    p = r["p_vs_best"]
    p_text = f'<span class="p">p={p:.2g} vs best</span>' if _finite(p) else ""
    return (f'<td{cls} data-metric="{_e(metric)}" data-value="{r["mean"]!r}">{_fmt(r["mean"], metric)} '
            f'<span class="ci">[{_fmt(r["ci_low"], metric)}, {_fmt(r["ci_high"], metric)}]</span> '
            f'<span class="rank">#{r["rank"]}</span>{p_text}</td>')


def _baseline_rows(comparison: ComparisonLike, cells: dict[tuple[str, str], dict[str, Any]]) -> str:
    """One footer row per baseline label (the pointing game's center point), in its metrics' columns."""
    labels: dict[str, list[str]] = {}
    for metric in comparison.metrics:
        label = _metric(metric).baseline_label
        if label is not None:
            labels.setdefault(label, []).append(metric)
    rows = []
    for label, metrics in labels.items():
        tds = []
        shown = False
        for metric in comparison.metrics:
            r = cells.get((label, metric)) if metric in metrics else None
            if r is not None and _finite(r["mean"]):
                shown = True
                tds.append(f'<td>{_fmt(r["mean"], metric)} <span class="ci">[{_fmt(r["ci_low"], metric)}, '
                           f'{_fmt(r["ci_high"], metric)}]</span></td>')
            else:
                tds.append("<td></td>")
        if shown:
            name = f'<td class="name">{_e(label)} (baseline)</td>'
            rows.append(f'<tr class="baseline">{name}{"".join(tds)}</tr>')
    return f'<tfoot>{"".join(rows)}</tfoot>' if rows else ""


def _metrics_table(comparison: ComparisonLike, summary: list[dict[str, Any]]) -> str:
    """The metrics table: one row per method, one column per metric, baselines in the footer."""
    cells = {(r["method"], r["metric"]): r for r in summary}
    head = "".join(
        f'<th title="{_e(m)}">{_e(_label(m))} {_arrow(bool(_metric(m).higher_is_better))}</th>'
        for m in comparison.metrics)
    rows = []
    for method in comparison.methods:
        tds = "".join(_cell(cells.get((method, metric)), metric) for metric in comparison.metrics)
        cls = ' class="control"' if is_control(method) else ""
        rows.append(f'<tr{cls}><td class="name">{_e(method)}</td>{tds}</tr>')
    foot = _baseline_rows(comparison, cells)
    return (f'<table id="metrics"><thead><tr><th class="name">method</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody>{foot}</table>')


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


def _grid(comparison: ComparisonLike) -> str:
    images = [img for img in comparison.images if img.get("thumbnail")]
    if not images:
        return "<p>No thumbnails (grid_images=0).</p>"
    overlays = {(it["index"], it["method"]): it.get("overlay") for it in comparison.items}
    head = "".join(f"<th>{_e(m)}</th>" for m in comparison.methods)
    rows = []
    for img in images:
        title = f'{img["image"]} (target {img.get("target")}, p={img.get("probability", float("nan")):.2f})'
        cells = [f'<td><img alt="{_e(img["image"])}" title="{_e(title)}" '
                 f'src="data:image/png;base64,{img["thumbnail"]}"></td>']
        for m in comparison.methods:
            png = overlays.get((img["index"], m))
            if png:
                cells.append(f'<td><img alt="{_e(m)}" title="{_e(m)} on {_e(img["image"])}" '
                             f'src="data:image/png;base64,{png}"></td>')
            else:
                cells.append("<td>–</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="grid"><thead><tr><th>image</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            '<p class="legend">Every map is min-max normalized per image and colored with the same '
            'colormap (JET, blended at 50 %): 0 <span class="colorbar"></span> 1 '
            '(map minimum to map maximum).</p>')


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


def _summary_section(comparison: ComparisonLike, summary: list[dict[str, Any]]) -> list[str]:
    """The metrics table and its legend (units, controls, data-set scores: from the metadata)."""
    percent = [m for m in comparison.metrics if _metric(m).unit == "%"]
    dataset = [m for m in comparison.metrics
               if _metric(m).scope == "dataset" and not _metric(m).sample_only]
    legend = ("↑ higher is better, ↓ lower is better. Mean over images [95 % percentile-bootstrap CI], "
              "#rank among the methods, p = two-sided paired Wilcoxon signed-rank test against the best "
              "method (bold).")
    if percent:
        legend += f" {_names(percent)} in %."
    legend += (" Italic rows are controls (random map, center Gaussian, Sobel edges): a method that "
               "does not beat them is not explaining the model.")
    for m in dataset:
        legend += (f" {_label(m)} is a data-set score: its value per image is the image's share of "
                   "the score over the images shown.")
    return ['<section id="summary"><h2>Metrics</h2>', _metrics_table(comparison, summary),
            f'<p class="legend">{_e(legend)}</p></section>']


def _curves_section(comparison: ComparisonLike) -> list[str]:
    """The mean curves of the curve metrics (deletion, insertion, ...)."""
    names = _curve_metrics(comparison) or [n for n in METRICS.names() if _metric(n).curves]
    what = _names(names)
    curves = _curves_chart(comparison)
    return [f'<section id="curves"><h2>{_e(what)} curves</h2>',
            f'<img class="chart" alt="{_e(what.lower())} curves" src="data:image/png;base64,{curves}">'
            if curves else f"<p>{_e(what)} were not computed.</p>", "</section>"]


def _sanity_section(comparison: ComparisonLike) -> list[str]:
    """The curves and final values of the sample-only checks (model-parameter randomization)."""
    sanity = _sanity_chart(comparison)
    sample_only = [n for n in METRICS.names() if _metric(n).sample_only]

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
        f'<img class="chart" alt="sanity-check curves" src="data:image/png;base64,{sanity}">'
        if sanity else f"<p>Not computed (add the metric {_e(' or '.join(sample_only))}).</p>",
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
    """The report as one HTML string (no external resources).

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
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{n_ok} images, {len(comparison.methods)} methods, '
        f'{len(comparison.metrics)} metrics; xcam {_e(comparison.provenance.get("xcam", "?"))}, '
        f'{_e(comparison.provenance.get("finished", ""))}. <span id="render-status"></span></p>',
        '<nav><a href="#summary">metrics</a> · <a href="#timing-section">run time</a> · '
        '<a href="#grid">maps</a> · <a href="#curves">curves</a> · <a href="#sanity">sanity</a> · '
        '<a href="#errors">errors</a> · <a href="#provenance">provenance</a></nav>',
        *_summary_section(comparison, summary),
        '<section id="timing-section"><h2>Run time</h2>', _timing_table(comparison),
        '<p class="legend">Forward passes: images run through the model (a batch of n counts n).</p>'
        "</section>",
        '<section id="grid"><h2>Maps</h2>', _grid(comparison), "</section>",
        *_curves_section(comparison),
        *_sanity_section(comparison),
        *_errors_section(comparison.errors()),
        '<section id="provenance"><h2>Provenance</h2>', _provenance(comparison), "</section>",
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


OUTPUT_FILES = ("table.csv", "summary.csv", "timing.csv", "summary.json", "report.html")
LEDGER = "xcam-outputs.json"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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

    The files are ``table.csv``, ``summary.csv``, ``timing.csv``, ``summary.json`` and (with ``report``)
    ``report.html``.

    A file of those names that xcam did not write is never replaced unless ``overwrite`` (see
    :func:`check_outputs`); what was written is listed with its checksum in
    ``out/xcam-outputs.json``.
    """
    folder = Path(out)
    names = OUTPUT_FILES if report else OUTPUT_FILES[:4]
    check_outputs(folder, overwrite, names)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputExistsError(f"out {str(folder)!r} cannot be created ({err}); pass a folder") from err
    ledger = read_ledger(folder) or {}
    paths = {name: folder / name for name in ("table.csv", "summary.csv", "timing.csv", "summary.json")}
    summary = comparison.summary()
    _write_csv(paths["table.csv"], comparison.table(), ["index", "image", "method", "metric", "value"])
    _write_csv(paths["summary.csv"], summary, ["method", "metric", "higher_is_better", "mean", "ci_low",
                                               "ci_high", "n", "rank", "best", "p_vs_best"])
    timing = comparison.timing()
    _write_csv(paths["timing.csv"], timing, list(timing[0]) if timing else ["method"])
    data = comparison.to_dict(summary=summary)
    paths["summary.json"].write_text(json.dumps(data, indent=2, allow_nan=False))
    if report:
        paths["report.html"] = folder / "report.html"
        paths["report.html"].write_text(render_html(comparison, summary=summary), encoding="utf-8")
    ledger.update({name: _digest(path) for name, path in paths.items()})
    tmp = folder / (LEDGER + ".tmp")
    tmp.write_text(json.dumps(ledger, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / LEDGER)
    return paths
