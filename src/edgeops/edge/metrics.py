"""Prometheus metrics of the agent, in a registry of its own (served at ``GET /metrics``).

:class:`Metrics` holds the series (requests, latency, predicted classes, the active model, the
inference log, rollbacks, connections, the process) and a plain count per (endpoint, status)
for ``/v1/status``; :class:`MetricsMiddleware` is the pure ASGI middleware that fills the
request ones; :class:`MetricsPortMiddleware` keeps ``/metrics`` on its own port when
``metrics_port`` is set. Names follow Prometheus' conventions (``promtool check metrics`` is
clean): counters end in ``_total``, units are seconds and bytes, facts are ``*_info`` series
with the value 1, and there are no ``*_created`` series.

    metrics = Metrics()
    metrics.follow(runtime)            # edgeops_model_info, free disk of the state directory
    app.add_middleware(MetricsMiddleware, metrics=metrics)
"""

from __future__ import annotations

import shutil
import time
from collections import Counter as PyCounter
from collections.abc import Iterator
from typing import Any

from edgeops.edge.errors import error_body

#: the endpoints counted by path; any other path is counted as "other"
API_PATHS = (
    "/v1/predict",
    "/v1/feedback",
    "/v1/bundles",
    "/v1/rollback",
    "/v1/logs",
    "/v1/logs/feedback",
    "/v1/status",
    "/healthz",
    "/readyz",
    "/metrics",
)

#: request latency buckets, 50 µs to 5 s: a predict takes well under a millisecond
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

#: the rollback triggers, created at 0 so that ``increase()`` sees the first rollback
ROLLBACK_TRIGGERS = ("manual", "probation", "crash")

#: why the agent closed a connection itself (see edge/limits.py)
CLOSE_REASONS = ("idle", "header_timeout", "header_too_large", "invalid_http", "evicted", "refused")


class Metrics:
    """Prometheus metrics in a registry of this agent's own."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            Histogram,
            PlatformCollector,
            ProcessCollector,
            disable_created_metrics,
        )

        from edgeops import __version__

        disable_created_metrics()  # no *_created series: one per counter, of no use here
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_open_fds, ...
        PlatformCollector(registry=r)  # python_info
        GCCollector(registry=r)
        Gauge(
            "edgeops_build_info",
            "The edgeops version of this agent (always 1)",
            ["version"],
            registry=r,
        ).labels(__version__).set(1)
        self.requests = Counter(
            "edgeops_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "edgeops_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.in_flight = Gauge(
            "edgeops_requests_in_flight", "Requests being handled (probes excepted)", registry=r
        )
        self.connections = Gauge("edgeops_connections", "Open HTTP connections", registry=r)
        self.closed = Counter(
            "edgeops_connections_closed",
            "Connections the agent closed itself, by reason",
            ["reason"],
            registry=r,
        )
        for reason in CLOSE_REASONS:
            self.closed.labels(reason)
        self.predicted = Counter(
            "edgeops_predictions", "Predicted rows by class", ["label"], registry=r
        )
        self.checks = Counter(
            "edgeops_check_predictions",
            "Rows predicted for a deploy's own check (X-Edgeops-Check): not logged, not traffic",
            ["kind"],
            registry=r,
        )
        self.switches = Counter(
            "edgeops_model_switches",
            "Changes of the active model (start, deploy, rollback)",
            registry=r,
        )
        self.log_rows = Gauge("edgeops_inference_log_rows", "Rows in the inference log", registry=r)
        self.log_max_rows = Gauge(
            "edgeops_inference_log_max_rows",
            "The inference log's row cap (log_max_rows)",
            registry=r,
        )
        self.log_bytes = Gauge(
            "edgeops_inference_log_bytes", "Inference log size on disk", registry=r
        )
        self.log_max_bytes = Gauge(
            "edgeops_inference_log_max_bytes",
            "The inference log's size cap (log_max_bytes)",
            registry=r,
        )
        self.log_dropped = Counter(
            "edgeops_inference_log_dropped", "Log rows dropped under overload", registry=r
        )
        self.rollbacks = Counter("edgeops_rollbacks", "Rollbacks", ["trigger"], registry=r)
        for trigger in ROLLBACK_TRIGGERS:
            self.rollbacks.labels(trigger)
        self.counts: PyCounter[tuple[str, int]] = PyCounter()
        self._predicted: dict[Any, Any] = {}
        self._dropped_seen = 0

    def follow(self, runtime: Any) -> None:
        """Publish the log's caps, and what is read from ``runtime`` at scrape time: the active
        model (``edgeops_model_info{version, model}``), the state disk's space."""
        self.log_max_rows.set(runtime.cfg.log_max_rows)
        self.log_max_bytes.set(runtime.cfg.log_max_bytes)
        self.registry.register(_RuntimeCollector(runtime))

    def count_predictions(self, labels: list[Any]) -> None:
        """Predicted-class counts; the labelled child counters are looked up once per class."""
        for lab in labels:
            child = self._predicted.get(lab)
            if child is None:
                child = self._predicted[lab] = self.predicted.labels(str(lab))
            child.inc()

    def count_checks(self, kind: str, rows: int) -> None:
        """Rows a deploy's check had predicted (never logged, apart from the traffic)."""
        self.checks.labels(kind).inc(rows)

    def set_version(self, version: str | None) -> None:
        """The runtime switched its active model (``edgeops_model_info`` reads which at scrape)."""
        if version:
            self.switches.inc()

    def log_stats(self, stats: dict[str, int]) -> None:
        """The inference log's ``stats()``: rows, bytes and the running count of dropped rows."""
        self.log_rows.set(stats["rows"])
        self.log_bytes.set(stats["bytes"])
        dropped = stats["dropped"]
        if dropped > self._dropped_seen:
            self.log_dropped.inc(dropped - self._dropped_seen)
        self._dropped_seen = dropped  # a reopened log counts from 0 again


class _RuntimeCollector:
    """``edgeops_model_info`` and the state directory's disk, read when Prometheus scrapes."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        info = InfoMetricFamily("edgeops_model", "The active model (absent: none is deployed)")
        bundle = self.runtime.bundle
        if bundle is not None:
            name = str((bundle.manifest.get("model") or {}).get("name", ""))
            info.add_metric([], {"version": bundle.version, "model": name})
        yield info
        try:
            disk = shutil.disk_usage(self.runtime.cfg.state_dir)
        except OSError:
            return
        yield GaugeMetricFamily(
            "edgeops_state_disk_free_bytes",
            "Free space on the state directory's file system",
            value=disk.free,
        )
        yield GaugeMetricFamily(
            "edgeops_state_disk_size_bytes",
            "Size of the state directory's file system",
            value=disk.total,
        )


class MetricsMiddleware:
    """Pure ASGI middleware: request counts and latency by endpoint and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in API_PATHS else "other"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.counts[(endpoint, status)] += 1


class MetricsPortMiddleware:
    """With ``metrics_port`` set: that port serves ``/metrics`` only, the main port all but it
    (either answers 404 for the other's paths)."""

    def __init__(self, app: Any, metrics_port: int) -> None:
        self.app, self.metrics_port = app, metrics_port

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            server = scope.get("server") or ("", None)
            on_metrics_port = server[1] == self.metrics_port
            if on_metrics_port != (scope.get("path") == "/metrics"):
                body = error_body("not_found", "Not Found")
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
