"""Small vector line charts for the report, written as inline SVG (no matplotlib, no script).

:func:`line_chart` draws one panel: lines with an optional shaded band each (a confidence band),
axes with round tick values, a title, axis labels and a legend. The SVG scales with the page and
its parts carry classes (``series``, ``ci-band``, ``legend``) and ``data-series`` names, so that a
test or a style sheet can find them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Series", "line_chart", "PALETTE"]

#: matplotlib's "tab10" colours, in order
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


@dataclass
class Series:
    """One line of a chart.

    Attributes:
        name: legend label.
        y: values, one per x position (NaN leaves a gap).
        low, high: the band around the line (same length as ``y``), or None.
        dashed: draw the line dashed (controls).
        color: CSS colour; None picks the next colour of :data:`PALETTE`.
    """

    name: str
    y: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    dashed: bool = False
    color: str | None = None


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-6:
        if value >= low - step * 1e-6:
            ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the tick spacing needs (0.26, 0.2605, 1e+03 ...)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step) - 1e-9) + (1 if round(step / 10 ** math.floor(
        math.log10(step)), 6) == 2.5 else 0))
    text = f"{value:.{min(decimals, 12)}f}"
    return "0" if float(text) == 0 else text


def line_chart(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
               x: Sequence[float] | None = None, xticklabels: Sequence[str] | None = None,
               ident: str = "", width: int = 460, height: int = 280) -> str:
    """One panel as an ``<svg>`` element (a string to put inline in HTML).

    Args:
        series: the lines; all of one length ``T`` (or ``x``'s).
        title: the chart's title (escaped here, as every text).
        xlabel: the x axis' label.
        ylabel: the y axis' label.
        x: the x positions (default ``0 .. 1`` in ``T`` equal steps).
        xticklabels: categorical x: one label per position (then x is ``1 .. T``).
        ident: the ``id`` of the ``<svg>`` element.
        width: the drawing's width in CSS pixels (it scales down with the page).
        height: its height.

    Returns:
        The SVG markup.
    """
    n = max((len(s.y) for s in series), default=0)
    if xticklabels is not None:
        xs = [float(k + 1) for k in range(n)]
    elif x is not None:
        xs = [float(v) for v in x]
    else:
        xs = [k / (n - 1) for k in range(n)] if n > 1 else [0.0]
    values = [v for s in series for seq in (s.y, s.low or [], s.high or []) for v in seq
              if isinstance(v, (int, float)) and math.isfinite(v)]
    y_low, y_high = (min(values), max(values)) if values else (0.0, 1.0)
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    yticks = _ticks(y_low, y_high)
    y_low, y_high = min(y_low, yticks[0]), max(y_high, yticks[-1])
    x_low, x_high = (xs[0], xs[-1]) if n > 1 else (xs[0] - 0.5, xs[0] + 0.5)
    if xticklabels is not None:
        x_low, x_high = 0.5, n + 0.5
    legend_w = 130
    left, right, top = 52, width - legend_w - 8, 26
    bottom = height - (70 if xticklabels is not None else 40)

    def px(v: float) -> float:
        return left + (v - x_low) / (x_high - x_low) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_low) / (y_high - y_low) * (bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" id="{_e(ident)}" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           'font-family="system-ui,sans-serif" font-size="11">',
           f"<title>{_e(title)}</title>",
           f'<text x="{(left + right) / 2:.1f}" y="14" text-anchor="middle" font-size="12">'
           f"{_e(title)}</text>"]
    for t in yticks:
        y = py(t)
        out.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 4}" y="{y + 3.5:.1f}" text-anchor="end">{_label(t, yticks)}</text>')
    if xticklabels is not None:
        for k, name in enumerate(xticklabels):
            xp = px(k + 1)
            out.append(f'<text transform="translate({xp + 3:.1f},{bottom + 6}) rotate(60)" '
                       f'font-size="8">{_e(name)}</text>')
    else:
        xticks = _ticks(x_low, x_high)
        for t in xticks:
            xp = px(t)
            out.append(f'<line x1="{xp:.1f}" x2="{xp:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#444"/>'
                       f'<text x="{xp:.1f}" y="{bottom + 15}" text-anchor="middle">'
                       f"{_label(t, xticks)}</text>")
    out.append(f'<path d="M{left},{top}V{bottom}H{right}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{height - 4}" text-anchor="middle">'
               f"{_e(xlabel)}</text>")
    out.append(f'<text transform="translate(12,{(top + bottom) / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{_e(ylabel)}</text>')
    for j, s in enumerate(series):
        color = s.color or PALETTE[j % len(PALETTE)]
        name = _e(s.name)
        if s.low is not None and s.high is not None:
            upper = [(px(xv), py(hv)) for xv, hv in zip(xs, s.high) if math.isfinite(hv)]
            lower = [(px(xv), py(lv)) for xv, lv in zip(xs, s.low) if math.isfinite(lv)]
            if upper and lower:
                points = " ".join(f"{a:.1f},{b:.1f}" for a, b in [*upper, *reversed(lower)])
                out.append(f'<polygon class="ci-band" data-series="{name}" points="{points}" '
                           f'fill="{color}" fill-opacity="0.18" stroke="none"/>')
        points = " ".join(f"{px(xv):.1f},{py(yv):.1f}" for xv, yv in zip(xs, s.y) if math.isfinite(yv))
        dash = ' stroke-dasharray="5,3"' if s.dashed else ""
        marker = xticklabels is not None
        out.append(f'<polyline class="series" data-series="{name}" points="{points}" fill="none" '
                   f'stroke="{color}" stroke-width="1.6"{dash}/>')
        if marker:
            out += [f'<circle cx="{px(xv):.1f}" cy="{py(yv):.1f}" r="2" fill="{color}"/>'
                    for xv, yv in zip(xs, s.y) if math.isfinite(yv)]
        ly = top + 6 + 15 * j
        out.append(f'<g class="legend"><line x1="{right + 10}" x2="{right + 28}" y1="{ly}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"{dash}/><text x="{right + 32}" y="{ly + 4}">'
                   f"{name}</text></g>")
    out.append("</svg>")
    return "".join(out)
