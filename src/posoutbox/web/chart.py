"""The backlog chart, drawn on the server as inline SVG.

Each series is a line with its own colour and dash pattern, so the chart also
reads without colour. The page shows the same numbers in a table for
screen readers.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from posoutbox.web.queries import BacklogPoint

WIDTH = 720
HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 16, 40

#: Points per series at most; longer series keep the highest value of each
#: time bucket, because a backlog peak is what an operator looks for.
MAX_POINTS = 180

# Colours with a contrast of at least 3:1 against white, each with its own dash.
_STYLES = (
    ("#0b57d0", ""),
    ("#b3261e", "6 3"),
    ("#146c2e", "2 3"),
    ("#7a4d00", "10 3 2 3"),
    ("#6a1b9a", "1 2"),
    ("#00639b", "8 2 2 2 2 2"),
)


@dataclass(frozen=True)
class Series:
    """One line of the chart: a name and its (time, value) points in time order."""

    name: str
    points: list[tuple[datetime.datetime, int]]

    @property
    def last(self) -> int:
        return self.points[-1][1] if self.points else 0

    @property
    def peak(self) -> int:
        return max((value for _, value in self.points), default=0)


def build_series(points: Sequence[BacklogPoint], max_series: int = 6) -> list[Series]:
    """Group sampled points into series, keeping the ``max_series`` with the
    highest peak, and thin each series to MAX_POINTS by bucket maximum."""
    grouped: dict[str, list[tuple[datetime.datetime, int]]] = {}
    for point in points:
        grouped.setdefault(point.series, []).append(
            (point.sampled_at, point.unconfirmed)
        )
    series = [Series(name, _thin(values)) for name, values in grouped.items()]
    series.sort(key=lambda item: (-item.peak, item.name))
    return sorted(series[:max_series], key=lambda item: item.name)


def _thin(
    points: list[tuple[datetime.datetime, int]],
) -> list[tuple[datetime.datetime, int]]:
    if len(points) <= MAX_POINTS:
        return points
    start, end = points[0][0], points[-1][0]
    span = (end - start).total_seconds() or 1.0
    buckets: dict[int, tuple[datetime.datetime, int]] = {}
    for moment, value in points:
        index = min(
            MAX_POINTS - 1, int((moment - start).total_seconds() / span * MAX_POINTS)
        )
        kept = buckets.get(index)
        if kept is None or value > kept[1]:
            buckets[index] = (moment, value)
    return [buckets[index] for index in sorted(buckets)]


def _axis_top(peak: int) -> int:
    """Return the top of the value axis: four equal steps of 1, 2, 2.5 or 5
    times a power of ten, so that every grid line has a round label."""
    return 4 * _nice_ceiling(math.ceil(peak / 4))


def _nice_ceiling(value: int) -> int:
    """Return the smallest whole 1, 2, 2.5 or 5 times a power of ten >= value."""
    if value <= 1:
        return 1
    magnitude: int = 10 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * magnitude
        if candidate.is_integer() and candidate >= value:
            return int(candidate)
    return 10 * magnitude  # pragma: no cover


def render_svg(
    series: Sequence[Series],
    *,
    start: datetime.datetime,
    end: datetime.datetime,
    title: str,
    description: str,
) -> Markup:
    """Return the chart as an SVG element for a Jinja template."""
    top = _axis_top(max((item.peak for item in series), default=0))
    span = max((end - start).total_seconds(), 1.0)
    plot_width = WIDTH - _LEFT - _RIGHT
    plot_height = HEIGHT - _TOP - _BOTTOM

    def x(moment: datetime.datetime) -> float:
        return _LEFT + (moment - start).total_seconds() / span * plot_width

    def y(value: int) -> float:
        return _TOP + plot_height - value / top * plot_height

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="chart-title chart-description" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-description">{escape(description)}</desc>',
    ]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = round(top * fraction)
        level = y(value)
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{level:.1f}" '
            f'y2="{level:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{level + 4:.1f}" text-anchor="end" '
            f'class="axis">{value}</text>'
        )
    for moment, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text x="{x(moment):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}" '
            f'class="axis">{escape(moment.strftime("%Y-%m-%d %H:%M"))} UTC</text>'
        )
    for index, item in enumerate(series):
        colour, dash = _STYLES[index % len(_STYLES)]
        coordinates = " ".join(
            f"{x(moment):.1f},{y(value):.1f}" for moment, value in item.points
        )
        dash_attribute = f' stroke-dasharray="{dash}"' if dash else ""
        if len(item.points) == 1:
            moment, value = item.points[0]
            parts.append(
                f'<circle cx="{x(moment):.1f}" cy="{y(value):.1f}" r="3" '
                f'fill="{colour}"><title>{escape(item.name)}</title></circle>'
            )
            continue
        parts.append(
            f'<polyline points="{coordinates}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash_attribute}>'
            f"<title>{escape(item.name)}</title></polyline>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(series: Sequence[Series]) -> list[dict[str, str]]:
    """Return colour, dash and name of each series, for the legend below the chart."""
    return [
        {
            "name": item.name,
            "colour": _STYLES[index % len(_STYLES)][0],
            "dash": _STYLES[index % len(_STYLES)][1],
        }
        for index, item in enumerate(series)
    ]
