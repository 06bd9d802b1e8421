"""Health history -> chart options."""

from __future__ import annotations

from swarmdeploy.gui.charts import health_chart


def test_chart_has_percent_series_and_load_on_its_own_axis() -> None:
    points = [
        {"at": 1000, "cpuPercent": 12.5, "load1m": 0.4, "memTotalBytes": 1000,
         "memAvailableBytes": 250, "diskTotalBytes": 0, "diskFreeBytes": 0},
        {"at": 2000, "cpuPercent": 50.0, "load1m": 1.2, "memTotalBytes": 1000,
         "memAvailableBytes": 500, "diskTotalBytes": 200, "diskFreeBytes": 50},
    ]  # fmt: skip
    chart = health_chart(points)
    by_name = {s["name"]: s for s in chart["series"]}
    assert by_name["CPU %"]["data"] == [[1000, 12.5], [2000, 50.0]]
    assert by_name["memory used %"]["data"] == [[1000, 75.0], [2000, 50.0]]
    assert by_name["disk used %"]["data"] == [[1000, None], [2000, 75.0]]  # unknown total: gap
    assert by_name["load (1 min)"]["yAxisIndex"] == 1
    assert health_chart([])["series"][0]["data"] == []
