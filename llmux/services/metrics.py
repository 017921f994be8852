"""Prometheus metrics: ``GET /metrics`` in the text exposition format (prometheus-client).

Two sources, neither of which makes the core depend on this module:
- Requests: the canonical line of every request (``request_done``, called by the HTTP
  middleware in a ``finally``, so failed and cancelled requests count too) feeds the request
  counters, labelled by the route *template* (``/v1/models/{model_id}``), never the raw path,
  so label cardinality stays bounded; chat requests add tokens, time to first token and how
  they ended.
- Residency: a lifecycle listener (``ResidencyController.add_listener``) times loads and counts
  load failures and evictions; a collector reads VRAM, states, leases, queue, swaps and the
  measured switch costs from the controller at scrape time, so those gauges can never drift.

Each app gets its own ``CollectorRegistry``: two apps in one process (tests) never share counts.
``/metrics`` is open like ``/health``: it carries model names and numbers, no keys or clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from llmux.residency.controller import ResidencyController

LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LOAD_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
STATES = ("unloaded", "loading", "ready", "serving", "evicting", "parked", "unparking")


class Metrics:
    """The metric objects of one app, and the hooks that feed them."""

    def __init__(self, controller: ResidencyController, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        r = self.registry
        self.requests = Counter(
            "llmux_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "llmux_http_request_duration_seconds",
            "Time to the last byte of the response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llmux_tokens",
            "Tokens processed, by virtual model and kind (prompt/completion).",
            ["model", "kind"],
            registry=r,
        )
        self.completions = Counter(
            "llmux_chat_completions",
            "Chat completions by how they ended: a finish reason, cancelled (the client left) or error.",
            ["model", "finish_reason"],
            registry=r,
        )
        self.ttft = Histogram(
            "llmux_time_to_first_token_seconds",
            "Streamed chat: request start to first token.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.load_seconds = Histogram(
            "llmux_model_load_duration_seconds",
            "Model loads that succeeded.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter("llmux_model_load_failures", "Model loads that failed.", ["model"], registry=r)
        self.evictions = Counter(
            "llmux_model_evictions", "Models unloaded (to make room, by an admin, at shutdown).", ["model"], registry=r
        )
        r.register(ResidencyCollector(controller))
        ProcessCollector(registry=r)  # process_resident_memory_bytes etc.: CPU copies live in RAM
        PlatformCollector(registry=r)
        self._loading_since: dict[str, float] = {}
        controller.add_listener(self)

    # ---- lifecycle listener (python-statemachine calls these by name) ------------------------

    def after_transition(self, event: Any, machine: Any) -> None:
        model, event = machine.name, str(event)
        if event == "load":
            self._loading_since[model] = self._clock()
        elif event == "loaded" and model in self._loading_since:  # an un-park ends in ``loaded`` too:
            # not a load (``llmux_switch_phase_seconds{phase="unpark"}`` times it)
            self.load_seconds.labels(model).observe(self._clock() - self._loading_since.pop(model))
        elif event == "load_failed":
            self._loading_since.pop(model, None)
            self.load_failures.labels(model).inc()
        elif event in ("evicted", "drop"):  # a drop unloads a parked model; a park unloads nothing
            self.evictions.labels(model).inc()

    # ---- the canonical line of each request ------------------------------------------------

    def request_done(self, record: dict[str, Any]) -> None:
        route = record.get("route") or "unmatched"
        if route == "/metrics":  # a scrape should not count itself
            return
        self.requests.labels(record["method"], route, str(record["status"])).inc()
        self.latency.labels(record["method"], route).observe(record["duration_ms"] / 1000)
        if route == "/v1/chat/completions" and record.get("model"):
            self._chat_done(record)

    def _chat_done(self, record: dict[str, Any]) -> None:
        model = record["model"]
        for kind in ("prompt", "completion"):
            if record.get(f"{kind}_tokens"):
                self.tokens.labels(model, kind).inc(record[f"{kind}_tokens"])
        outcome = record.get("finish_reason") or ("cancelled" if record.get("cancelled") else "error")
        self.completions.labels(model, outcome).inc()
        if record.get("ttft_s") is not None:
            self.ttft.labels(model).observe(record["ttft_s"])

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ResidencyCollector(Collector):
    """Gauges read from the controller at scrape time."""

    def __init__(self, controller: ResidencyController) -> None:
        self.controller = controller

    def collect(self) -> Iterator[Metric]:
        c = self.controller
        views = c.status()
        yield GaugeMetricFamily("llmux_vram_budget_gb", "VRAM budget the planner fits models into.", value=c.budget_gb)
        yield GaugeMetricFamily(
            "llmux_vram_used_gb", "VRAM held by resident models (measured or estimated).", value=c.used_gb
        )
        yield GaugeMetricFamily(
            "llmux_host_ram_parked_gb", "Host RAM held by parked models (the warm tier).", value=c.host_used_gb
        )
        yield GaugeMetricFamily("llmux_queue_depth", "Requests waiting for a model.", value=c.queue_depth)
        yield CounterMetricFamily("llmux_swaps", "Residency changes started (loads and evictions).", value=c.swaps)
        footprint = GaugeMetricFamily(
            "llmux_model_vram_gb",
            "Footprint per physical model: measured after its first load, else the configured estimate.",
            labels=["model", "measured"],
        )
        resident = GaugeMetricFamily(
            "llmux_model_resident_vram_gb", "VRAM each model holds now (0 when unloaded).", labels=["model"]
        )
        state = GaugeMetricFamily(
            "llmux_model_state", "1 for the model's current lifecycle state.", labels=["model", "state"]
        )
        leases = GaugeMetricFamily("llmux_model_leases", "Requests running on the model.", labels=["model"])
        waiting = GaugeMetricFamily("llmux_model_waiting", "Requests queued for the model.", labels=["model"])
        loads = CounterMetricFamily("llmux_model_loads", "Successful loads per model.", labels=["model"])
        for v in views:
            footprint.add_metric([v.id, str(v.measured).lower()], v.vram_gb)
            resident.add_metric([v.id], v.vram_gb if v.state not in ("unloaded", "parked") else 0.0)
            for s in STATES:
                state.add_metric([v.id, s], 1.0 if v.state == s else 0.0)
            leases.add_metric([v.id], v.leases)
            waiting.add_metric([v.id], v.waiting)
            loads.add_metric([v.id], v.loads)
        yield from (footprint, resident, state, leases, waiting, loads)
        yield from _switch_costs(c)


def _switch_costs(c: ResidencyController) -> Iterator[Metric]:
    """Each model's switch phases (drain its requests, unload it, load it): what the switch
    policy weighs a swap by."""
    phases = SummaryMetricFamily(
        "llmux_switch_phase_seconds", "Time spent in each switch phase, per model.", labels=["model", "phase"]
    )
    average = GaugeMetricFamily(
        "llmux_switch_cost_seconds",
        "Moving average of each switch phase per model (the switch policy's estimate).",
        labels=["model", "phase"],
    )
    for (model, phase), stats in sorted(c.costs.snapshot().items()):
        phases.add_metric([model, phase], count_value=stats.count, sum_value=stats.total_s)
        average.add_metric([model, phase], stats.average_s)
    yield from (phases, average)
