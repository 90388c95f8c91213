"""A result series as a picture: the values over time, the reference range (or, for eGFR, the
KDIGO categories) shaded behind them, results outside the range marked. One layout, drawn as
SVG (for a browser) or PNG (for an app or a report). Pure but for the PNG encoder."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw

from hs_edge.trends import STAGES, Point

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 40, 40, 48
INSET = 16  # the first and last results stand clear of the axes
REFERENCE_FILL, NORMAL, ABNORMAL, INK, GRID = "#d8f0dc", "#1f5fa8", "#c62828", "#222222", "#dddddd"
# KDIGO GFR categories, G1 (>= 90) to G5 (< 15), shaded from green to red
STAGE_FILLS = ("#e3f4e1", "#f1f7d9", "#fdf3cf", "#fde3c4", "#fbd0c0", "#f6b8b8")


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    label: str
    fill: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    outside: bool  # outside the reference range


@dataclass(frozen=True)
class Layout:
    title: str
    unit: str
    bands: tuple[tuple[float, float, Band], ...]  # (top y, bottom y, band)
    dots: tuple[Dot, ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]


def reference_bands(low: float | None, high: float | None) -> tuple[Band, ...]:
    """The reference range as the one band, when the results carry one."""
    if low is None and high is None:
        return ()
    text = "reference " + "-".join("" if v is None else _number(v) for v in (low, high))
    lower = -math.inf if low is None else low
    return (Band(lower, math.inf if high is None else high, text, REFERENCE_FILL),)


def kdigo_bands() -> tuple[Band, ...]:
    """G1 to G5 as bands of eGFR (mL/min/1.73 m2)."""
    bands, upper = [], math.inf
    for (lower, name), fill in zip(STAGES, STAGE_FILLS, strict=True):
        bands.append(Band(lower, upper, name, fill))
        upper = lower
    return tuple(bands)


def layout(title: str, unit: str, points: Sequence[Point], bands: Sequence[Band] = ()) -> Layout:
    """Where everything goes on a WIDTH x HEIGHT canvas. Results outside the first band (the
    reference range) are marked; with several bands (KDIGO) none is 'outside'."""
    ordered = sorted(points, key=lambda p: p.at)
    values = [p.value for p in ordered]
    finite = [v for b in bands for v in (b.low, b.high) if math.isfinite(v)]
    low, high = _span(values + ([min(finite), max(finite)] if finite and len(bands) == 1 else []))
    if len(bands) > 1:  # categories: show those the values reach, and the next one each side
        low, high = _span([*values, *(v for v in finite if low - 30 <= v <= high + 30)])
    start, end = (ordered[0].at, ordered[-1].at) if ordered else (None, None)

    def y(value: float) -> float:
        clipped = min(max(value, low), high)
        return TOP + (high - clipped) / (high - low) * (HEIGHT - TOP - BOTTOM)

    def x(at: datetime) -> float:
        if start is None or end is None or end == start:
            return (LEFT + WIDTH - RIGHT) / 2
        return LEFT + INSET + (at - start) / (end - start) * (WIDTH - LEFT - RIGHT - 2 * INSET)

    reference = bands[0] if len(bands) == 1 else None
    dots = tuple(
        Dot(round(x(p.at), 1), round(y(p.value), 1),
            reference is not None and not reference.low <= p.value <= reference.high)
        for p in ordered
    )  # fmt: skip
    placed = tuple(
        (round(y(b.high), 1), round(y(b.low), 1), b) for b in bands if b.high > low and b.low < high
    )
    return Layout(title, unit, placed, dots, _y_ticks(low, high, y), _x_ticks(start, end, x))


def svg(chart: Layout) -> str:
    """The chart as a standalone SVG document (with a title and description for screen
    readers)."""
    plot_right = WIDTH - RIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12" role="img">',
        f"<title>{escape(chart.title)}</title>",
        f"<desc>{len(chart.dots)} results in {escape(chart.unit)}; "
        f"{sum(d.outside for d in chart.dots)} outside the reference range</desc>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    for top, bottom, band in chart.bands:
        parts.append(f'<rect class="band" x="{LEFT}" y="{top}" width="{plot_right - LEFT}" '
                     f'height="{round(bottom - top, 1)}" fill="{band.fill}"/>')  # fmt: skip
        parts.append(f'<text x="{LEFT + 4}" y="{round(top + 14, 1)}" '
                     f'fill="#555555">{escape(band.label)}</text>')  # fmt: skip
    for at, label in chart.y_ticks:
        parts.append(f'<line x1="{LEFT}" x2="{plot_right}" y1="{at}" y2="{at}" stroke="{GRID}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{at + 4}" text-anchor="end">{escape(label)}</text>')
    for at, label in chart.x_ticks:
        parts.append(f'<text x="{at}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">'
                     f"{escape(label)}</text>")  # fmt: skip
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="{INK}"/>'
    )
    parts.append(f'<line x1="{LEFT}" x2="{plot_right}" y1="{HEIGHT - BOTTOM}" '
                 f'y2="{HEIGHT - BOTTOM}" stroke="{INK}"/>')  # fmt: skip
    if len(chart.dots) > 1:
        line = " ".join(f"{d.x},{d.y}" for d in chart.dots)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{NORMAL}" stroke-width="2"/>')
    for dot in chart.dots:
        colour = ABNORMAL if dot.outside else NORMAL
        parts.append(f'<circle class="{"outside" if dot.outside else "inside"}" cx="{dot.x}" '
                     f'cy="{dot.y}" r="4.5" fill="{colour}"/>')  # fmt: skip
    parts.append(f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">'
                 f"{escape(chart.title)} ({escape(chart.unit)})</text>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def png(chart: Layout) -> bytes:
    """The same chart as a PNG image."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "#ffffff")
    draw = ImageDraw.Draw(image)
    plot_right = WIDTH - RIGHT
    for top, bottom, band in chart.bands:
        draw.rectangle((LEFT, top, plot_right, bottom), fill=band.fill)
        draw.text((LEFT + 4, top + 4), band.label, fill="#555555")
    for at, label in chart.y_ticks:
        draw.line((LEFT, at, plot_right, at), fill=GRID)
        draw.text((LEFT - 6, at), label, fill=INK, anchor="rm")
    for at, label in chart.x_ticks:
        draw.text((at, HEIGHT - BOTTOM + 12), label, fill=INK, anchor="ma")
    draw.line((LEFT, TOP, LEFT, HEIGHT - BOTTOM), fill=INK)
    draw.line((LEFT, HEIGHT - BOTTOM, plot_right, HEIGHT - BOTTOM), fill=INK)
    if len(chart.dots) > 1:
        draw.line([(d.x, d.y) for d in chart.dots], fill=NORMAL, width=2)
    for dot in chart.dots:
        colour = ABNORMAL if dot.outside else NORMAL
        draw.ellipse((dot.x - 4.5, dot.y - 4.5, dot.x + 4.5, dot.y + 4.5), fill=colour)
    draw.text((LEFT, 14), f"{chart.title} ({chart.unit})", fill=INK)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _span(values: Sequence[float]) -> tuple[float, float]:
    """The value axis: the values with a tenth of their range either side."""
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) / 10 or max(abs(high) / 10, 1.0)
    return low - pad, high + pad


def _y_ticks(low: float, high: float, y: Callable[[float], float]) -> tuple[tuple[float, str], ...]:
    step = _nice((high - low) / 5)
    value, ticks = math.ceil(low / step) * step, []
    while value <= high:
        ticks.append((round(y(value), 1), _number(value)))
        value += step
    return tuple(ticks)


def _x_ticks(
    start: datetime | None, end: datetime | None, x: Callable[[datetime], float]
) -> tuple[tuple[float, str], ...]:
    if start is None or end is None:
        return ()
    moments = [start] if end == start else [start + (end - start) * i / 4 for i in range(5)]
    return tuple((round(x(m), 1), m.date().isoformat()) for m in moments)


def _nice(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(magnitude * f for f in (1, 2, 5, 10) if magnitude * f >= raw)


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")
