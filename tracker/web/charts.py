"""Chart geometry for the console's server-rendered SVG (drawn by ``templates/console/_charts.html``).

Charts are computed here, in plain numbers, and drawn by a Jinja macro that escapes every label:
no chart library, no script, nothing from another host, and the page's CSP (which forbids inline
styles) holds because colours come from classes in ``console.css``. Each chart carries a title
and a one-sentence description that says the numbers, for the SVG's accessible name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

WIDTH = 560
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 26, 46


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str  # a class of console.css: the bar colour
    values: Sequence[float | None]  # one per category; None is "no data", drawn as nothing


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    label: str  # the value, written above the bar
    tooltip: str  # category, series and value


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class BarChart:
    id: str
    title: str
    description: str
    width: int
    height: int
    bars: list[Bar]
    categories: list[Text]
    ticks: list[Text]  # y-axis labels; each also draws a grid line at its y
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css, name)
    baseline: float = 0.0
    left: float = LEFT
    right: float = WIDTH - RIGHT
    empty: bool = False  # nothing to draw: the template says "no data" instead


@dataclass(frozen=True, slots=True)
class Meter:
    """A single share (0..1) drawn as a filled horizontal bar."""

    id: str
    title: str
    description: str
    width: int
    height: int
    filled: float  # width of the filled part
    css: str
    label: str


def nice_step(value: float, *, integers: bool) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``: grid lines on round numbers
    (whole ones for counts, which never get a tick at 0.25 of a case)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for multiple in (1, 2, 5, 10):
        step = multiple * power
        if value <= step + 1e-9 and (not integers or step >= 1):
            return float(max(step, 1) if integers else step)
    return 10 * power


def bar_chart(
    *,
    id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    description: str | None = None,
    integers: bool = True,
) -> BarChart:
    """Grouped vertical bars: one group per category, one bar per series, four grid steps high."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    baseline = HEIGHT - BOTTOM
    values = [v for s in series for v in s.values if v is not None]
    top = 4 * nice_step(max(values or [0]) / 4, integers=integers)
    group_w = plot_w / max(1, len(categories))
    bar_w = min(48.0, group_w * 0.8 / max(1, len(series)))
    bars: list[Bar] = []
    for c, category in enumerate(categories):
        start = LEFT + c * group_w + (group_w - bar_w * len(series)) / 2
        for s, one in enumerate(series):
            value = one.values[c]
            if value is None:
                continue
            height = plot_h * value / top
            named = f"{one.name} {fmt(value)}" if len(series) > 1 else fmt(value)
            bars.append(Bar(x=round(start + s * bar_w, 1), y=round(baseline - height, 1), width=round(bar_w - 2, 1),
                            height=round(height, 1), css=one.css, label=fmt(value), tooltip=f"{category}: {named}"))
    ticks = [Text(x=LEFT - 6, y=round(baseline - plot_h * i / 4, 1), text=fmt(top * i / 4)) for i in range(5)]
    labels = [Text(x=round(LEFT + (c + 0.5) * group_w, 1), y=baseline + 18, text=name)
              for c, name in enumerate(categories)]
    if description is None and not values:
        description = "No data in this window."
    elif description is None:
        description = "; ".join(
            f"{name}: " + ", ".join(f"{one.name} {fmt(v)}" if len(series) > 1 else fmt(v)
                                     for one in series if (v := one.values[c]) is not None)
            for c, name in enumerate(categories)
        )
    legend = [(one.css, one.name) for one in series] if len(series) > 1 else []
    return BarChart(id=id, title=title, description=description, width=WIDTH, height=HEIGHT, bars=bars,
                    categories=labels, ticks=ticks, legend=legend, baseline=baseline, empty=not values)


def meter(*, id: str, title: str, share: float | None, css: str = "c-good") -> Meter:
    """A share such as the on-time rate, as a bar of the full width (``None``: no data)."""
    width, height = WIDTH, 64
    if share is None:
        return Meter(id=id, title=title, description="No updates in this window.", width=width, height=height,
                     filled=0.0, css=css, label="no data")
    share = min(1.0, max(0.0, share))
    label = f"{share:.0%}"
    return Meter(id=id, title=title, description=f"{title}: {label}.", width=width, height=height,
                 filled=round((width - 2) * share, 1), css=css, label=label)
