"""The edgeops agent: verify a bundle, switch to it atomically, serve it, log, roll back.

    edgeops edge serve --state-dir /var/lib/edgeops --public-key /etc/edgeops/signing.pub

API (OpenAPI at /openapi.json, docs at /docs):
  POST /v1/predict    rows of raw features -> label + probabilities per row     (predict or deploy token)
  POST /v1/feedback   attach a ground-truth label to a request id              (predict or deploy token)
  POST /v1/bundles    upload a .tar.gz bundle: verify, load, golden check, switch (deploy token)
  GET  /v1/bundles/V  download a bundle still on the device                     (deploy token)
  POST /v1/rollback   back to the previous (or a named) version                (deploy token)
  GET  /v1/logs       the inference log, by id cursor (+ last id, log id)      (deploy token)
  GET  /v1/logs/feedback  feedback events, by seq cursor (+ last seq, log id)  (deploy token)
  GET  /v1/status     active/previous version, probation, counts               (either token)
  GET  /healthz, /readyz, /metrics                                              (open)

Errors are JSON: ``{"error": {"code": "...", "message": "...", "fields": [...]}}``; the agent
never answers with a stack trace and keeps serving the active model whatever a request does.
Imports: numpy, onnxruntime, cryptography, fastapi/starlette, uvicorn, prometheus_client only.

This module is the wiring: the app, its lifespan, error handlers and routes. The parts:
  errors.py      ApiError, the error body, the strict JSON parse
  auth.py        bearer tokens            bodies.py   capped reads, JSON in and out
  validation.py  rows vs the bundle       metrics.py  Prometheus metrics + middleware
  runtime.py     the active model: boot, deploy/switch, probation, rollback, status
  routes/        serving.py, deploy.py, logs.py, ops.py: one module per concern
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from edgeops.edge.auth import require
from edgeops.edge.bodies import body_schema, json_body, json_content, json_response, read_body
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ERROR_SCHEMA, STRICT_JSON, ApiError, error_body, parse_json
from edgeops.edge.metrics import API_PATHS, Metrics, MetricsMiddleware
from edgeops.edge.routes import deploy, logs, ops, serving
from edgeops.edge.routes.deploy import BUNDLE_TYPES
from edgeops.edge.runtime import Runtime
from edgeops.edge.validation import RowValidator

# the names this module always had, for code that imports them from here (bench/agent.py)
_json = json_response
_body_schema = body_schema
__all__ = [
    "API_PATHS", "BUNDLE_TYPES", "ERROR_SCHEMA", "FASTAPI_TELEMETRY_OFF", "STRICT_JSON",
    "AgentConfig", "ApiError", "Metrics", "MetricsMiddleware", "RowValidator", "Runtime",
    "_body_schema", "_json", "create_app", "error_body", "json_body", "json_content",
    "parse_json", "read_body", "require", "serve",
]  # fmt: skip

log = logging.getLogger("edgeops.agent")

# FastAPI >= 0.150 has OpenTelemetry built in (spans, metrics, logs; `FASTAPI_OTEL_AUTO_CONFIGURE`
# adds OTLP exporters from the environment). Nothing leaves the device: all of it off.
FASTAPI_TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False,
                         "operation_spans": False, "auto_configure": False}  # fmt: skip


def create_app(cfg: AgentConfig) -> Any:
    """The FastAPI application for ``cfg`` (tests and benchmarks call this directly)."""
    from edgeops import __version__

    metrics = Metrics()
    runtime = Runtime(cfg, metrics)
    app = FastAPI(
        title="edgeops agent", version=__version__, lifespan=_lifespan(runtime, metrics),
        description="Serves a signed edgeops model bundle with onnxruntime. Errors: "
        '{"error": {"code", "message", "fields"}}.',
        responses={401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 413: ERROR_SCHEMA, 422: ERROR_SCHEMA},
        telemetry=FASTAPI_TELEMETRY_OFF,
    )  # fmt: skip
    app.state.runtime = runtime
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
    # in this order: requests are matched against the routes in the order they were added
    for routes in (serving, deploy, logs, ops):
        routes.add_routes(app, runtime, cfg)
    return app


def _lifespan(
    runtime: Runtime, metrics: Metrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start: boot the runtime, then tick every second. Stop: close the inference log."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(runtime.boot)
        task = asyncio.create_task(_ticker(runtime, metrics))
        yield
        task.cancel()
        runtime.log.close()

    return lifespan


async def _ticker(runtime: Runtime, metrics: Metrics) -> None:
    """Every second: end a probation that has lasted long enough, publish the log's size."""
    while True:
        await asyncio.sleep(1.0)
        runtime.tick()
        s = runtime.log.stats()
        metrics.log_rows.set(s["rows"])
        metrics.log_bytes.set(s["bytes"])
        metrics.log_dropped.set(s["dropped"])


# ---- error handlers: every error is the one JSON shape of errors.error_body ----------------------
async def api_error(_: Request, exc: ApiError) -> Response:
    """An :class:`ApiError` raised by a route or the runtime."""
    return Response(error_body(exc.code, exc.message, exc.fields), status_code=exc.status,
                    media_type="application/json", headers=exc.headers)  # fmt: skip


async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own errors: no such route (404), wrong method (405)."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return Response(error_body(code, str(exc.detail)), status_code=exc.status_code,
                    media_type="application/json", headers=getattr(exc, "headers", None))  # fmt: skip


async def validation_error(_: Request, exc: RequestValidationError) -> Response:
    """FastAPI's validation of query and path parameters (the bodies are read by hand)."""
    fields = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
        for e in exc.errors()
    ]
    return Response(error_body("invalid_request", "the request parameters are invalid", fields),
                    status_code=422, media_type="application/json")  # fmt: skip


async def unexpected(_: Request, exc: Exception) -> Response:
    """Anything else: logged with its trace, answered 500 without it."""
    log.exception("unexpected error")
    return Response(error_body("internal", "internal error; the agent keeps serving"), status_code=500,
                    media_type="application/json")  # fmt: skip


def serve(cfg: AgentConfig) -> None:
    """Run the agent with uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(cfg)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                timeout_keep_alive=5, limit_concurrency=256, server_header=False)  # fmt: skip
