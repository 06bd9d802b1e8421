"""The Prometheus text exposition."""

from __future__ import annotations

from swarmdeploy.manager.services.metrics import Exposition, Metrics, render_counters


def test_family_has_help_type_and_escaped_labels() -> None:
    out = Exposition()
    out.family("x_total", "counter", "Things.", [({"why": 'a"b\\c\nd'}, 2.0), ({}, 1.5)])
    assert out.render() == (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{why="a\\"b\\\\c\\nd"} 2\nx_total 1.5\n'
    )


def test_counters_rendered_by_label() -> None:
    metrics = Metrics()
    metrics.count_http(200)
    metrics.count_http(200)
    metrics.count_http(404)
    metrics.count_registration("ok")
    metrics.count_dropped(3)
    out = Exposition()
    render_counters(metrics, out)
    text = out.render()
    assert 'swarmdeploy_http_requests_total{status="200"} 2' in text
    assert 'swarmdeploy_http_requests_total{status="404"} 1' in text
    assert 'swarmdeploy_registrations_total{result="ok"} 1' in text
    assert "swarmdeploy_events_dropped_total 3" in text
