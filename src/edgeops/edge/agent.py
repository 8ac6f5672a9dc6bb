"""The edgeops agent: verify a bundle, switch to it atomically, serve it, log, roll back.

    edgeops edge serve --state-dir /var/lib/edgeops --public-key /etc/edgeops/signing.pub

API (OpenAPI at /openapi.json, docs at /docs):
  POST /v1/predict    rows of raw features -> label + probabilities per row     (predict or deploy token)
  POST /v1/feedback   attach a ground-truth label to a request id              (feedback or deploy token)
  POST /v1/bundles    upload a .tar.gz bundle: verify, load, golden check, switch (deploy token)
  GET  /v1/bundles/V  download a bundle still on the device                     (deploy token)
  POST /v1/rollback   back to the previous (or a named) version                (deploy token)
  GET  /v1/logs       the inference log, by id cursor (+ last id, log id)      (deploy token)
  GET  /v1/logs/feedback  feedback events, by seq cursor (+ last seq, log id)  (deploy token)
  GET  /v1/status     active/previous version, probation, counts               (any token)
  GET  /healthz, /readyz, /metrics                                              (open)

Errors are JSON: ``{"error": {"code": "...", "message": "...", "fields": [...]}}``; the agent
never answers with a stack trace and keeps serving the active model whatever a request does.
Imports: numpy, onnxruntime, cryptography, fastapi/starlette, uvicorn, prometheus_client only.

This module is the wiring: the app, its lifespan, error handlers and routes. The parts:
  errors.py      ApiError, the error body, the strict JSON parse
  auth.py        bearer tokens            bodies.py   capped reads, JSON in and out
  validation.py  rows vs the bundle       metrics.py  Prometheus metrics + middleware
  limits.py      connection deadlines and caps, the in-flight request limit (503 overloaded)
  runtime.py     the active model: boot, deploy/switch, probation, rollback, status
  routes/        serving.py, deploy.py, logs.py, ops.py: one module per concern
  openapi.py     the published document (exact bodies for the active bundle)
  docs.py        /docs and /redoc from files installed with the package (no CDN)
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, wait
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from edgeops.edge import docs, openapi
from edgeops.edge.auth import require
from edgeops.edge.bodies import body_schema, json_body, json_content, json_response, read_body
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ERROR_SCHEMA, STRICT_JSON, ApiError, error_body, parse_json
from edgeops.edge.inference_log import LogDamaged
from edgeops.edge.limits import InflightLimitMiddleware, guarded_protocol, raise_open_files_limit
from edgeops.edge.metrics import API_PATHS, Metrics, MetricsMiddleware, MetricsPortMiddleware
from edgeops.edge.routes import deploy, logs, ops, serving
from edgeops.edge.routes.deploy import BUNDLE_TYPES
from edgeops.edge.runtime import Runtime
from edgeops.edge.validation import RowValidator
from edgeops.offline import telemetry_off

# the names this module always had, for code that imports them from here (bench/agent.py)
_json = json_response
_body_schema = body_schema
__all__ = [
    "API_PATHS",
    "BUNDLE_TYPES",
    "ERROR_SCHEMA",
    "FASTAPI_TELEMETRY_OFF",
    "STRICT_JSON",
    "AgentConfig",
    "ApiError",
    "Metrics",
    "MetricsMiddleware",
    "RowValidator",
    "Runtime",
    "_body_schema",
    "_json",
    "create_app",
    "error_body",
    "json_body",
    "json_content",
    "parse_json",
    "read_body",
    "require",
    "serve",
]

log = logging.getLogger("edgeops.agent")

# FastAPI >= 0.150 has OpenTelemetry built in (spans, metrics, logs; `FASTAPI_OTEL_AUTO_CONFIGURE`
# adds OTLP exporters from the environment). Nothing leaves the device: all of it off.
FASTAPI_TELEMETRY_OFF = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def create_app(cfg: AgentConfig, boot_now: bool = False) -> Any:
    """The FastAPI application for ``cfg`` (tests and benchmarks call this directly).

    The runtime boots (loads the active model) when the app starts; ``boot_now`` starts that
    at once, in a thread, so that the model loads while the app is built and the server starts
    (``serve`` does: the start waits for whichever takes longer, not for both).
    """
    from edgeops import __version__

    metrics = Metrics()
    runtime = Runtime(cfg, metrics)
    booting = _boot_in_background(runtime) if boot_now else None
    app = FastAPI(
        title="edgeops agent",
        version=__version__,
        lifespan=_lifespan(runtime, metrics, booting),
        description="Serves a signed edgeops model bundle with onnxruntime. Errors: "
        '{"error": {"code", "message", "fields"}}.',
        telemetry=FASTAPI_TELEMETRY_OFF,
        # the docs pages come from the package, not a CDN (docs.py); operation ids are the
        # handlers' names (predict, upload_bundle, ...): what generated clients call them
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.runtime, app.state.booting = runtime, booting
    metrics.follow(runtime)
    # the last added runs first: count every request, then the port split, then the limit
    app.add_middleware(InflightLimitMiddleware, cfg=cfg, metrics=metrics)
    if cfg.metrics_port:
        app.add_middleware(MetricsPortMiddleware, metrics_port=cfg.metrics_port)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(LogDamaged, log_damaged)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
    # in this order: requests are matched against the routes in the order they were added
    for routes in (serving, deploy, logs, ops):
        routes.add_routes(app, runtime, cfg)
    docs.add_routes(app)
    openapi.install(app, runtime, cfg)  # exact bodies for the active bundle, errors, bearer auth
    return app


def _boot_in_background(runtime: Runtime) -> Future:
    """``runtime.boot()`` in a thread of its own; the future has its outcome."""
    future: Future = Future()

    def boot() -> None:
        try:
            runtime.boot()
        except BaseException as exc:  # re-raised where the lifespan waits for it
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=boot, name="edgeops-boot", daemon=True).start()
    return future


def _lifespan(
    runtime: Runtime, metrics: Metrics, booting: Future | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start: boot the runtime (or wait for the boot already under way), then tick every
    second. Stop: close the inference log."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if booting is None:
            await run_in_threadpool(runtime.boot)
        else:
            await asyncio.wrap_future(booting)
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
        metrics.log_stats(runtime.log.stats())


# ---- error handlers: every error is the one JSON shape of errors.error_body ----------------------
async def api_error(_: Request, exc: ApiError) -> Response:
    """An :class:`ApiError` raised by a route or the runtime."""
    return Response(
        error_body(exc.code, exc.message, exc.fields),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers,
    )


async def log_damaged(_: Request, exc: LogDamaged) -> Response:
    """The inference log's database is damaged (predictions are still served): 503 with the fix."""
    return Response(
        error_body("log_damaged", str(exc)), status_code=503, media_type="application/json"
    )


async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own errors: no such route (404), wrong method (405)."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return Response(
        error_body(code, str(exc.detail)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=getattr(exc, "headers", None),
    )


async def validation_error(_: Request, exc: RequestValidationError) -> Response:
    """FastAPI's validation of query and path parameters (the bodies are read by hand)."""
    fields = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
        for e in exc.errors()
    ]
    return Response(
        error_body("invalid_request", "the request parameters are invalid", fields),
        status_code=422,
        media_type="application/json",
    )


async def unexpected(_: Request, exc: Exception) -> Response:
    """Anything else: logged with its trace, answered 500 without it."""
    log.exception("unexpected error")
    return Response(
        error_body("internal", "internal error; the agent keeps serving"),
        status_code=500,
        media_type="application/json",
    )


def serve(cfg: AgentConfig) -> None:
    """Run the agent with uvicorn until SIGINT/SIGTERM (``/metrics`` on ``metrics_port`` if set).

    Connections are guarded by limits.py (deadlines, a cap with eviction); uvicorn's own
    ``limit_concurrency`` stays off: it counts idle connections and answers plain-text 503s.
    """
    import dataclasses

    import uvicorn

    telemetry_off()
    os.umask(0o077)  # state, log database, uploads: the owner's only, whatever started the agent
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sockets = None
    if cfg.metrics_port:  # one server, two listening sockets; MetricsPortMiddleware splits them
        sockets = [
            _listen(cfg.host, cfg.port),
            _listen(cfg.metrics_host or cfg.host, cfg.metrics_port),
        ]
    app = create_app(cfg, boot_now=True)  # the model loads while the app is built and started
    try:
        guarded = dataclasses.replace(
            cfg, max_connections=raise_open_files_limit(cfg.max_connections)
        )
        config = uvicorn.Config(app, host=cfg.host, port=cfg.port, **uvicorn_settings(guarded, app))
        server = _server_class()(config)
        server.run(sockets=sockets)
    finally:  # never leave while the boot writes the state (its loading marker would stay)
        wait([app.state.booting])
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits


def uvicorn_settings(cfg: AgentConfig, app: Any) -> dict[str, Any]:
    """uvicorn's settings for the agent (also what bench/agent.py serves its cases with)."""
    return dict(
        log_level="warning",
        access_log=False,
        server_header=False,
        ws="none",
        http=guarded_protocol(cfg, app.state.runtime.metrics),
        proxy_headers=False,  # the per-client limit counts the peer address, never a header
        timeout_keep_alive=cfg.idle_timeout_seconds,
        limit_concurrency=None,
        backlog=cfg.backlog,
    )


def _server_class() -> type:
    import uvicorn

    from edgeops.edge.systemd import notify

    class NotifyingServer(uvicorn.Server):
        """uvicorn's server telling systemd (``Type=notify``) when it is ready and stopping."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)  # the lifespan (runtime boot) first, then listening
            if self.started:
                notify("READY=1")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            notify("STOPPING=1")
            await super().shutdown(sockets)

    return NotifyingServer


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"edgeops agent: cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock
