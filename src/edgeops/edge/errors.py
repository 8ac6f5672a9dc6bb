"""The agent's errors: one JSON shape for every refusal, and the strict JSON parse of a body.

Every error the agent answers is ``{"error": {"code": "...", "message": "...", "fields": [...]}}``
(``fields`` only when there are some): routes and the runtime raise :class:`ApiError`, the app's
exception handler turns it into that body with its status and headers.

    raise ApiError(422, "invalid_request", "send a JSON object")
"""

from __future__ import annotations

import json
from typing import Any


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
    """The JSON bytes of an error response."""
    err: dict[str, Any] = {"code": code, "message": message}
    if fields:
        err["fields"] = fields
    return json.dumps({"error": err}).encode()


#: the OpenAPI description of an error response
ERROR_SCHEMA = {
    "description": "error",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _reject_constant(name: str) -> Any:
    raise ApiError(422, "invalid_value", f"{name} is not allowed: send null for a missing value")


# NaN / Infinity are not JSON: refuse them (one decoder, built once: json.loads builds one per call)
STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_json(body: bytes) -> Any:
    """A request body as JSON: 400 if empty, not UTF-8, not JSON or too deep; 422 for NaN/Infinity."""
    if not body:
        raise ApiError(400, "invalid_json", "the request body is empty: send a JSON object")
    try:
        return STRICT_JSON(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None
