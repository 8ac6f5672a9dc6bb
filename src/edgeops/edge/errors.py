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

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields, self.headers = (
            status,
            code,
            message,
            fields,
            headers,
        )


def error_body(code: str, message: str, fields: list[dict[str, Any]] | None = None) -> bytes:
    """The JSON bytes of an error response (UTF-8; text that is not, such as a lone surrogate
    from a client's JSON echoed in a field name, becomes "?")."""
    err: dict[str, Any] = {"code": code, "message": message}
    if fields:
        err["fields"] = fields
    return json.dumps({"error": err}, ensure_ascii=False).encode("utf-8", "replace")


#: JSON Schemas of the error body: the OpenAPI components ``Error`` and ``ErrorField``
ERROR_COMPONENTS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "description": 'every 4xx/5xx answer: {"error": {"code", "message", "fields"?}}',
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "stable, for programs: invalid_rows, unauthorized, ...",
                    },
                    "message": {"type": "string", "description": "for people"},
                    "fields": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/ErrorField"},
                        "description": "the problems by field (and row), when there are some",
                    },
                },
            }
        },
    },
    "ErrorField": {
        "type": "object",
        "required": ["field", "problem"],
        "additionalProperties": False,
        "properties": {
            "field": {
                "type": ["string", "null"],
                "description": "the field or column; null: the whole row",
            },
            "problem": {"type": "string"},
            "row": {
                "type": "integer",
                "minimum": 0,
                "description": "the row of /v1/predict's rows",
            },
        },
    },
}

#: the OpenAPI description of an error response
ERROR_SCHEMA = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
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
