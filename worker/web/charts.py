"""The overview's charts: throughput and processing time (p50/p95) per queue, over the last
hour and day, drawn as inline SVG on the server from the persisted history (no script).

Each chart is a few polylines in a fixed viewBox; a step without tasks leaves a gap in the
processing-time lines. Everything drawn is numbers or names the template escapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.queue.worker_queue import WorkerQueue
from worker.web.history_api import HistoryPointOut, HistorySeries, Window, series

WIDTH = 360.0
HEIGHT = 90.0
_WINDOWS: tuple[Window, ...] = ("hour", "day")


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    css: str  # a class of the template's stylesheet
    segments: list[str]  # SVG polyline "points" attributes


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str
    top: float  # the value at the top edge
    lines: list[Line]
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class QueueCharts:
    queue: str
    window: Window
    throughput: Chart
    processing: Chart


def _segments(values: list[float | None], top: float) -> list[str]:
    """Polyline point lists of ``values`` scaled to the box, split where a value is None."""
    step = WIDTH / max(len(values) - 1, 1)
    segments: list[str] = []
    current: list[str] = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                segments.append(" ".join(current))
            current = []
            continue
        y = HEIGHT - (value / top * HEIGHT if top > 0 else 0.0)
        current.append(f"{index * step:.1f},{y:.1f}")
    if current:
        segments.append(" ".join(current))
    return segments


def _top(values: list[float | None]) -> float:
    numbers = [v for v in values if v is not None]
    return max(numbers, default=0.0) * 1.1 or 1.0


def charts_of(history: HistorySeries) -> QueueCharts:
    points: list[HistoryPointOut] = history.points
    per_minute = history.step_s / 60.0
    done: list[float | None] = [p.completed / per_minute for p in points]
    failed: list[float | None] = [(p.failed + p.discarded) / per_minute for p in points]
    p50: list[float | None] = [p.p50_s for p in points]
    p95: list[float | None] = [p.p95_s for p in points]
    start = points[0].at if points else 0.0
    end = points[-1].at + history.step_s if points else 0.0
    rate_top = _top(done + failed)
    time_top = _top(p50 + p95)
    return QueueCharts(
        queue=history.queue or "all queues",
        window=history.window,
        throughput=Chart(
            "throughput",
            "tasks/min",
            rate_top,
            [
                Line("completed", "ok", _segments(done, rate_top)),
                Line("failed", "bad", _segments(failed, rate_top)),
            ],
            start,
            end,
        ),
        processing=Chart(
            "processing time",
            "s",
            time_top,
            [
                Line("p50", "p50", _segments(p50, time_top)),
                Line("p95", "p95", _segments(p95, time_top)),
            ],
            start,
            end,
        ),
    )


async def overview_charts(queue: WorkerQueue, names: list[str]) -> list[QueueCharts]:
    """Charts for each queue in ``names``, the last hour then the last day."""
    charts = []
    for name in names:
        for window in _WINDOWS:
            charts.append(charts_of(await series(queue, window, name)))
    return charts
