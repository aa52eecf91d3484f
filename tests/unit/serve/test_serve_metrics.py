"""Prometheus text rendering: exact lines for counters, gauges and cumulative histogram buckets."""

from __future__ import annotations

import pytest

from tether.serve.metrics import Metrics, MetricSpec


def test_render_counter_gauge_histogram_exactly():
    m = Metrics([MetricSpec("c_total", "counter", "A counter.", labels=("route",)),
                 MetricSpec("g", "gauge", "A gauge."),
                 MetricSpec("h_seconds", "histogram", "A histogram.", (0.5, 1.0))])
    m.inc("c_total", route="/a")
    m.inc("c_total", 2, route="/a")
    m.inc("c_total", route='/b"x')
    m.set("g", 3)
    for v in (0.2, 0.5, 0.7, 4.0):
        m.observe("h_seconds", v)
    assert m.render().splitlines() == [
        "# HELP c_total A counter.", "# TYPE c_total counter",
        'c_total{route="/a"} 3',
        'c_total{route="/b\\"x"} 1',
        "# HELP g A gauge.", "# TYPE g gauge", "g 3",
        "# HELP h_seconds A histogram.", "# TYPE h_seconds histogram",
        'h_seconds_bucket{le="0.5"} 2',   # 0.2 and 0.5 (bounds are inclusive)
        'h_seconds_bucket{le="1"} 3',     # + 0.7
        'h_seconds_bucket{le="+Inf"} 4',  # + 4.0
        "h_seconds_sum 5.4",
        "h_seconds_count 4",
    ]


def test_unlabelled_metrics_show_zero_before_any_event_labelled_ones_nothing():
    m = Metrics([MetricSpec("plain_total", "counter", "x"), MetricSpec("by_kind_total", "counter", "y", labels=("k",))])
    lines = m.render().splitlines()
    assert "plain_total 0" in lines
    assert not any(line.startswith("by_kind_total") for line in lines)


def test_set_max_and_value():
    m = Metrics([MetricSpec("peak", "gauge", "x"), MetricSpec("h", "histogram", "y", (1.0,))])
    for v in (2, 5, 3):
        m.set_max("peak", v)
    m.observe("h", 0.1)
    m.observe("h", 9)
    assert m.value("peak") == 5
    assert m.value("h") == 2


def test_wrong_kind_is_refused():
    m = Metrics([MetricSpec("g", "gauge", "x")])
    with pytest.raises(TypeError, match="g is a gauge"):
        m.inc("g")
