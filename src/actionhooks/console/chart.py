"""The detail page's throughput chart: a hook's events per 10-second period over the last minutes, as the geometry
of an SVG bar chart drawn on the server (no script: the page's Content-Security-Policy allows none inline).

Each period is one bar: delivered events below, events of failed attempts stacked above them (a retried batch
counts once per attempt, as in the stats).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import NamedTuple

from ..store.base import DeliveryPeriod
from ..store.sql import COUNT_PERIOD_S

WINDOW_S = 600  # ten minutes
WIDTH = 600
HEIGHT = 120
BARS = WINDOW_S // COUNT_PERIOD_S


class Bar(NamedTuple):
    x: float
    width: float
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float
    title: str  # the period's counts, shown on hover


class Chart(NamedTuple):
    width: int
    height: int
    bars: list[Bar]
    peak: int  # the tallest bar's events (the scale's top)
    delivered: int  # over the window
    failed: int
    per_second: float  # delivered events per second over the window


def throughput(
    periods: Sequence[DeliveryPeriod], now: float, labels: tuple[str, str] = ("ok", "failed")
) -> Chart:
    """The chart of ``periods`` (the hook's non-empty ones, any order) over the ``WINDOW_S`` before ``now``.
    ``labels`` name delivered and failed events in the bars' titles."""
    newest = now - now % COUNT_PERIOD_S
    first = newest - (BARS - 1) * COUNT_PERIOD_S
    slots: dict[float, DeliveryPeriod] = {p.start: p for p in periods if first <= p.start <= newest}
    peak = max((p.delivered + p.failed for p in slots.values()), default=0)
    scale = (HEIGHT - 4) / peak if peak else 0.0
    step = WIDTH / BARS
    bars = []
    for i in range(BARS):
        start = first + i * COUNT_PERIOD_S
        found = slots.get(start)
        if found is None:
            continue
        at = datetime.datetime.fromtimestamp(start, datetime.UTC).strftime("%H:%M:%S")
        delivered_h = found.delivered * scale
        failed_h = found.failed * scale
        bars.append(
            Bar(
                x=round(i * step + 1, 2),
                width=round(step - 2, 2),
                delivered_y=round(HEIGHT - delivered_h, 2),
                delivered_height=round(delivered_h, 2),
                failed_y=round(HEIGHT - delivered_h - failed_h, 2),
                failed_height=round(failed_h, 2),
                title=f"{at} · {labels[0]} {found.delivered} · {labels[1]} {found.failed}",
            )
        )
    delivered = sum(p.delivered for p in slots.values())
    failed = sum(p.failed for p in slots.values())
    return Chart(WIDTH, HEIGHT, bars, peak, delivered, failed, delivered / WINDOW_S)
