"""Hand-written inline SVG charts for the HTML report: no plotting library, no external file.

Each function returns one ``<svg>`` element as text (with a ``<title>`` for accessibility and a
``data-chart`` attribute naming its kind). Text is escaped; numbers are drawn in a fixed frame
``WIDTH`` × ``HEIGHT`` px with margins for axes and a legend.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

WIDTH, HEIGHT = 640, 320
_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 56, 150, 34, 44
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float) -> str:
    if 1000 <= abs(value) < 1e7:
        return f"{value:,.0f}"
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _open(kind: str, title: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" data-chart="{_esc(kind)}" role="img">',
        f"<title>{_esc(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="14"'
        f' font-weight="bold">{_esc(title)}</text>',
    ]


def _empty(kind: str, title: str) -> str:
    parts = _open(kind, title)
    parts.append(
        f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" fill="#888">'
        "no data</text></svg>"
    )
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _axes(parts: list[str], x_label: str, y_label: str, y_lo: float, y_hi: float) -> None:
    x0, x1 = _M_LEFT, WIDTH - _M_RIGHT
    y0, y1 = HEIGHT - _M_BOTTOM, _M_TOP
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>')
    for value in _ticks(y_lo, y_hi):
        y = y0 - (value - y_lo) / ((y_hi - y_lo) or 1) * (y0 - y1)
        parts.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{_num(value)}</text>"
        )
    parts.append(
        f'<text x="{(x0 + x1) / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11">'
        f"{_esc(x_label)}</text>"
    )
    parts.append(
        f'<text x="14" y="{(y0 + y1) / 2:.0f}" text-anchor="middle" font-size="11"'
        f' transform="rotate(-90 14 {(y0 + y1) / 2:.0f})">{_esc(y_label)}</text>'
    )


def _legend(parts: list[str], names: Sequence[str]) -> None:
    x = WIDTH - _M_RIGHT + 12
    for i, name in enumerate(names):
        y = _M_TOP + 8 + 16 * i
        color = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="{y + 1}" font-size="11">{_esc(name)}</text>')


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    x_label: str,
    y_label: str,
    step: bool = True,
) -> str:
    """One polyline per series (a step function when `step`), shared axes, a legend."""
    points = [p for s in series.values() for p in s]
    if not points:
        return _empty("line", title)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    parts = _open("line", title)
    _axes(parts, x_label, y_label, y_lo, y_hi)
    x0, x1, y0, y1 = _M_LEFT, WIDTH - _M_RIGHT, HEIGHT - _M_BOTTOM, _M_TOP

    def sx(x: float) -> float:
        return x0 + (x - x_lo) / ((x_hi - x_lo) or 1) * (x1 - x0)

    def sy(y: float) -> float:
        return y0 - (y - y_lo) / (y_hi - y_lo) * (y0 - y1)

    for value in _ticks(x_lo, x_hi):
        parts.append(
            f'<text x="{sx(value):.1f}" y="{y0 + 14}" text-anchor="middle" font-size="10">'
            f"{_num(value)}</text>"
        )
    for i, (_, pts) in enumerate(series.items()):
        coords: list[str] = []
        ordered = sorted(pts)
        for j, (x, y) in enumerate(ordered):
            if step and j:
                coords.append(f"{sx(x):.1f},{sy(ordered[j - 1][1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
        if step and ordered:  # hold the last value to the right edge
            coords.append(f"{x1:.1f},{sy(ordered[-1][1]):.1f}")
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2"'
            f' points="{" ".join(coords)}"/>'
        )
    _legend(parts, list(series))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Grouped bars: one group per label, one bar per series."""
    values = [v for s in series.values() for v in s]
    if not labels or not values:
        return _empty("bar", title)
    y_hi = max(max(values), 0.0) or 1.0
    y_lo = min(min(values), 0.0)
    parts = _open("bar", title)
    _axes(parts, x_label, y_label, y_lo, y_hi)
    x0, x1, y0, y1 = _M_LEFT, WIDTH - _M_RIGHT, HEIGHT - _M_BOTTOM, _M_TOP
    group_w = (x1 - x0) / len(labels)
    bar_w = group_w * 0.8 / max(len(series), 1)

    def sy(y: float) -> float:
        return y0 - (y - y_lo) / ((y_hi - y_lo) or 1) * (y0 - y1)

    for g, label in enumerate(labels):
        gx = x0 + g * group_w + group_w * 0.1
        for i, (_, vals) in enumerate(series.items()):
            value = vals[g]
            top, base = sy(max(value, 0.0)), sy(min(value, 0.0))
            parts.append(
                f'<rect x="{gx + i * bar_w:.1f}" y="{top:.1f}" width="{max(bar_w - 1, 1):.1f}"'
                f' height="{max(base - top, 0.5):.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                f"<title>{_esc(label)}: {_num(value)}</title></rect>"
            )
        if len(labels) <= 30:
            parts.append(
                f'<text x="{gx + group_w * 0.4:.1f}" y="{y0 + 14}" text-anchor="middle"'
                f' font-size="10">{_esc(label)}</text>'
            )
    if len(series) > 1:
        _legend(parts, list(series))
    parts.append("</svg>")
    return "".join(parts)


def heatmap(
    title: str,
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    x_label: str,
    y_label: str,
    fmt: str = "{:.2f}",
) -> str:
    """A grid of cells shaded from white (0) to dark blue (the largest value), value in each."""
    if not rows or not columns:
        return _empty("heatmap", title)
    peak = max((v for row in values for v in row), default=0.0) or 1.0
    parts = _open("heatmap", title)
    x0, x1, y0, y1 = _M_LEFT + 20, WIDTH - 40, HEIGHT - _M_BOTTOM, _M_TOP
    cw, ch = (x1 - x0) / len(columns), (y0 - y1) / len(rows)
    for r, name in enumerate(rows):
        y = y1 + r * ch
        parts.append(
            f'<text x="{x0 - 6}" y="{y + ch / 2 + 4:.1f}" text-anchor="end" font-size="11">'
            f"{_esc(name)}</text>"
        )
        for c, value in enumerate(values[r]):
            shade = value / peak
            fill = (
                f"rgb({int(255 - 225 * shade)},{int(255 - 165 * shade)},{int(255 - 75 * shade)})"
            )
            parts.append(
                f'<rect x="{x0 + c * cw:.1f}" y="{y:.1f}" width="{cw:.1f}" height="{ch:.1f}"'
                f' fill="{fill}" stroke="#fff"><title>{_esc(name)} / {_esc(columns[c])}:'
                f" {fmt.format(value)}</title></rect>"
            )
            if cw >= 24 and ch >= 14:
                color = "#fff" if shade > 0.6 else "#222"
                parts.append(
                    f'<text x="{x0 + (c + 0.5) * cw:.1f}" y="{y + ch / 2 + 4:.1f}" font-size="9"'
                    f' text-anchor="middle" fill="{color}">{fmt.format(value)}</text>'
                )
    for c, name in enumerate(columns):
        parts.append(
            f'<text x="{x0 + (c + 0.5) * cw:.1f}" y="{y0 + 14}" text-anchor="middle"'
            f' font-size="10">{_esc(name)}</text>'
        )
    parts.append(
        f'<text x="{(x0 + x1) / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11">'
        f"{_esc(x_label)}</text>"
    )
    parts.append(
        f'<text x="12" y="{(y0 + y1) / 2:.0f}" text-anchor="middle" font-size="11"'
        f' transform="rotate(-90 12 {(y0 + y1) / 2:.0f})">{_esc(y_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def finite(values: Sequence[float | None]) -> list[float]:
    """The values that are numbers and finite."""
    return [v for v in values if v is not None and math.isfinite(v)]
