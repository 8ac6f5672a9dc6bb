"""Serving routes: predictions (the predict token) and their ground truth (the feedback token).

    POST /v1/predict    {"rows": [{column: value, ...}, ...]} -> label + probabilities per row
    POST /v1/feedback   {"request_id", "label", "row"?} -> the true label of logged rows
                        {"items": [{"request_id", "label", "row"?}, ...]} -> many at once

A prediction is validated against the active bundle's inputs, run with onnxruntime, logged to
the inference log under a fresh request id and counted for the probation of a new version.
A deploy's own check (the golden rows a deployer sends after a switch) says so with the header
``X-Edgeops-Check: deploy`` and the deploy token: it is answered (``"check": true``) and counted
for probation and in ``edgeops_check_predictions``, but never logged: it is not traffic, and
monitoring never sees it. The mark is the agent's: with any token but the deploy token the
header is refused (403), so a plant client cannot hide its traffic as checks.
A batch of feedback is checked whole before anything is stored, and stored in one transaction:
all of it, or (a bad item, an unknown request) none of it.
A label is the class as the model has it (an integer for 0/1 models); ``probabilities`` is keyed
by ``str(class)``, JSON object keys being strings. :func:`schemas` publishes the bodies exactly,
for the active bundle.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from edgeops.edge.auth import require
from edgeops.edge.bodies import body_schema, json_answer, json_body, json_response, ref
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ERROR_SCHEMA, ApiError
from edgeops.edge.inference import columns_to_feeds, rows_to_columns
from edgeops.edge.runtime import Runtime
from edgeops.edge.validation import not_utf8, row_schema

log = logging.getLogger("edgeops.agent")
#: the largest row index /v1/feedback takes (the inference log's integers are 64-bit)
MAX_ROW = 2**63 - 1
#: the header that marks a prediction as a deploy's own check (deploy token only)
CHECK_HEADER = "X-Edgeops-Check"
CHECK_KINDS = ("deploy",)
FEEDBACK_KEYS = ("request_id", "label", "row")


def schemas(cfg: AgentConfig, runtime: Runtime) -> dict[str, Any]:
    """The OpenAPI component schemas of the serving routes' bodies, exact for the active bundle.

    ``Row`` is the active bundle's row (:func:`~edgeops.edge.validation.row_schema`); ``Label``
    and ``Probabilities`` name its classes. Labels are the classes as the model has them (0/1
    models: integers), and ``probabilities`` is keyed by ``str(label)`` (JSON object keys are
    strings): the probability of the predicted class is ``probabilities[str(label)]``.
    """
    bundle = runtime.bundle
    classes = [] if bundle is None else list(bundle.model.classes)
    keys = [str(c) for c in classes]
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    if bundle is None:
        row: dict[str, Any] = {
            "type": "object",
            "description": "no model is deployed yet: its columns are published here once one is",
        }
        label: dict[str, Any] = {"type": ["integer", "string"]}
        probabilities: dict[str, Any] = {"type": "object", "additionalProperties": probability}
        feedback_label: dict[str, Any] = {"type": ["integer", "string"]}
    else:
        row = row_schema(bundle, cfg.unknown_categories == "accept")
        label = {**_typed_enum(classes), "description": "the predicted class"}
        probabilities = {
            "type": "object",
            "properties": dict.fromkeys(keys, probability),
            "required": keys,
            "additionalProperties": False,
            "description": "the probability of each class, keyed by str(class): the predicted "
            "one is probabilities[str(label)]",
        }
        # the check is str(label) in the classes' str(): "1" and 1 both name the class 1
        as_int = [int(k) for k in keys if k.lstrip("-").isdecimal() and str(int(k)) == k]
        feedback_label = {"anyOf": [{"type": "string", "enum": keys}]}
        if as_int:
            feedback_label["anyOf"].insert(0, {"type": "integer", "enum": as_int})
    feedback_label["description"] = 'the true class (a class of the model: 1 and "1" are the same)'
    return {
        "PredictRequest": {
            "type": "object",
            "required": ["rows"],
            "additionalProperties": False,
            "properties": {
                "rows": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": cfg.max_rows,
                    "items": ref("Row"),
                    "description": f"raw feature values by column name; at most {cfg.max_rows} rows "
                    "(more: 413)",
                }
            },
        },
        "Row": row,
        "PredictResponse": {
            "type": "object",
            "required": ["request_id", "model_version", "predictions"],
            "additionalProperties": False,
            "properties": {
                "request_id": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{32}$",
                    "description": "names the rows in the inference log and in /v1/feedback",
                },
                "model_version": {"type": "string", "description": "the version that predicted"},
                "predictions": {
                    "type": "array",
                    "items": ref("Prediction"),
                    "description": "one per row, in the order of the rows",
                },
                "check": {
                    "type": "boolean",
                    "const": True,
                    "description": f"only on a deploy's own check ({CHECK_HEADER}): these rows "
                    "were not logged (not traffic; request_id names nothing to label)",
                },
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["label", "probabilities"],
            "additionalProperties": False,
            "properties": {"label": ref("Label"), "probabilities": ref("Probabilities")},
        },
        "Label": label,
        "Probabilities": probabilities,
        "FeedbackRequest": {
            "type": "object",
            "required": ["request_id", "label"],
            "additionalProperties": False,
            "properties": {
                "request_id": {
                    "type": "string",
                    "minLength": 1,
                    "description": "from the prediction's answer",
                },
                "label": ref("FeedbackLabel"),
                "row": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_ROW,
                    "description": "only this row of the request (0-based); default: all its rows",
                },
            },
        },
        "FeedbackBatch": {
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": cfg.max_feedback_items,
                    "items": ref("FeedbackRequest"),
                    "description": f"labels for many rows; at most {cfg.max_feedback_items} "
                    "items (more: 413). Every item is checked before any is stored: one bad "
                    "item (422) or unknown request (404), named by its index, stores nothing",
                }
            },
        },
        "FeedbackLabel": feedback_label,
        "FeedbackResponse": {
            "type": "object",
            "required": ["updated"],
            "additionalProperties": False,
            "properties": {
                "updated": {"type": "integer", "minimum": 1, "description": "rows labelled"}
            },
        },
    }


def _typed_enum(values: list[Any]) -> dict[str, Any]:
    """``{"type": ..., "enum": values}`` with the JSON type of the values (integer, number, ...)."""
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string"}
    types = sorted({kinds.get(type(v), "string") for v in values})
    return {"type": types[0] if len(types) == 1 else types, "enum": values}


class ServingRoutes:
    """The handlers of ``/v1/predict`` and ``/v1/feedback`` over ``runtime``."""

    def __init__(self, runtime: Runtime, cfg: AgentConfig) -> None:
        self.runtime, self.cfg = runtime, cfg

    async def predict(self, request: Request) -> Any:
        """Predict rows of raw features with the active model."""
        runtime = self.runtime
        check = _check_mark(request, self.cfg)  # before the body: a refused mark reads nothing
        payload = await json_body(request, self.cfg, "deploy" if check else "predict")
        _check_predict_payload(payload)
        bundle, validator = runtime.bundle, runtime.validator
        if bundle is None or validator is None:
            raise ApiError(503, "no_model", "no model is deployed on this agent yet")
        rows = validator.check(payload["rows"], self.cfg.max_rows)
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
        answer: dict[str, Any] = {
            "request_id": request_id,
            "model_version": bundle.version,
            "predictions": [
                {"label": lab, "probabilities": dict(zip(classes, p, strict=True))}
                for lab, p in zip(label_list, proba_list, strict=True)
            ],
        }
        if check:  # a deploy's own check: answered, never logged (not traffic)
            runtime.metrics.count_checks(check, len(rows))
            answer["check"] = True
            return json_response(answer)
        runtime.log.append(request_id, bundle.version, rows, label_list, proba_list, latency_ms)
        runtime.metrics.count_predictions(label_list)
        return json_response(answer)

    async def feedback(self, request: Request) -> Any:
        """Attach the true label (ground truth) to a request's rows (the feedback token); a
        batch (``{"items": [...]}``) is checked whole, then stored whole or not at all."""
        payload = await json_body(request, self.cfg, "feedback")
        if not isinstance(payload, dict):
            raise ApiError(422, "invalid_request", "send a JSON object")
        if "items" in payload:
            return await self._feedback_batch(payload)
        rid, label, row = payload.get("request_id"), payload.get("label"), payload.get("row")
        problems = _feedback_problems(payload)
        if problems:
            raise ApiError(422, "invalid_request", "invalid feedback", problems)
        classes = self._classes()
        if str(label) not in classes:
            raise ApiError(
                422,
                "invalid_request",
                f"label {label!r} is not a class of the model",
                [{"field": "label", "problem": f"allowed: {classes}"}],
            )
        n = await run_in_threadpool(self.runtime.log.feedback, rid, str(label), row)
        if n == 0:
            raise ApiError(404, "unknown_request", f"no logged request {rid!r} (or it was purged)")
        return json_response({"updated": n})

    def _classes(self) -> list[str]:
        bundle = self.runtime.bundle
        if bundle is None:  # no classes to check a label against: none is stored
            raise ApiError(503, "no_model", "no model is deployed on this agent: no label is taken")
        return [str(c) for c in bundle.model.classes]

    async def _feedback_batch(self, payload: dict[str, Any]) -> Any:
        items = payload["items"]
        _only(payload, "items")
        if not isinstance(items, list) or not items:
            raise ApiError(
                422,
                "invalid_request",
                'send {"items": [{"request_id": ..., "label": ..., "row": ...}, ...]} '
                "(at least one item)",
                [{"field": "items", "problem": "a non-empty list is required"}],
            )
        limit = self.cfg.max_feedback_items
        if len(items) > limit:
            raise ApiError(
                413,
                "too_many_items",
                f"{len(items)} feedback items in one request; the limit is {limit} "
                "(max_feedback_items): send them in several requests",
            )
        classes = self._classes()
        problems: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append({"field": f"items[{i}]", "problem": "must be an object"})
                continue
            found = _feedback_problems(item)
            if not found and str(item["label"]) not in classes:
                found = [
                    {"field": "label", "problem": f"not a class of the model; allowed: {classes}"}
                ]
            problems += [{**p, "field": f"items[{i}].{p['field']}"} for p in found]
        if problems:
            first = problems[0]["field"].split(".")[0]
            raise ApiError(
                422,
                "invalid_request",
                f"invalid feedback in {first} (and {len(problems) - 1} more problem(s)); "
                "nothing was stored: fix the items named and send the batch again",
                problems[:100],
            )
        events = [(it["request_id"], str(it["label"]), it.get("row")) for it in items]
        n, unknown = await run_in_threadpool(self.runtime.log.feedback_many, events)
        if unknown:
            raise ApiError(
                404,
                "unknown_request",
                f"no logged request for items {unknown[:20]} (request ids not logged, rows out "
                "of range, or purged); nothing was stored: send the batch again without them",
                [
                    {"field": f"items[{i}].request_id", "problem": "not logged"}
                    for i in unknown[:100]
                ],
            )
        return json_response({"updated": n})


def _check_predict_payload(payload: Any) -> None:
    if not isinstance(payload, dict) or "rows" not in payload:
        raise ApiError(
            422,
            "invalid_request",
            'send {"rows": [{...}, ...]}',
            [{"field": "rows", "problem": "missing"}],
        )
    _only(payload, "rows")


def _only(payload: dict[str, Any], key: str) -> None:
    """422 naming every key of ``payload`` other than ``key``."""
    extra = sorted(str(k) for k in payload if k != key)
    if extra:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown keys {extra} beside {key}",
            [{"field": k, "problem": "unknown"} for k in extra],
        )


def _feedback_problems(payload: dict[str, Any]) -> list[dict[str, Any]]:
    rid, label, row = payload.get("request_id"), payload.get("label"), payload.get("row")
    problems = []
    if not isinstance(rid, str) or not rid:
        problems.append({"field": "request_id", "problem": "a non-empty string is required"})
    if isinstance(label, bool) or not isinstance(label, str | int):
        problems.append(
            {"field": "label", "problem": "a class label (string or integer) is required"}
        )
    for name, value in (("request_id", rid), ("label", label)):
        if isinstance(value, str) and (bad := not_utf8(value)):
            problems.append({"field": name, "problem": bad})
    if row is not None and (
        isinstance(row, bool) or not isinstance(row, int) or not 0 <= row <= MAX_ROW
    ):
        problems.append({"field": "row", "problem": f"must be an integer from 0 to {MAX_ROW}"})
    extra = sorted(str(k) for k in payload if k not in FEEDBACK_KEYS)
    problems += [{"field": k, "problem": "unknown"} for k in extra]
    return problems


def _check_mark(request: Any, cfg: AgentConfig) -> str | None:
    """The kind of deploy check ``X-Edgeops-Check`` names (None: traffic). Only the deploy
    token may mark a request: any other (or none) gets 401/403 and nothing is predicted."""
    value = request.headers.get(CHECK_HEADER.lower())
    if value is None:
        return None
    try:
        require(request, cfg, "deploy")
    except ApiError as exc:
        if exc.status != 403:
            raise
        raise ApiError(
            403,
            "forbidden",
            f"{CHECK_HEADER} marks a deploy's own check, which is not logged: only the deploy "
            "token may send it (send traffic without this header)",
        ) from None
    kind = value.strip().lower()
    if kind not in CHECK_KINDS:
        raise ApiError(
            422,
            "invalid_request",
            f"{CHECK_HEADER}: {value[:40]!r} is not a kind of check",
            [{"field": CHECK_HEADER, "problem": f"allowed: {list(CHECK_KINDS)}"}],
        )
    return kind


def add_routes(app: FastAPI, runtime: Runtime, cfg: AgentConfig) -> None:
    """Register ``POST /v1/predict`` and ``POST /v1/feedback`` on ``app``."""
    routes = ServingRoutes(runtime, cfg)
    app.add_api_route(
        "/v1/predict",
        routes.predict,
        methods=["POST"],
        tags=["serve"],
        openapi_extra={
            **body_schema(ref("PredictRequest")),
            "parameters": [
                {
                    "name": CHECK_HEADER,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "enum": list(CHECK_KINDS)},
                    "description": "marks a deploy's own check (the golden rows after a "
                    "switch): answered but never logged, so never counted as traffic. Only "
                    "with the deploy token (any other token: 403)",
                }
            ],
        },
        responses={
            200: json_answer("labels and probabilities per row", ref("PredictResponse")),
            403: {**ERROR_SCHEMA, "description": f"{CHECK_HEADER} without the deploy token"},
            500: ERROR_SCHEMA,
            503: ERROR_SCHEMA,
        },
    )
    app.add_api_route(
        "/v1/feedback",
        routes.feedback,
        methods=["POST"],
        tags=["serve"],
        openapi_extra=body_schema({"oneOf": [ref("FeedbackRequest"), ref("FeedbackBatch")]}),
        responses={
            200: json_answer("rows updated", ref("FeedbackResponse")),
            404: {
                **ERROR_SCHEMA,
                "description": "no logged request (a batch: the items named, nothing stored)",
            },
            503: ERROR_SCHEMA,
        },
    )
