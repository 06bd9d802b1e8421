"""Health history -> ECharts options for the device page (pure, tested)."""

from __future__ import annotations

from typing import Any


def _used_percent(free: int, total: int) -> float | None:
    return None if total <= 0 else round(100.0 * (total - free) / total, 1)


def health_chart(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A line chart of CPU, memory used and disk used (percent, left axis) and the 1-minute
    load (right axis) over time, from ``GET /targets/{id}/health`` items."""

    def series(name: str, values: list[Any], axis: int = 0) -> dict[str, Any]:
        return {"name": name, "type": "line", "showSymbol": False, "yAxisIndex": axis,
                "data": [[p["at"], v] for p, v in zip(points, values, strict=True)]}  # fmt: skip

    return {
        "animation": False,
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 48, "right": 48, "top": 32, "bottom": 32},
        "xAxis": {"type": "time"},
        "yAxis": [
            {"type": "value", "name": "%", "min": 0, "max": 100},
            {"type": "value", "name": "load", "min": 0},
        ],
        "series": [
            series("CPU %", [p["cpuPercent"] for p in points]),
            series(
                "memory used %",
                [_used_percent(p["memAvailableBytes"], p["memTotalBytes"]) for p in points],
            ),
            series(
                "disk used %",
                [_used_percent(p["diskFreeBytes"], p["diskTotalBytes"]) for p in points],
            ),
            series("load (1 min)", [p["load1m"] for p in points], axis=1),
        ],
    }
