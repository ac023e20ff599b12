"""Small inline-SVG charts for the report (line charts with CI bands, bar charts): no JS, no network."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#f08c00", "#495057")


@dataclass
class Series:
    """One line: points (x, y) with optional lower/upper bounds drawn as a band."""

    name: str
    xs: list[float]
    ys: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None
    dashed: bool = False
    markers_only: bool = False


@dataclass
class Axes:
    title: str
    x_label: str
    y_label: str
    log2_x: bool = False
    y_range: tuple[float, float] | None = None
    width: int = 560
    height: int = 320
    margin: tuple[int, int, int, int] = (34, 20, 46, 58)  # top, right, bottom, left
    extra: list[str] = field(default_factory=list)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values in [lo, hi]; `integer` keeps them whole (no 0.5 ticks for bins, steps, counts)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    if integer:
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = start
    while value <= hi + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def line_chart(axes: Axes, series: list[Series]) -> str:
    """An SVG line chart; with ``log2_x`` the x axis is log-2 scaled with a tick at every data x."""
    top, right, bottom, left = axes.margin
    plot_w, plot_h = axes.width - left - right, axes.height - top - bottom
    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys) if y is not None]
    bounds = [v for s in series for v in (s.lo or []) + (s.hi or []) if v is not None]
    if not points:
        return _empty(axes, "no data")

    def tx(x: float) -> float:
        return math.log2(x) if axes.log2_x else x

    xs = [tx(x) for x, _ in points]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if axes.y_range is not None:
        y_lo, y_hi = axes.y_range
    else:
        ys = [y for _, y in points] + bounds
        y_lo, y_hi = min(ys), max(ys)
        pad = (y_hi - y_lo) * 0.08 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad

    def px(x: float) -> float:
        return left + (tx(x) - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    out = [_open(axes)]
    for tick in _ticks(y_lo, y_hi):
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    line_xs = {x for s in series if not s.markers_only for x, y in zip(s.xs, s.ys) if y is not None}
    integer_x = all(float(x).is_integer() for x, _ in points)
    x_ticks = sorted(line_xs or {x for x, _ in points}) if axes.log2_x else _ticks(x_lo, x_hi, integer=integer_x)
    if len(x_ticks) > 12:
        x_ticks = x_ticks[:: math.ceil(len(x_ticks) / 12)]
    for tick in x_ticks:
        x = px(tick)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" class="axis"/>'
            f'<text x="{x:.1f}" y="{top + plot_h + 17}" text-anchor="middle">{_fmt(tick)}</text>'
        )
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    for number, s in enumerate(series):
        colour = PALETTE[number % len(PALETTE)]
        pts = [
            (x, y, lo, hi)
            for x, y, lo, hi in zip(s.xs, s.ys, s.lo or [None] * len(s.xs), s.hi or [None] * len(s.xs))
            if y is not None
        ]
        band = [(x, lo, hi) for x, _, lo, hi in pts if lo is not None and hi is not None]
        if len(band) >= 2:
            upper = " ".join(f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in band)
            lower = " ".join(f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(band))
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" opacity="0.13"/>')
        elif len(band) == 1:
            x, lo, hi = band[0]
            out.append(
                f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{py(lo):.1f}" y2="{py(hi):.1f}" '
                f'stroke="{colour}" stroke-width="2" opacity="0.5"/>'
            )
        if not s.markers_only and len(pts) >= 2:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _, _ in pts)
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y, _, _ in pts:
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{5 if s.markers_only else 3.2}" fill="{colour}">'
                f"<title>{escape(s.name)}: x={_fmt(x)}, y={_fmt(y)}</title></circle>"
            )
    out.append(_legend(axes, series))
    out.append(_labels(axes, left, top, plot_w, plot_h))
    out.append("</svg>")
    return "".join(out)


def bar_chart(axes: Axes, labels: list[str], values: list[float]) -> str:
    """Vertical bars, one per label (e.g. a histogram of exit steps)."""
    top, right, bottom, left = axes.margin
    plot_w, plot_h = axes.width - left - right, axes.height - top - bottom
    if not values:
        return _empty(axes, "no data")
    y_hi = max(values) * 1.08 or 1.0
    out = [_open(axes)]
    for tick in _ticks(0, y_hi, integer=all(float(v).is_integer() for v in values)):
        y = top + (1 - tick / y_hi) * plot_h
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    slot = plot_w / len(values)
    every = math.ceil(len(values) / 16)
    for number, (label, value) in enumerate(zip(labels, values)):
        height = value / y_hi * plot_h
        x = left + number * slot
        out.append(
            f'<rect x="{x + slot * 0.12:.1f}" y="{top + plot_h - height:.1f}" width="{slot * 0.76:.1f}" '
            f'height="{height:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: {_fmt(value)}</title></rect>'
        )
        if number % every == 0:
            out.append(
                f'<text x="{x + slot / 2:.1f}" y="{top + plot_h + 17}" text-anchor="middle">{escape(label)}</text>'
            )
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    out.append(_labels(axes, left, top, plot_w, plot_h))
    out.append("</svg>")
    return "".join(out)


def _open(axes: Axes) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {axes.width} {axes.height}" width="{axes.width}" height="{axes.height}" '
        f'role="img" aria-label="{escape(axes.title)}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{axes.width / 2}" y="18" text-anchor="middle" class="title">{escape(axes.title)}</text>'
    )


def _labels(axes: Axes, left: int, top: int, plot_w: int, plot_h: int) -> str:
    return (
        f'<text x="{left + plot_w / 2}" y="{axes.height - 8}" text-anchor="middle">{escape(axes.x_label)}</text>'
        f'<text transform="translate(14,{top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(axes.y_label)}</text>"
    )


def _legend(axes: Axes, series: list[Series]) -> str:
    if len(series) < 2:
        return ""
    top, right, _, left = axes.margin
    out = []
    for number, s in enumerate(series):
        y = top + 10 + 15 * number
        x = left + 8
        colour = PALETTE[number % len(PALETTE)]
        out.append(
            f'<rect x="{x}" y="{y - 8}" width="12" height="4" fill="{colour}" transform="translate(0,3)"/>'
            f'<text x="{x + 17}" y="{y}" class="legend">{escape(s.name)}</text>'
        )
    return "".join(out)


def downloadable(svg: str, filename: str) -> str:
    """A chart with a link that saves it as an .svg file (the report has no server to fetch it from)."""
    import base64

    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f'<div class="chart-box">{svg}<a class="download" download="{escape(filename)}" '
        f'href="data:image/svg+xml;base64,{data}">download SVG</a></div>'
    )


def _empty(axes: Axes, message: str) -> str:
    return (
        _open(axes) + f'<text x="{axes.width / 2}" y="{axes.height / 2}" text-anchor="middle">{escape(message)}'
        "</text></svg>"
    )
