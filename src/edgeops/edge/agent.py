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
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import threading
import time
from collections import Counter as PyCounter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request

from edgeops.edge.bundle import (
    BundleError,
    VerifiedBundle,
    incompatibilities,
    load_public_key,
    model_signature,
    verify_bundle,
)
from edgeops.edge.config import AgentConfig
from edgeops.edge.inference import FLOAT, columns_to_feeds, rows_to_columns
from edgeops.edge.inference_log import InferenceLog, compact_json
from edgeops.edge.store import StateStore, StoreError

log = logging.getLogger("edgeops.agent")

API_PATHS = ("/v1/predict", "/v1/feedback", "/v1/bundles", "/v1/rollback", "/v1/logs",
             "/v1/logs/feedback", "/v1/status", "/healthz", "/readyz", "/metrics")  # fmt: skip
# FastAPI >= 0.150 has OpenTelemetry built in (spans, metrics, logs; `FASTAPI_OTEL_AUTO_CONFIGURE`
# adds OTLP exporters from the environment). Nothing leaves the device: all of it off.
FASTAPI_TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False,
                         "operation_spans": False, "auto_configure": False}  # fmt: skip
BUNDLE_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/octet-stream",
)


class ApiError(Exception):
    """An error answered as JSON with a 4xx/5xx status."""

    def __init__(self, status: int, code: str, message: str, fields: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.code, self.message, self.fields, self.headers = (
            status,
            code,
            message,
            fields,
            headers,
        )


def error_body(code: str, message: str, fields: list[dict[str, Any]] | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if fields:
        err["fields"] = fields
    return json.dumps({"error": err}).encode()


def _reject_constant(name: str) -> Any:
    raise ApiError(422, "invalid_value", f"{name} is not allowed: send null for a missing value")


# NaN / Infinity are not JSON: refuse them (one decoder, built once: json.loads builds one per call)
STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_json(body: bytes) -> Any:
    if not body:
        raise ApiError(400, "invalid_json", "the request body is empty: send a JSON object")
    try:
        return STRICT_JSON(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None


# ---- request validation against the active bundle's schema ---------------------------------------
@dataclass(frozen=True)
class RowValidator:
    numeric: frozenset[str]
    categorical: dict[str, frozenset[str]]
    nullable: frozenset[str]
    names: frozenset[str]
    accept_unknown: bool
    #: columns the bundle lists as sent by clients but not features (timestamp, target, dropped):
    #: accepted, logged, not fed to the model
    passthrough: frozenset[str] = frozenset()

    @classmethod
    def for_bundle(cls, bundle: VerifiedBundle, accept_unknown: bool) -> RowValidator:
        specs = bundle.model.inputs
        return cls(
            numeric=frozenset(s.name for s in specs if s.dtype == FLOAT),
            categorical={s.name: frozenset(s.categories or ()) for s in specs if s.dtype != FLOAT},
            nullable=frozenset(s.name for s in specs if s.nullable),
            names=frozenset(s.name for s in specs),
            accept_unknown=accept_unknown,
            passthrough=frozenset(str(n) for n in bundle.manifest.get("passthrough") or ()),
        )

    def check(self, rows: Any, max_rows: int) -> list[dict[str, Any]]:
        if not isinstance(rows, list):
            raise ApiError(422, "invalid_rows", "'rows' must be a list of objects",
                           [{"field": "rows", "problem": "not a list"}])  # fmt: skip
        if not rows:
            raise ApiError(422, "invalid_rows", "'rows' is empty: send at least one row",
                           [{"field": "rows", "problem": "empty"}])  # fmt: skip
        if len(rows) > max_rows:
            raise ApiError(
                413, "too_many_rows", f"{len(rows)} rows in one request; the limit is {max_rows}"
            )
        problems: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append({"row": i, "field": None, "problem": "a row must be a JSON object"})
                continue
            keys = row.keys()
            if keys != self.names:
                for name in sorted(self.names - keys):
                    problems.append({"row": i, "field": name, "problem": "missing"})
                for name in sorted(str(k) for k in keys - self.names):
                    if name not in self.passthrough:
                        problems.append({"row": i, "field": name, "problem": "not a column of this model's data"})  # fmt: skip
                    elif isinstance(row[name], dict | list):
                        problems.append({"row": i, "field": name, "problem": "expected a single value"})  # fmt: skip
            for name in self.numeric:
                v = row.get(name)
                if v is None:
                    if name in row and name not in self.nullable:
                        problems.append({"row": i, "field": name, "problem": "null is not allowed"})
                elif isinstance(v, bool) or not isinstance(v, int | float):
                    problems.append(
                        {
                            "row": i,
                            "field": name,
                            "problem": f"expected a number, got {type(v).__name__}",
                        }
                    )
                elif isinstance(v, float) and not math.isfinite(v):
                    problems.append({"row": i, "field": name, "problem": "must be a finite number"})
                elif abs(v) > 3.4e38:
                    problems.append({"row": i, "field": name, "problem": "out of float32 range"})
            for name, allowed in self.categorical.items():
                v = row.get(name)
                if v is None:
                    if name in row and name not in self.nullable:
                        problems.append({"row": i, "field": name, "problem": "null is not allowed"})
                elif not isinstance(v, str):
                    problems.append(
                        {
                            "row": i,
                            "field": name,
                            "problem": f"expected a string, got {type(v).__name__}",
                        }
                    )
                elif v not in allowed and not self.accept_unknown:
                    problems.append({"row": i, "field": name,
                                     "problem": f"unknown category {v[:64]!r}; allowed: {sorted(allowed)}"})  # fmt: skip
            if len(problems) > 50:
                break
        if problems:
            raise ApiError(
                422, "invalid_rows", f"{len(problems)} problem(s) in the rows", problems[:50]
            )
        return rows


# ---- metrics ---------------------------------------------------------------------------------
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


# ---- the runtime: active model, probation, switching -------------------------------------------
class Runtime:
    """Holds the active bundle; every switch goes through the state store first."""

    def __init__(self, cfg: AgentConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.public_key = load_public_key(cfg.public_key)
        self.store = StateStore(cfg.state_dir, keep=cfg.keep_versions)
        self.log = InferenceLog(
            Path(cfg.state_dir) / "inference.db",
            retention_seconds=cfg.log_retention_days * 86400, max_rows=cfg.log_max_rows,
            drop_fields=cfg.log_drop_fields, hash_fields=cfg.log_hash_fields, hash_salt=cfg.log_hash_salt,
            purge_interval=cfg.log_purge_interval_seconds,
        )  # fmt: skip
        self.bundle: VerifiedBundle | None = None
        self.validator: RowValidator | None = None
        self.previous: VerifiedBundle | None = None  # kept loaded during probation
        self.probation: dict[str, Any] | None = None
        self.since: str | None = None
        self.started = time.time()
        self._switch = threading.Lock()
        self._deploying = threading.Lock()

    # start-up
    def boot(self) -> None:
        self.store.recover()
        state = self.store.read()
        active = state["active"]
        if not active:
            log.warning("no model deployed yet: upload a bundle to POST /v1/bundles")
            return
        died = self.store.mark_loading(active)
        probation = state.get("probation") or {}
        if died == active and probation.get("version") == active and state["previous"]:
            reason = f"the agent died while loading {active} during its probation"
            log.error("%s: rolling back to %s", reason, state["previous"])
            state = self.store.rollback(reason, actor="agent")
            self.metrics.rollbacks.labels("crash").inc()
            active = state["active"]
            self.store.mark_loading(active)
        try:
            bundle = self._load(active)
        except BundleError as exc:
            prev = state["previous"]
            self.store.record(
                {"event": "load_failed", "version": active, "reason": str(exc), "by": "agent"}
            )
            self.store.clear_loading()
            if not prev:
                log.error(
                    "active version %s does not verify (%s) and there is no previous one",
                    active,
                    exc,
                )
                return
            state = self.store.rollback(
                f"{active} failed verification at start: {exc.message}", actor="agent"
            )
            active = state["active"]
            bundle = self._load(active)
        self.store.clear_loading()
        probation = state.get("probation")
        self._set_active(bundle, previous=None, since=state["since"])
        if probation and probation.get("version") == active:
            self.probation = {
                "version": active,
                "since": time.monotonic(),
                "requests": 0,
                "errors": 0,
            }
            if state["previous"]:
                try:
                    self.previous = self._load(state["previous"])
                except BundleError:
                    self.previous = None

    def _load(self, version: str) -> VerifiedBundle:
        return verify_bundle(self.store.path_of(version), self.public_key, threads=self.cfg.threads)

    def _set_active(
        self, bundle: VerifiedBundle, previous: VerifiedBundle | None, since: str | None
    ) -> None:
        validator = RowValidator.for_bundle(bundle, self.cfg.unknown_categories == "accept")
        with self._switch:
            self.bundle, self.validator, self.previous = bundle, validator, previous
            self.since = since
        self.metrics.set_version(bundle.version)

    # deploy / rollback (run in a worker thread: verification is CPU work)
    def deploy(self, archive: Path, staged: Path, reason: str, actor: str,
               replace_model: bool = False) -> dict[str, Any]:  # fmt: skip
        if not self._deploying.acquire(blocking=False):
            raise ApiError(
                409, "deploy_in_progress", "another bundle is being deployed; retry when it is done"
            )
        try:
            try:
                self.store.unpack(archive, staged, self.cfg.max_bundle_bytes)
                archive.unlink(missing_ok=True)
                bundle = verify_bundle(staged, self.public_key, threads=self.cfg.threads)
            except BundleError as exc:
                raise ApiError(
                    422, exc.name, exc.message + (f" (fix: {exc.fix})" if exc.fix else "")
                ) from None
            except StoreError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
            version = bundle.version
            if self.bundle is not None and version == self.bundle.version:
                raise ApiError(409, "already_active", f"{version} is already the active version")
            if self.bundle is not None:
                differs = incompatibilities(
                    model_signature(self.bundle.manifest), model_signature(bundle.manifest)
                )
                if differs and not replace_model:
                    raise ApiError(
                        409, "model_mismatch",
                        f"{version} is another model than the active {self.bundle.version} "
                        f"({'; '.join(differs)}); its clients would break. To replace the model "
                        "on purpose, deploy with --replace-model (header X-Edgeops-Replace-Model: true)",
                    )  # fmt: skip
                if differs:
                    reason = f"{reason} (replaces model {self.bundle.manifest['model']['name']})"
            try:
                installed = self.store.install(staged, version)
            except StoreError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
            bundle.path = installed
            old = self.bundle
            state = self.store.activate(
                version, reason=reason, probation=old is not None, actor=actor
            )
            self._set_active(bundle, previous=old, since=state["since"])
            self.probation = (
                {"version": version, "since": time.monotonic(), "requests": 0, "errors": 0}
                if old
                else None
            )
            self.store.prune()
            return {"version": version, "previous": state["previous"], "probation": self.probation is not None,
                    "golden_max_abs_diff": bundle.golden_max_abs_diff}  # fmt: skip
        finally:
            for p in (archive, staged):
                if p.exists():
                    import shutil

                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(
                        missing_ok=True
                    )
            self._deploying.release()

    def rollback(
        self, to: str | None, reason: str, actor: str, trigger: str = "manual"
    ) -> dict[str, Any]:
        with self._deploying if trigger == "manual" else _nullcontext():
            state = self.store.read()
            target = to or state["previous"]
            if not target:
                raise ApiError(
                    409, "no_previous_version", "there is no previous version to roll back to"
                )
            if self.bundle is not None and target == self.bundle.version:
                raise ApiError(409, "already_active", f"{target} is already the active version")
            if self.previous is not None and self.previous.version == target:
                bundle = self.previous
            else:
                try:
                    bundle = self._load(target)
                except StoreError as exc:
                    raise ApiError(exc.status, exc.code, exc.message) from None
                except BundleError as exc:
                    if exc.code == BundleError.MISSING_FILE:
                        raise ApiError(
                            404,
                            "unknown_version",
                            f"no version {target!r} on this device; known: {self.store.versions()}",
                        ) from None
                    raise ApiError(
                        422, exc.name, f"{target} no longer verifies: {exc.message}"
                    ) from None
            try:
                state = self.store.rollback(reason, to=target, actor=actor)
            except StoreError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
            old = self.bundle
            self._set_active(bundle, previous=None, since=state["since"])
            self.probation = None
            self.metrics.rollbacks.labels(trigger).inc()
            log.warning(
                "rolled back from %s to %s: %s", old.version if old else None, target, reason
            )
            return {"version": target, "previous": state["previous"], "reason": reason}

    # probation
    def outcome(self, version: str, ok: bool) -> None:
        p = self.probation
        if not p or p["version"] != version:
            return
        p["requests"] += 1
        p["errors"] += 0 if ok else 1
        rate = p["errors"] / p["requests"]
        if (
            p["requests"] >= self.cfg.probation_min_requests
            and rate > self.cfg.probation_max_error_rate
        ):
            self.probation = None
            reason = (f"automatic: error rate {rate:.0%} over {p['requests']} requests during probation "
                      f"(limit {self.cfg.probation_max_error_rate:.0%})")  # fmt: skip
            try:
                self.rollback(None, reason, actor="agent", trigger="probation")
            except ApiError as exc:
                log.error("automatic rollback failed: %s", exc.message)
        elif p["requests"] >= self.cfg.probation_requests:
            self._commit(p)

    def tick(self) -> None:
        p = self.probation
        if p and time.monotonic() - p["since"] >= self.cfg.probation_seconds:
            self._commit(p)

    def _commit(self, p: dict[str, Any]) -> None:
        self.probation = None
        self.previous = None
        self.store.end_probation(p["version"])

    def status(self) -> dict[str, Any]:
        state = self.store.read()
        b = self.bundle
        p = self.probation
        errors = sum(n for (_, s), n in self.metrics.counts.items() if s >= 500)
        return {
            "active": None if b is None else {
                "version": b.version, "name": b.manifest["model"]["name"], "since": self.since,
                "created_at": b.manifest["model"].get("created_at"),
                "signature": model_signature(b.manifest),
            },
            "previous": state["previous"],
            "probation": None if not p else {
                "version": p["version"], "requests": p["requests"], "errors": p["errors"],
                "seconds": round(time.monotonic() - p["since"], 1),
            },
            "versions": self.store.versions(),
            "requests": {f"{e} {s}": n for (e, s), n in sorted(self.metrics.counts.items())},
            "errors": errors,
            "history": state["history"][-20:],
            "uptime_seconds": round(time.time() - self.started, 1),
        }  # fmt: skip


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# ---- HTTP ------------------------------------------------------------------------------------
async def read_body(request: Any, cap: int, timeout: float) -> bytes:
    """The request body, refusing more than ``cap`` bytes (413) or a client slower than ``timeout`` (408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length")
        if int(declared) > cap:
            raise ApiError(
                413, "body_too_large", f"the body is {declared} bytes; the limit is {cap}"
            )
    chunks: list[bytes] = []
    size = 0
    # asyncio.timeout, not wait_for: no extra Task per request (~20 us and a loop turn each)
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise ApiError(
                        413, "body_too_large", f"the body is over the limit of {cap} bytes"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, "body_timeout", f"the body did not arrive within {timeout:.0f} s"
        ) from None
    return b"".join(chunks)


def _token(request: Any) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require(request: Any, cfg: AgentConfig, kind: str) -> None:
    """Bearer-token check in constant time. kind: predict | deploy | any."""
    token = _token(request)
    if kind == "predict" and not cfg.predict_auth:
        return
    if not token:
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <token>)",
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    is_deploy = hmac.compare_digest(token.encode(), cfg.deploy_token.encode())
    is_predict = bool(cfg.predict_token) and hmac.compare_digest(
        token.encode(), cfg.predict_token.encode()
    )
    # the deploy token is the operator's: it may also predict (post-deploy golden checks)
    ok = {"deploy": is_deploy, "predict": is_predict or is_deploy, "any": is_deploy or is_predict}[
        kind
    ]
    if not ok:
        if is_deploy or is_predict:
            raise ApiError(
                403, "forbidden", f"this token may not call this endpoint (needs the {kind} token)"
            )
        raise ApiError(
            401, "unauthorized", "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def _json(obj: Any, status: int = 200) -> Any:
    from starlette.responses import Response

    return Response(compact_json(obj), status_code=status, media_type="application/json")


def _body_schema(schema: dict[str, Any], content_type: str = "application/json") -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {content_type: {"schema": schema}}}}


ERROR_SCHEMA = {
    "description": "error",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def create_app(cfg: AgentConfig) -> Any:
    """The FastAPI application for ``cfg`` (tests and benchmarks call this directly)."""
    from fastapi.exceptions import RequestValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from edgeops import __version__

    metrics = Metrics()
    runtime = Runtime(cfg, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(runtime.boot)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(1.0)
                runtime.tick()
                s = runtime.log.stats()
                metrics.log_rows.set(s["rows"])
                metrics.log_bytes.set(s["bytes"])
                metrics.log_dropped.set(s["dropped"])

        task = asyncio.create_task(ticker())
        yield
        task.cancel()
        runtime.log.close()

    app = FastAPI(
        title="edgeops agent", version=__version__, lifespan=lifespan,
        description="Serves a signed edgeops model bundle with onnxruntime. Errors: "
        '{"error": {"code", "message", "fields"}}.',
        responses={401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 413: ERROR_SCHEMA, 422: ERROR_SCHEMA},
        telemetry=FASTAPI_TELEMETRY_OFF,
    )  # fmt: skip
    app.state.runtime = runtime
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Any:
        from starlette.responses import Response

        return Response(error_body(exc.code, exc.message, exc.fields), status_code=exc.status,
                        media_type="application/json", headers=exc.headers)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Any:
        from starlette.responses import Response

        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return Response(error_body(code, str(exc.detail)), status_code=exc.status_code,
                        media_type="application/json", headers=getattr(exc, "headers", None))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Any:
        from starlette.responses import Response

        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
            for e in exc.errors()
        ]
        return Response(error_body("invalid_request", "the request parameters are invalid", fields),
                        status_code=422, media_type="application/json")  # fmt: skip

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Any:
        from starlette.responses import Response

        log.exception("unexpected error")
        return Response(error_body("internal", "internal error; the agent keeps serving"), status_code=500,
                        media_type="application/json")  # fmt: skip

    def json_content(request: Request) -> None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")

    async def json_body(request: Request, kind: str) -> Any:
        """Auth, content type, size- and time-capped read, strict JSON parse: in that order."""
        require(request, cfg, kind)
        json_content(request)
        return parse_json(await read_body(request, cfg.max_body_bytes, cfg.body_timeout_seconds))

    predict_schema = {
        "type": "object", "required": ["rows"], "additionalProperties": False,
        "properties": {"rows": {"type": "array", "minItems": 1, "items": {"type": "object"},
                                "description": "raw feature values by column name; null = missing"}},
    }  # fmt: skip

    @app.post("/v1/predict", tags=["serve"], openapi_extra=_body_schema(predict_schema),
              responses={200: {"description": "labels and probabilities per row"}, 503: ERROR_SCHEMA})  # fmt: skip
    async def predict(request: Request) -> Any:
        """Predict rows of raw features with the active model."""
        payload = await json_body(request, "predict")
        if not isinstance(payload, dict) or "rows" not in payload:
            raise ApiError(
                422,
                "invalid_request",
                'send {"rows": [{...}, ...]}',
                [{"field": "rows", "problem": "missing"}],
            )
        extra = sorted(str(k) for k in payload if k != "rows")
        if extra:
            raise ApiError(
                422,
                "invalid_request",
                f"unknown keys {extra}",
                [{"field": k, "problem": "unknown"} for k in extra],
            )
        bundle, validator = runtime.bundle, runtime.validator
        if bundle is None or validator is None:
            raise ApiError(503, "no_model", "no model is deployed on this agent yet")
        rows = validator.check(payload["rows"], cfg.max_rows)
        start = time.perf_counter()
        try:
            labels, proba = bundle.model.predict_feeds(
                columns_to_feeds(rows_to_columns(rows, bundle.model.inputs), bundle.model.inputs)
            )
            if not np.isfinite(proba).all():
                raise ValueError("the model returned non-finite probabilities")
        except Exception as exc:
            runtime.outcome(bundle.version, ok=False)
            log.error("model %s failed: %s", bundle.version, exc)
            raise ApiError(
                500, "model_error", f"model {bundle.version} failed on this input"
            ) from None
        latency_ms = (time.perf_counter() - start) * 1000.0
        runtime.outcome(bundle.version, ok=True)
        request_id = os.urandom(16).hex()  # 128 random bits, as uuid4().hex, at a quarter the cost
        classes = bundle.model.class_names
        label_list = labels.tolist()
        proba_list = proba.tolist()
        runtime.log.append(request_id, bundle.version, rows, label_list, proba_list, latency_ms)
        metrics.count_predictions(label_list)
        return _json({
            "request_id": request_id, "model_version": bundle.version,
            "predictions": [{"label": lab, "probabilities": dict(zip(classes, p, strict=True))}
                            for lab, p in zip(label_list, proba_list, strict=True)],
        })  # fmt: skip

    feedback_schema = {
        "type": "object", "required": ["request_id", "label"], "additionalProperties": False,
        "properties": {"request_id": {"type": "string"}, "label": {"type": ["string", "integer"]},
                       "row": {"type": "integer", "minimum": 0}},
    }  # fmt: skip

    @app.post("/v1/feedback", tags=["serve"], openapi_extra=_body_schema(feedback_schema),
              responses={200: {"description": "rows updated"}, 404: ERROR_SCHEMA})  # fmt: skip
    async def feedback(request: Request) -> Any:
        """Attach the true label (ground truth) to a request's rows."""
        payload = await json_body(request, "predict")
        if not isinstance(payload, dict):
            raise ApiError(422, "invalid_request", "send a JSON object")
        rid, label, row = payload.get("request_id"), payload.get("label"), payload.get("row")
        problems = []
        if not isinstance(rid, str) or not rid:
            problems.append({"field": "request_id", "problem": "a non-empty string is required"})
        if isinstance(label, bool) or not isinstance(label, str | int):
            problems.append(
                {"field": "label", "problem": "a class label (string or integer) is required"}
            )
        if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 0):
            problems.append({"field": "row", "problem": "must be a non-negative integer"})
        extra = sorted(str(k) for k in payload if k not in ("request_id", "label", "row"))
        problems += [{"field": k, "problem": "unknown"} for k in extra]
        if problems:
            raise ApiError(422, "invalid_request", "invalid feedback", problems)
        bundle = runtime.bundle
        if bundle is not None and str(label) not in {str(c) for c in bundle.model.classes}:
            raise ApiError(422, "invalid_request", f"label {label!r} is not a class of the model",
                           [{"field": "label", "problem": f"allowed: {[str(c) for c in bundle.model.classes]}"}])  # fmt: skip
        n = await run_in_threadpool(runtime.log.feedback, rid, str(label), row)
        if n == 0:
            raise ApiError(404, "unknown_request", f"no logged request {rid!r} (or it was purged)")
        return _json({"updated": n})

    @app.post("/v1/bundles", tags=["deploy"], status_code=201,
              openapi_extra=_body_schema({"type": "string", "format": "binary"}, "application/gzip"),
              responses={201: {"description": "deployed"}, 409: ERROR_SCHEMA, 415: ERROR_SCHEMA})  # fmt: skip
    async def upload_bundle(request: Request) -> Any:
        """Upload a bundle (.tar.gz of model.onnx, manifest.json, manifest.sig) and switch to it.

        Headers ``X-Edgeops-Reason`` and ``X-Edgeops-Actor`` are recorded in the history. A bundle
        of another model (name, input columns or classes differ from the active one's) is refused
        with 409 ``model_mismatch`` unless ``X-Edgeops-Replace-Model: true``.
        """
        require(request, cfg, "deploy")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in BUNDLE_TYPES:
            raise ApiError(
                415, "unsupported_media_type", "send the bundle as application/gzip (a .tar.gz)"
            )
        staged = runtime.store.new_upload_dir()
        archive = staged.with_suffix(".upload")
        try:
            with open(archive, "wb") as fh:
                fh.write(
                    await read_body(
                        request, cfg.max_bundle_bytes, max(cfg.body_timeout_seconds, 300.0)
                    )
                )
        except BaseException:
            archive.unlink(missing_ok=True)
            import shutil

            shutil.rmtree(staged, ignore_errors=True)
            raise
        reason = request.headers.get("x-edgeops-reason", "manual")[:200]
        actor = request.headers.get("x-edgeops-actor", "unknown")[:100]
        replace = request.headers.get("x-edgeops-replace-model", "").strip().lower() in (
            "1",
            "true",
            "yes",
        )
        result = await run_in_threadpool(runtime.deploy, archive, staged, reason, actor, replace)
        return _json(result, status=201)

    @app.get("/v1/bundles/{version}", tags=["deploy"],
             responses={200: {"description": "the bundle as .tar.gz", "content": {"application/gzip": {}}},
                        404: ERROR_SCHEMA})  # fmt: skip
    async def download_bundle(request: Request, version: str) -> Any:
        """A bundle still on this device, as .tar.gz (the gate scores the champion with it)."""
        from starlette.responses import Response

        from edgeops.edge.store import tar_bundle

        require(request, cfg, "deploy")
        try:
            path = runtime.store.path_of(version)
        except StoreError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        if version not in runtime.store.versions():
            raise ApiError(404, "unknown_version", f"no version {version!r} on this device")
        data = await run_in_threadpool(tar_bundle, path)
        return Response(data, media_type="application/gzip")

    rollback_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {"version": {"type": "string"}, "reason": {"type": "string"}},
    }  # fmt: skip

    @app.post("/v1/rollback", tags=["deploy"], openapi_extra=_body_schema(rollback_schema),
              responses={200: {"description": "rolled back"}, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA})  # fmt: skip
    async def rollback(request: Request) -> Any:
        """Return to the previous version, or to a named version still on the device."""
        require(request, cfg, "deploy")
        body = await read_body(request, cfg.max_body_bytes, cfg.body_timeout_seconds)
        payload = parse_json(body) if body.strip() else {}
        if not isinstance(payload, dict):
            raise ApiError(422, "invalid_request", "send a JSON object")
        version, reason = payload.get("version"), payload.get("reason", "manual rollback")
        if version is not None and not isinstance(version, str):
            raise ApiError(
                422,
                "invalid_request",
                "version must be a string",
                [{"field": "version", "problem": "not a string"}],
            )
        if not isinstance(reason, str):
            raise ApiError(
                422,
                "invalid_request",
                "reason must be a string",
                [{"field": "reason", "problem": "not a string"}],
            )
        actor = request.headers.get("x-edgeops-actor", "unknown")[:100]
        return _json(await run_in_threadpool(runtime.rollback, version, reason[:200], actor))

    @app.get("/v1/logs", tags=["monitor"])
    async def logs(
        request: Request,
        after: int = Query(0, ge=0, le=2**62),
        limit: int = Query(500, ge=1, le=5000),
    ) -> Any:
        """Logged predictions with id > ``after`` (a cursor), oldest first.

        ``{"items", "next", "last", "log_id"}``: ``next`` is the cursor for the next call,
        ``last`` the highest id in the log, ``log_id`` names the log (a new one: it was reset).
        """
        require(request, cfg, "deploy")

        def page() -> tuple[list[dict[str, Any]], int, int]:
            items, cursor = runtime.log.read(after, limit)
            return items, cursor, runtime.log.last_id()

        items, cursor, last = await run_in_threadpool(page)
        return _json({"items": items, "next": cursor, "last": last, "log_id": runtime.log.log_id})

    @app.get("/v1/logs/feedback", tags=["monitor"])
    async def feedback_log(
        request: Request,
        after: int = Query(0, ge=0, le=2**62),
        limit: int = Query(500, ge=1, le=5000),
    ) -> Any:
        """Feedback events with seq > ``after`` (a cursor): labels given after a row was read.

        ``{"items", "next", "last", "log_id"}``, items ``{id, request_id, row, feedback,
        feedback_ts, seq}``; each ``POST /v1/feedback`` is one seq. A page holds whole seqs
        (one seq's rows are never split, so a page may exceed ``limit`` when a single feedback
        call updated more rows); ``last`` is the last seq handed out.
        """
        require(request, cfg, "deploy")

        def page() -> tuple[list[dict[str, Any]], int, int]:
            items, cursor = runtime.log.read_feedback(after, limit)
            return items, cursor, runtime.log.last_feedback_seq()

        items, cursor, last = await run_in_threadpool(page)
        return _json({"items": items, "next": cursor, "last": last, "log_id": runtime.log.log_id})

    @app.get("/v1/status", tags=["monitor"])
    async def status(request: Request) -> Any:
        """Active and previous version, probation, request and error counts, recent history."""
        require(request, cfg, "any")
        return _json(await run_in_threadpool(runtime.status))

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> Any:
        """The process is alive."""
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["probes"], responses={503: ERROR_SCHEMA})
    async def readyz() -> Any:
        """A verified model is loaded and serving."""
        if runtime.bundle is None:
            raise ApiError(503, "no_model", "no model is deployed yet")
        return _json({"status": "ready", "model_version": runtime.bundle.version})

    @app.get("/metrics", tags=["probes"])
    async def prom() -> Any:
        """Prometheus metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.responses import Response

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


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
