"""Prometheus text-format metrics for the server: counters, gauges and histograms, thread-safe, no dependency.

Every metric is declared once in `SERVER_METRICS` (name, type, help, histogram buckets); docs/serving.md
has the glossary. `render()` writes the text exposition format (version 0.0.4) that Prometheus scrapes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    buckets: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    """Label names; a metric without labels is shown as 0 before its first event."""


SERVER_METRICS = [
    MetricSpec("tether_requests_total", "counter", "HTTP requests answered, by route and status code.",
               labels=("route", "status")),
    MetricSpec("tether_request_latency_seconds", "histogram", "Time from request received to response sent.",
               LATENCY_BUCKETS, ("route",)),
    MetricSpec("tether_prompt_tokens_total", "counter", "Prompt tokens of generation requests that were run."),
    MetricSpec("tether_generated_tokens_total", "counter",
               "Tokens generated (every sampled sequence, best_of candidates included)."),
    MetricSpec("tether_generation_seconds_total", "counter", "Wall time spent inside the policy's generate."),
    MetricSpec("tether_scored_sequences_total", "counter", "Sequences scored by the reward model."),
    MetricSpec("tether_batches_total", "counter", "Model batches run by the worker, by kind (generate, score).",
               labels=("kind",)),
    MetricSpec("tether_batch_requests", "histogram", "Requests served together in one model batch.", BATCH_BUCKETS,
               ("kind",)),
    MetricSpec("tether_batch_sequences", "histogram", "Sequences in one model batch (requests × samples).",
               BATCH_BUCKETS, ("kind",)),
    MetricSpec("tether_batch_requests_max", "gauge", "Most requests served together in one batch so far.",
               labels=("kind",)),
    MetricSpec("tether_queue_depth", "gauge", "Requests waiting for the worker now."),
    MetricSpec("tether_timeouts_total", "counter", "Requests answered 504 because they exceeded the request timeout."),
    MetricSpec("tether_rejected_total", "counter", "Requests refused before running, by reason (queue_full).",
               labels=("reason",)),
]

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, object]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _format_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = [*labels, extra] if extra else list(labels)
    if not items:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in items)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(items, escaped)) + "}"


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """A registry of the declared metrics; `inc`, `set`, `observe` take label values as keywords."""

    def __init__(self, specs: list[MetricSpec] = SERVER_METRICS):
        self.specs = {s.name: s for s in specs}
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {name: {} for name in self.specs}
        self._hist: dict[str, dict[Labels, list[float]]] = {name: {} for name in self.specs}

    def _spec(self, name: str, kind: str) -> MetricSpec:
        spec = self.specs[name]
        if spec.kind != kind:
            raise TypeError(f"{name} is a {spec.kind}, not a {kind}")
        return spec

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        self._spec(name, "counter")
        key = _labels(labels)
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0.0) + value

    def set(self, name: str, value: float, **labels) -> None:
        self._spec(name, "gauge")
        with self._lock:
            self._values[name][_labels(labels)] = float(value)

    def set_max(self, name: str, value: float, **labels) -> None:
        """Gauge ← max(gauge, value)."""
        self._spec(name, "gauge")
        key = _labels(labels)
        with self._lock:
            self._values[name][key] = max(self._values[name].get(key, -math.inf), float(value))

    def observe(self, name: str, value: float, **labels) -> None:
        spec = self._spec(name, "histogram")
        key = _labels(labels)
        with self._lock:
            # per bucket counts (not cumulative) + one overflow slot, then sum and count
            state = self._hist[name].setdefault(key, [0.0] * (len(spec.buckets) + 1) + [0.0, 0.0])
            slot = next((i for i, b in enumerate(spec.buckets) if value <= b), len(spec.buckets))
            state[slot] += 1
            state[-2] += value
            state[-1] += 1

    def value(self, name: str, **labels) -> float:
        """Current value of a counter/gauge (0 if never set); a histogram's observation count."""
        key = _labels(labels)
        with self._lock:
            if self.specs[name].kind == "histogram":
                state = self._hist[name].get(key)
                return state[-1] if state else 0.0
            return self._values[name].get(key, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, spec in self.specs.items():
                lines.append(f"# HELP {name} {spec.help}")
                lines.append(f"# TYPE {name} {spec.kind}")
                if spec.kind != "histogram":
                    series = self._values[name] or ({} if spec.labels else {(): 0.0})
                    for labels, v in sorted(series.items()):
                        lines.append(f"{name}{_format_labels(labels)} {_format_value(v)}")
                    continue
                for labels, state in sorted(self._hist[name].items()):
                    cumulative = 0.0
                    for bound, count in zip((*spec.buckets, math.inf), state[: len(spec.buckets) + 1]):
                        cumulative += count
                        le = ("le", _format_value(bound))
                        lines.append(f"{name}_bucket{_format_labels(labels, le)} {_format_value(cumulative)}")
                    lines.append(f"{name}_sum{_format_labels(labels)} {_format_value(state[-2])}")
                    lines.append(f"{name}_count{_format_labels(labels)} {_format_value(state[-1])}")
        return "\n".join(lines) + "\n"

