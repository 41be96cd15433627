"""The hourly chart of the dashboard as inline SVG: stacked bars, drawn on the server.

The page's Content-Security-Policy allows no script and no image source; an ``<svg>`` element
inside the page is neither, so the chart needs nothing the policy forbids. Each bar segment has
a ``<title>`` (the browser shows it on hover) and the legend repeats the colours as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from service.admin.activity import Activity
from service.queue.records import STATES
from service.times import iso

STATE_COLOURS: Mapping[str, str] = {
    "queued": "#9aa5b8",
    "processing": "#6c8ed8",
    "retrying": "#b08be0",
    "created": "#3f9e5a",
    "attached": "#7cc68f",
    "skipped": "#c9d27a",
    "rejected": "#e0a14a",
    "dead": "#d2504f",
    "erased": "#5d6370",
}
SOURCE_COLOURS = ("#3b6fd1", "#e07b39", "#4aa35d", "#b9509d", "#c9a227", "#4bb3c5", "#8a6d55")
BAR, GAP, HEIGHT, LABELS, TOP = 16, 4, 110, 16, 12


def _hour(start: float) -> str:
    return iso(start)[11:16]


def _bars(
    starts: Sequence[float], series: Mapping[str, Sequence[int]], colours: Mapping[str, str]
) -> str:
    """One stacked bar per hour, a segment per series (in the mapping's order)."""
    totals = [sum(values[h] for values in series.values()) for h in range(len(starts))]
    scale = HEIGHT / max(1, *totals)
    width, bottom = len(starts) * (BAR + GAP), TOP + HEIGHT
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{bottom + LABELS}" '
        f'viewBox="0 0 {width} {bottom + LABELS}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="0" y1="{bottom}" x2="{width}" y2="{bottom}" stroke="#c5cad3"/>'
    ]
    for h, start in enumerate(starts):
        x, top = h * (BAR + GAP) + GAP / 2, float(bottom)
        for name, values in series.items():
            if not values[h]:
                continue
            tall = values[h] * scale
            top -= tall
            parts.append(
                f'<rect x="{x}" y="{top:.1f}" width="{BAR}" height="{tall:.1f}" '
                f'fill="{colours[name]}" data-hour="{_hour(start)}" data-series="{escape(name)}">'
                f"<title>{_hour(start)} UTC · {escape(name)}: {values[h]}</title></rect>"
            )
        if totals[h]:
            parts.append(
                f'<text x="{x + BAR / 2}" y="{top - 2:.1f}" font-size="9" text-anchor="middle" '
                f'fill="#4b5563">{totals[h]}</text>'
            )
        if h % 3 == 0:
            parts.append(
                f'<text x="{x}" y="{bottom + 12}" font-size="10" fill="#4b5563">'
                f"{_hour(start)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend(series: Mapping[str, Sequence[int]], colours: Mapping[str, str]) -> str:
    items = "".join(
        f'<span class="key"><span class="swatch" style="background:{colours[name]}"></span>'
        f"{escape(name)} {sum(values)}</span>"
        for name, values in series.items()
        if sum(values)
    )
    return f'<p class="legend">{items}</p>'


def hourly_chart(activity: Activity) -> str:
    """Both charts (by state, by source) with their legends, or a line saying there is none."""
    if not activity.total:
        return '<p class="muted" id="chart-empty">No submissions in the last 24 hours.</p>'
    states: dict[str, list[int]] = {
        s: activity.by_state[s] for s in STATES if sum(activity.by_state.get(s, ()))
    }
    sources = activity.by_source
    source_colours = {
        name: SOURCE_COLOURS[i % len(SOURCE_COLOURS)] for i, name in enumerate(sources)
    }
    sample = ""
    if activity.sampled is not None:
        sample = f" (the newest {activity.sampled:,} of {activity.total:,})"
    return (
        '<div class="charts">'
        f'<figure id="chart-states"><figcaption>By state</figcaption>'
        f"{_bars(activity.starts, states, STATE_COLOURS)}{_legend(states, STATE_COLOURS)}"
        "</figure>"
        f'<figure id="chart-sources"><figcaption>By source{escape(sample)}</figcaption>'
        f"{_bars(activity.starts, sources, source_colours)}{_legend(sources, source_colours)}"
        "</figure></div>"
    )
