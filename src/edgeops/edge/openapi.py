"""The agent's OpenAPI document: exact bodies for the active bundle, the error body, bearer auth.

The routes read and write their bodies by hand (speed), and publish them as references to
component schemas (:func:`~edgeops.edge.bodies.ref`) that this module fills in: the serving
bodies, exact for the active bundle (:func:`edgeops.edge.routes.serving.schemas`: its columns,
types, categories, nullability, classes), the error body (``errors.ERROR_COMPONENTS``) and a
deploy's answer. It also marks the routes that need a bearer token (``security``) and declares
the error answers each route can give, every one with the error body. The document is built
again on the first request after the active version changed (deploy, rollback, probation).

    install(app, runtime, cfg)   # app.openapi() now describes the active bundle
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from edgeops.edge.bodies import ref
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ERROR_COMPONENTS
from edgeops.edge.routes import serving
from edgeops.edge.runtime import Runtime

#: the answer of ``POST /v1/bundles`` (referenced by routes/deploy.py)
DEPLOY_COMPONENTS: dict[str, Any] = {
    "DeployResponse": {
        "type": "object",
        "required": ["version", "previous", "probation", "golden_max_abs_diff"],
        "properties": {
            "version": {"type": "string", "description": "the version now active"},
            "previous": {"type": ["string", "null"], "description": "the version it replaced"},
            "probation": {
                "type": "boolean",
                "description": "on probation: rolled back by itself "
                "if it fails too often (true unless it is the first version)",
            },
            "golden_max_abs_diff": {
                "type": "number",
                "description": "largest probability "
                "difference from the signed golden examples on this device",
            },
        },
    },
}

BEARER = "bearer"
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "Authorization: Bearer <token>. The deploy token may call every route; the "
    "predict token /v1/predict and /v1/status (with predict_auth off predicting "
    "needs no token); the feedback token /v1/feedback and /v1/status. Each "
    "operation says which it needs.",
}
TOKEN_NOTE = {
    "deploy": "Needs the deploy token.",
    "predict": "Needs the predict token (or the deploy token).",
    "feedback": "Needs the feedback token (or the deploy token); never the predict token.",
    "any": "Needs any of the agent's tokens (predict, feedback or deploy).",
    "metrics": "Needs the metrics token (or the deploy token).",
}
#: what each error status means, for the responses that do not say more
ERRORS = {
    400: "the body is not JSON, Content-Length is invalid, or the client went away",
    401: "no bearer token, or an invalid one",
    403: "this token may not call this route",
    404: "not found",
    408: "the body did not arrive in time",
    409: "conflict with the agent's state",
    413: "the body (or the number of rows) is over the limit",
    415: "the body's Content-Type is not one this route takes",
    422: "the request is invalid: the error's fields name each problem",
    500: "internal error; the agent keeps serving",
    503: "not available now: no model is deployed yet, or the agent is busy",
    507: "the state directory is full or cannot be written",
}


def token_kind(path: str, cfg: AgentConfig) -> str | None:
    """The token a route needs (auth.require's kind), None for an open one."""
    if path == "/v1/predict":
        return "predict" if cfg.predict_auth else None
    if path == "/v1/feedback":
        return "feedback"
    if path == "/v1/status":
        return "any"
    if path.startswith("/v1/"):
        return "deploy"
    if path == "/metrics" and getattr(cfg, "metrics_token", ""):
        return "metrics"
    return None


def build(app: FastAPI, runtime: Runtime, cfg: AgentConfig) -> dict[str, Any]:
    """The OpenAPI document of ``app`` for the bundle active now."""
    app.openapi_schema = None
    doc = FastAPI.openapi(app)  # FastAPI's own, from the routes; completed below
    bundle = runtime.bundle
    if bundle is not None:
        model = bundle.manifest["model"]
        doc["info"]["description"] += (
            f"\n\nActive model: {model['name']} {bundle.version}. The request and response "
            "schemas of /v1/predict and /v1/feedback are this model's; they change with it."
        )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422: not what we answer
        schemas.pop(name, None)
    schemas.update(ERROR_COMPONENTS)
    schemas.update(serving.schemas(cfg, runtime))
    schemas.update(DEPLOY_COMPONENTS)
    components["securitySchemes"] = {BEARER: BEARER_SCHEME}
    for path, operations in doc["paths"].items():
        kind = token_kind(path, cfg)
        for op in operations.values():
            _complete(op, kind)
    return doc


def _complete(op: dict[str, Any], kind: str | None) -> None:
    """Security, the token note, and every error answer the operation can give, with the error
    body (whatever the route declared, FastAPI's validation error included)."""
    responses = op.setdefault("responses", {})
    statuses: set[int] = set()
    if kind is not None:
        op["security"] = [{BEARER: []}]
        op["description"] = f"{op.get('description', '').rstrip()}\n\n{TOKEN_NOTE[kind]}".lstrip()
        statuses |= {401, 403} if kind == "deploy" else {401}
    if "requestBody" in op:
        statuses |= {400, 408, 413, 422}
    if op.get("parameters"):
        statuses.add(422)
    for status in statuses:
        responses.setdefault(str(status), {})
    for status, answer in responses.items():
        if status.isdigit() and int(status) >= 400:
            described = answer.get("description") not in (None, "", "error", "Validation Error")
            answer["description"] = (
                answer["description"] if described else ERRORS.get(int(status), "error")
            )
            answer["content"] = {"application/json": {"schema": ref("Error")}}
    op["responses"] = dict(sorted(responses.items()))


def install(app: FastAPI, runtime: Runtime, cfg: AgentConfig) -> None:
    """Serve :func:`build`'s document at ``app.openapi_url``, built again after every switch."""
    built_for: list[Any] = [None, None]

    def openapi() -> dict[str, Any]:
        bundle, validator = runtime.bundle, runtime.validator  # replaced together at each switch
        if (
            app.openapi_schema is None
            or built_for[0] is not bundle
            or built_for[1] is not validator
        ):
            app.openapi_schema = build(app, runtime, cfg)
            built_for[:] = [bundle, validator]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
