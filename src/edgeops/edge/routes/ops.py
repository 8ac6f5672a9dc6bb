"""Operations routes: status for operators, probes and metrics for supervisors.

GET /v1/status   active/previous version, probation, counts, history (either token)
GET /healthz     the process is alive                                (open)
GET /readyz      a verified model is loaded and serving; else 503    (open)
GET /metrics     Prometheus metrics        (open; the metrics or deploy token if metrics_token)

With ``metrics_port`` set, ``/metrics`` is served on that port only (metrics.MetricsPortMiddleware).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from edgeops.edge.auth import _token, require
from edgeops.edge.bodies import json_response
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ERROR_SCHEMA, ApiError
from edgeops.edge.runtime import Runtime


class OpsRoutes:
    """The handlers of ``/v1/status``, the probes and ``/metrics`` over ``runtime``."""

    def __init__(self, runtime: Runtime, cfg: AgentConfig) -> None:
        self.runtime, self.cfg = runtime, cfg

    async def status(self, request: Request) -> Any:
        """Active and previous version, probation, request and error counts, recent history."""
        require(request, self.cfg, "any")
        return json_response(await run_in_threadpool(self.runtime.status))

    async def healthz(self) -> Any:
        """The process is alive."""
        return json_response({"status": "ok"})

    async def readyz(self) -> Any:
        """A verified model is loaded and serving."""
        bundle = self.runtime.bundle
        if bundle is None:
            raise ApiError(503, "no_model", "no model is deployed yet")
        return json_response({"status": "ready", "model_version": bundle.version})

    async def prom(self, request: Request) -> Any:
        """Prometheus metrics (the text format ``promtool check metrics`` accepts)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.cfg.metrics_token:
            token = _token(request).encode()
            if not any(
                hmac.compare_digest(token, t.encode())
                for t in (self.cfg.metrics_token, self.cfg.deploy_token)
                if t
            ):
                raise ApiError(
                    401,
                    "unauthorized",
                    "/metrics needs the metrics token (Authorization: Bearer <token>)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return Response(
            generate_latest(self.runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )


def add_routes(app: FastAPI, runtime: Runtime, cfg: AgentConfig) -> None:
    """Register ``GET /v1/status``, ``/healthz``, ``/readyz`` and ``/metrics`` on ``app``."""
    routes = OpsRoutes(runtime, cfg)
    app.add_api_route("/v1/status", routes.status, methods=["GET"], tags=["monitor"])
    app.add_api_route("/healthz", routes.healthz, methods=["GET"], tags=["probes"])
    app.add_api_route(
        "/readyz", routes.readyz, methods=["GET"], tags=["probes"], responses={503: ERROR_SCHEMA}
    )
    app.add_api_route(
        "/metrics", routes.prom, methods=["GET"], tags=["probes"], responses={401: ERROR_SCHEMA}
    )
