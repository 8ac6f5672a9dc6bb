"""The agent's published OpenAPI says exactly what its hand-written checks accept.

``row_schema`` (published) and ``RowValidator.check`` (what runs) must agree on every row: a row
is valid JSON Schema-wise exactly when the validator takes it, for both category policies. The
document itself: typed bodies, the error body on every 4xx/5xx answer, bearer auth on /v1/*, and
rebuilt when the active bundle changes. No model is trained: the bundles are stand-ins.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from edgeops.edge.agent import create_app
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ApiError
from edgeops.edge.inference import InputSpec
from edgeops.edge.validation import RowValidator, row_schema

INPUTS = [
    InputSpec("machine_type", "string", categories=("L", "M", "H")),
    InputSpec("zone", "string", nullable=True, categories=("north", "south")),
    InputSpec("torque_nm", "float32", min=0.0, max=100.0),
    InputSpec("air_temp_k", "float32", nullable=True, min=285.0, max=320.0),
]
GOOD = {"machine_type": "L", "zone": "north", "torque_nm": 40.5, "air_temp_k": None}


def stand_in(version: str = "1.0.0", classes: tuple[Any, ...] = (0, 1)) -> Any:
    """What row_schema, RowValidator and the OpenAPI read of a VerifiedBundle."""
    manifest = {
        "model": {"name": "plant-failure", "version": version},
        "passthrough": ["timestamp"],
        "classes": list(classes),
    }
    model = SimpleNamespace(inputs=INPUTS, classes=list(classes))
    return SimpleNamespace(manifest=manifest, model=model, version=version)


ROWS = [
    GOOD,
    {**GOOD, "zone": None},
    {**GOOD, "timestamp": "2026-11-22T10:00:00Z"},
    {**GOOD, "timestamp": None},
    {**GOOD, "torque_nm": 3},  # an integer is a number
    {**GOOD, "torque_nm": -3.4e38},
    {**GOOD, "machine_type": "X"},  # unknown category: accepted only by the accept policy
    {**GOOD, "machine_type": None},  # not nullable
    {**GOOD, "torque_nm": None},
    {**GOOD, "torque_nm": True},  # a boolean is not a number
    {**GOOD, "torque_nm": "40"},
    {**GOOD, "torque_nm": 3.5e38},  # out of float32 range
    {**GOOD, "torque_nm": 10**40},
    {**GOOD, "machine_type": 1},
    {**GOOD, "timestamp": {"a": 1}},  # a passthrough value is a single value
    {**GOOD, "timestamp": [1]},
    {**GOOD, "extra": 1},
    {k: v for k, v in GOOD.items() if k != "zone"},  # every input column is required
    {},
]


@pytest.mark.parametrize("accept", [False, True], ids=["reject", "accept"])
@pytest.mark.parametrize("row", ROWS, ids=[str(i) for i in range(len(ROWS))])
def test_the_published_row_schema_accepts_what_the_validator_accepts(row: dict, accept: bool):
    bundle = stand_in()
    schema_ok = jsonschema.Draft202012Validator(row_schema(bundle, accept)).is_valid(row)
    try:
        RowValidator.for_bundle(bundle, accept).check([row], 10)
        checked_ok = True
    except ApiError:
        checked_ok = False
    assert schema_ok == checked_ok, (row, schema_ok, checked_ok)


def test_text_that_is_not_utf8_is_refused_by_row_and_field() -> None:
    validator = RowValidator.for_bundle(stand_in(), accept_unknown=True)
    with pytest.raises(ApiError) as err:
        validator.check(
            [GOOD, {**GOOD, "machine_type": "a\ud800"}, {**GOOD, "timestamp": "\udfff"}], 10
        )
    assert err.value.status == 422
    assert [(p["row"], p["field"]) for p in err.value.fields] == [
        (1, "machine_type"),
        (2, "timestamp"),
    ]
    assert all("surrogate" in p["problem"] for p in err.value.fields)
    # a known category, or any valid text, still passes
    validator.check([{**GOOD, "machine_type": "Zé"}], 10)


@pytest.fixture
def app_client(tmp_path: Path, signing_keys: Path):
    cfg = AgentConfig(
        state_dir=tmp_path / "state",
        public_key=signing_keys / "signing.pub",
        deploy_token="d" * 24,
        predict_token="p" * 24,
        max_rows=50,
        max_feedback_items=20,
    )
    cfg.state_dir.mkdir()
    app = create_app(cfg)
    with TestClient(app) as client:
        yield app, client


def test_the_document_types_every_body_and_error_and_follows_the_active_bundle(app_client):
    app, client = app_client
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert schemas["Row"]["type"] == "object" and "properties" not in schemas["Row"]  # no model yet
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    refs = json.dumps(doc)
    assert "HTTPValidationError" not in refs
    ops = {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()}
    for (path, _method), op in ops.items():
        assert op["operationId"].isidentifier(), op["operationId"]
        for status, answer in op["responses"].items():
            if int(status) >= 400:
                assert answer["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }, (path, status)
        assert ("security" in op) == path.startswith("/v1/"), path
    predict = ops[("/v1/predict", "post")]
    assert predict["operationId"] == "predict"
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    assert (
        predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        == "#/components/schemas/PredictResponse"
    )
    assert schemas["PredictRequest"]["properties"]["rows"]["maxItems"] == 50
    # a deploy's check is marked by a header only the deploy token may send (403 otherwise)
    (check,) = predict["parameters"]
    assert (check["name"], check["in"], check["schema"]["enum"]) == (
        "X-Edgeops-Check",
        "header",
        ["deploy"],
    )
    assert "403" in predict["responses"] and "check" in schemas["PredictResponse"]["properties"]
    feedback = ops[("/v1/feedback", "post")]
    assert feedback["requestBody"]["content"]["application/json"]["schema"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/FeedbackRequest"},
            {"$ref": "#/components/schemas/FeedbackBatch"},
        ]
    }
    batch = schemas["FeedbackBatch"]["properties"]["items"]
    assert batch["maxItems"] == 20 and batch["items"]["$ref"].endswith("/FeedbackRequest")
    assert {"404", "413", "422"} <= set(feedback["responses"])
    upload = ops[("/v1/bundles", "post")]
    assert upload["requestBody"]["content"]["application/gzip"]["schema"] == {
        "type": "string",
        "format": "binary",
    }
    assert upload["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DeployResponse"
    )
    assert {"401", "403"} <= set(upload["responses"])
    assert (
        "security" not in ops[("/healthz", "get")]
        and "401" not in ops[("/healthz", "get")]["responses"]
    )
    for ref in {r.split("/")[-1] for r in _refs(doc)}:
        assert ref in schemas, ref

    runtime = app.state.runtime
    runtime.bundle, runtime.validator = stand_in("2.0.0"), object()  # what a switch replaces
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert schemas["Row"] == row_schema(stand_in("2.0.0"), accept_unknown=False)
    assert schemas["Label"]["type"] == "integer" and schemas["Label"]["enum"] == [0, 1]
    assert schemas["Probabilities"]["required"] == ["0", "1"]
    assert "plant-failure 2.0.0" in doc["info"]["description"]

    runtime.bundle, runtime.validator = stand_in("3.0.0", ("ok", "worn")), object()
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Label"]["enum"] == ["ok", "worn"] and schemas["Label"]["type"] == "string"
    assert schemas["FeedbackLabel"]["anyOf"] == [{"type": "string", "enum": ["ok", "worn"]}]
    assert schemas["Probabilities"]["required"] == ["ok", "worn"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_docs_pages_and_assets_are_served_from_the_package(app_client):
    _, client = app_client
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs/assets/" in page.text and "cdn" not in page.text
    asset = next(
        line.split('"')[1] for line in page.text.splitlines() if "swagger-ui-bundle.js" in line
    )
    r = client.get(asset)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/redoc").status_code == 200


def test_only_the_deploy_token_marks_a_check_and_a_batch_has_a_bound(app_client) -> None:
    _, client = app_client
    row = {"rows": [GOOD]}
    for token, status in (("p" * 24, 403), ("", 401), ("x" * 24, 401)):
        headers = {"X-Edgeops-Check": "deploy"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = client.post("/v1/predict", json=row, headers=headers)
        assert r.status_code == status, r.text
    r = client.post(
        "/v1/predict",
        json=row,
        headers={"X-Edgeops-Check": "deploy", "Authorization": "Bearer " + "p" * 24},
    )
    assert "only the deploy token" in r.json()["error"]["message"]
    deploy = {"Authorization": "Bearer " + "d" * 24}
    r = client.post("/v1/predict", json=row, headers={**deploy, "X-Edgeops-Check": "nightly"})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "X-Edgeops-Check"
    item = {"request_id": "a" * 32, "label": 1}
    r = client.post("/v1/feedback", json={"items": [item] * 21}, headers=deploy)
    assert r.status_code == 413 and "max_feedback_items" in r.json()["error"]["message"]
    r = client.post("/v1/feedback", json={"items": []}, headers=deploy)
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "items"
    r = client.post(
        "/v1/feedback", json={"items": [item]}, headers={"Authorization": "Bearer " + "p" * 24}
    )
    assert r.status_code == 403  # the predict token never labels, one row or many
