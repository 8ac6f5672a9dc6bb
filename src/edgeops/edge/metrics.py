"""Prometheus metrics of the agent, in a registry of its own (served at ``GET /metrics``).

:class:`Metrics` holds the counters and gauges (requests, latency, active version, predicted
classes, inference-log size, rollbacks) and a plain count per (endpoint, status) for
``/v1/status``; :class:`MetricsMiddleware` is the pure ASGI middleware that fills the request ones.

    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
"""

from __future__ import annotations

import time
from collections import Counter as PyCounter
from typing import Any

#: the endpoints counted by path; any other path is counted as "other"
API_PATHS = ("/v1/predict", "/v1/feedback", "/v1/bundles", "/v1/rollback", "/v1/logs",
             "/v1/logs/feedback", "/v1/status", "/healthz", "/readyz", "/metrics")  # fmt: skip


class Metrics:
    """Prometheus metrics in a registry of this agent's own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgeops_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "edgeops_request_seconds", "HTTP request latency", ["endpoint"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )  # fmt: skip
        self.model_info = Gauge(
            "edgeops_active_model",
            "1 for the active model version",
            ["version"],
            registry=self.registry,
        )
        self.predicted = Counter(
            "edgeops_predictions", "Predicted rows by class", ["label"], registry=self.registry
        )
        self.log_rows = Gauge(
            "edgeops_inference_log_rows", "Rows in the inference log", registry=self.registry
        )
        self.log_bytes = Gauge(
            "edgeops_inference_log_bytes", "Inference log size on disk", registry=self.registry
        )
        self.log_dropped = Gauge(
            "edgeops_inference_log_dropped",
            "Log rows dropped under overload",
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "edgeops_rollbacks", "Rollbacks", ["trigger"], registry=self.registry
        )
        self.counts: PyCounter[tuple[str, int]] = PyCounter()
        self._predicted: dict[Any, Any] = {}

    def count_predictions(self, labels: list[Any]) -> None:
        """Predicted-class counts; the labelled child counters are looked up once per class."""
        for lab in labels:
            child = self._predicted.get(lab)
            if child is None:
                child = self._predicted[lab] = self.predicted.labels(str(lab))
            child.inc()

    def set_version(self, version: str | None) -> None:
        """Mark ``version`` as the active model (none: no model)."""
        self.model_info.clear()
        if version:
            self.model_info.labels(version).set(1)


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
