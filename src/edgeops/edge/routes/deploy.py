"""Deploy routes: bundles in and out, and rollback (the deploy token only).

    POST /v1/bundles            upload a .tar.gz bundle: verify, load, golden check, switch
    GET  /v1/bundles/{version}  download a bundle still on the device
    POST /v1/rollback           back to the previous (or a named) version

An upload first claims the runtime's deploy lock (409 ``deploy_in_progress`` at once, before its
body is read), then streams its body chunk by chunk into the state store's ``incoming/`` (capped
at ``max_bundle_bytes`` while it arrives), then the runtime unpacks and verifies it in a worker
thread. One upload is on disk at a time, none is ever held in memory whole, and ``incoming/`` is
emptied on every way out: success, refusal, error, a client that goes away. The reason and actor
headers go to the switch history.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from edgeops.edge.auth import require
from edgeops.edge.bodies import body_schema, json_response, read_body
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ERROR_SCHEMA, ApiError, parse_json
from edgeops.edge.header_text import decode
from edgeops.edge.runtime import Runtime
from edgeops.edge.store import StoreError, tar_bundle

#: content types accepted for an uploaded bundle
BUNDLE_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/octet-stream",
)
#: bytes written to disk at a time (uvicorn hands the body over in ~64 KB pieces)
WRITE_CHUNK = 1 << 20
#: the whole bundle body must arrive within this (or body_timeout_seconds if longer)
UPLOAD_TIMEOUT = 300.0
log = logging.getLogger("edgeops.agent")
ROLLBACK_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"version": {"type": "string"}, "reason": {"type": "string"}},
}


class DeployRoutes:
    """The handlers of ``/v1/bundles`` and ``/v1/rollback`` over ``runtime``."""

    def __init__(self, runtime: Runtime, cfg: AgentConfig) -> None:
        self.runtime, self.cfg = runtime, cfg

    async def upload_bundle(self, request: Request) -> Any:
        """Upload a bundle (.tar.gz of model.onnx, manifest.json, manifest.sig) and switch to it.

        Headers ``X-Edgeops-Reason`` and ``X-Edgeops-Actor`` are recorded in the history (any
        text: RFC 8187 ``UTF-8''<percent-encoded>`` values are decoded, see header_text). A bundle
        of another model (name, input columns or classes differ from the active one's) is refused
        with 409 ``model_mismatch`` unless ``X-Edgeops-Replace-Model: true``; a bundle created
        before the newest one this device accepted with 409 ``downgrade`` (roll back instead).
        """
        require(request, self.cfg, "deploy")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in BUNDLE_TYPES:
            raise ApiError(
                415, "unsupported_media_type", "send the bundle as application/gzip (a .tar.gz)"
            )
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length")
        if declared is not None and int(declared) > self.cfg.max_bundle_bytes:
            raise ApiError(
                413,
                "body_too_large",
                f"the bundle is {declared} bytes; the limit is "
                f"{self.cfg.max_bundle_bytes} (max_bundle_bytes)",
            )
        reason = decode(request.headers.get("x-edgeops-reason", "manual"))[:200]
        actor = decode(request.headers.get("x-edgeops-actor", "unknown"))[:100]
        replace = request.headers.get("x-edgeops-replace-model", "").strip().lower() in (
            "1",
            "true",
            "yes",
        )
        runtime = self.runtime
        runtime.claim_deploy()  # 409 before a byte of the body is read
        started = threading.Event()  # set once runtime.deploy owns the lock and the files
        staged = archive = None
        try:
            staged = runtime.store.new_upload_dir()
            archive = staged.with_suffix(".upload")
            await self._receive(request, archive)
            result = await run_in_threadpool(
                runtime.deploy, archive, staged, reason, actor, replace, True, started
            )
        except ApiError as exc:
            log.warning("upload refused: %s %s: %s", exc.status, exc.code, exc.message[:300])
            raise
        finally:
            if not started.is_set():  # the body never reached the runtime: clean up here
                if staged is not None:
                    shutil.rmtree(staged, ignore_errors=True)
                    archive.unlink(missing_ok=True)
                runtime.release_deploy()
        return json_response(result, status=201)

    async def _receive(self, request: Request, archive: Path) -> None:
        """The body into ``archive`` as it arrives: 413 past ``max_bundle_bytes``, 408 if it is
        slower than :data:`UPLOAD_TIMEOUT`, 400 if the client goes away."""
        cap = self.cfg.max_bundle_bytes
        timeout = max(self.cfg.body_timeout_seconds, UPLOAD_TIMEOUT)
        size, pending, waiting = 0, [], 0
        try:
            with open(archive, "xb") as fh:
                async with asyncio.timeout(timeout):
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > cap:
                            raise ApiError(
                                413,
                                "body_too_large",
                                f"the bundle is over the limit of {cap} bytes (max_bundle_bytes)",
                            )
                        pending.append(chunk)
                        waiting += len(chunk)
                        if waiting >= WRITE_CHUNK:
                            fh.write(b"".join(pending))
                            pending, waiting = [], 0
                fh.write(b"".join(pending))
        except TimeoutError:
            raise ApiError(
                408, "body_timeout", f"the bundle did not arrive within {timeout:.0f} s"
            ) from None
        except ClientDisconnect:
            raise ApiError(
                400, "client_disconnected", f"the client went away after {size} bytes"
            ) from None
        except OSError as exc:
            raise ApiError(
                507,
                "insufficient_storage",
                f"cannot write the upload into the state directory: {exc.strerror or exc}",
            ) from None

    async def download_bundle(self, request: Request, version: str) -> Any:
        """A bundle still on this device, as .tar.gz (the gate scores the champion with it)."""
        require(request, self.cfg, "deploy")
        store = self.runtime.store
        try:
            path = store.path_of(version)
        except StoreError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        if version not in store.versions():
            raise ApiError(404, "unknown_version", f"no version {version!r} on this device")
        data = await run_in_threadpool(tar_bundle, path)
        return Response(data, media_type="application/gzip")

    async def rollback(self, request: Request) -> Any:
        """Return to the previous version, or to a named version still on the device."""
        cfg = self.cfg
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
        actor = decode(request.headers.get("x-edgeops-actor", "unknown"))[:100]
        return json_response(
            await run_in_threadpool(self.runtime.rollback, version, reason[:200], actor)
        )


def add_routes(app: FastAPI, runtime: Runtime, cfg: AgentConfig) -> None:
    """Register ``POST /v1/bundles``, ``GET /v1/bundles/{version}``, ``POST /v1/rollback``."""
    routes = DeployRoutes(runtime, cfg)
    app.add_api_route(
        "/v1/bundles",
        routes.upload_bundle,
        methods=["POST"],
        tags=["deploy"],
        status_code=201,
        openapi_extra=body_schema(
            {"type": "string", "format": "binary"}, "application/gzip", "application/octet-stream"
        ),
        responses={
            201: {
                "description": "deployed",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/DeployResponse"}}
                },
            },
            409: ERROR_SCHEMA,
            415: ERROR_SCHEMA,
        },
    )
    app.add_api_route(
        "/v1/bundles/{version}",
        routes.download_bundle,
        methods=["GET"],
        tags=["deploy"],
        responses={
            200: {"description": "the bundle as .tar.gz", "content": {"application/gzip": {}}},
            404: ERROR_SCHEMA,
        },
    )
    app.add_api_route(
        "/v1/rollback",
        routes.rollback,
        methods=["POST"],
        tags=["deploy"],
        openapi_extra=body_schema(ROLLBACK_SCHEMA),
        responses={200: {"description": "rolled back"}, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA},
    )
