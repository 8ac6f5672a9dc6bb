"""Request and response bodies of the agent's routes: capped reads, JSON in, JSON out.

A body is read with a size cap (413) and a time limit (408) before anything parses it; JSON
bodies must say ``application/json`` (415) and are parsed strictly (:func:`~edgeops.edge.errors.
parse_json`). Answers are compact JSON. :func:`body_schema` is the OpenAPI ``requestBody`` of a
route whose body is read by hand, :func:`json_answer` an answer's, so the published schema still
says exactly what goes in and comes out.

    payload = await json_body(request, cfg, "predict")   # auth, type, capped read, parse
    return json_response({"updated": 3})
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from edgeops.edge.auth import require
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ApiError, parse_json
from edgeops.edge.inference_log import compact_json


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


def json_content(request: Any) -> None:
    """415 unless the request says its body is ``application/json``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")


async def json_body(request: Any, cfg: AgentConfig, kind: str) -> Any:
    """Auth, content type, size- and time-capped read, strict JSON parse: in that order."""
    require(request, cfg, kind)
    json_content(request)
    return parse_json(await read_body(request, cfg.max_body_bytes, cfg.body_timeout_seconds))


def json_response(obj: Any, status: int = 200) -> Response:
    """``obj`` as a compact JSON response."""
    return Response(compact_json(obj), status_code=status, media_type="application/json")


def body_schema(schema: dict[str, Any], *content_types: str) -> dict[str, Any]:
    """The ``openapi_extra`` publishing ``schema`` as a route's required request body, under each
    of ``content_types`` (default: application/json)."""
    content = {t: {"schema": schema} for t in content_types or ("application/json",)}
    return {"requestBody": {"required": True, "content": content}}


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI description of a JSON answer: ``responses={200: json_answer(...)}``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def ref(name: str) -> dict[str, str]:
    """A reference to the OpenAPI component schema ``name`` (see :mod:`edgeops.edge.openapi`)."""
    return {"$ref": f"#/components/schemas/{name}"}
