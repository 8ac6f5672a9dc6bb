"""Text that is not UTF-8 is the client's error (422), never the model's (500, probation).

JSON can carry a lone UTF-16 surrogate (``"\\ud800"``): Python decodes it, but it is not text
onnxruntime (or SQLite) can take. With ``unknown_categories: accept`` such a category used to
reach the model and fail there: a 500 counted against the version on probation, so a healthy
version was rolled back by the client's bad input. A real agent must answer 422 naming the row
and the field, count nothing against the model, and keep the new version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, FEEDBACK_TOKEN, PREDICT_TOKEN, AgentProcess
from tests.bundles import make_bundle

pytestmark = pytest.mark.integration

DEPLOY = {"Authorization": f"Bearer {DEPLOY_TOKEN}"}
PREDICT = {"Authorization": f"Bearer {PREDICT_TOKEN}", "Content-Type": "application/json"}
LONE = "\ud800"
# a version on probation is rolled back after 3 requests if over 20% of them failed
CONFIG = {
    "unknown_categories": "accept",
    "probation_min_requests": 3,
    "probation_max_error_rate": 0.2,
    "probation_requests": 1000,
}


def post_json(c: httpx.Client, path: str, payload: Any) -> httpx.Response:
    # json.dumps writes the lone surrogate as the escape "\ud800": valid JSON, not valid text
    token = FEEDBACK_TOKEN if path == "/v1/feedback" else PREDICT_TOKEN
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return c.post(path, content=json.dumps(payload).encode("ascii"), headers=headers)


def problems(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.headers["content-type"].startswith("application/json"), r.text
    r.content.decode("utf-8")  # the error body itself is valid UTF-8
    return r.json()["error"].get("fields", [])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, signing_keys: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("encoding-bundles")
    return (
        make_bundle(tmp / "v1", signing_keys, "1.0.0"),
        make_bundle(tmp / "v2", signing_keys, "2.0.0", C=0.5),
    )


def test_a_lone_surrogate_is_a_422_and_probation_keeps_the_new_version(
    tmp_path: Path, signing_keys: Path, bundles: tuple[Path, Path]
) -> None:
    v1, v2 = bundles
    row = dict(json.loads((v1 / "manifest.json").read_text())["golden"]["examples"][0]["inputs"])
    state = tmp_path / "state"
    state.mkdir()
    with (
        AgentProcess(state, signing_keys / "signing.pub", CONFIG) as agent,
        httpx.Client(base_url=agent.url, timeout=30.0, trust_env=False) as c,
    ):
        for bundle in (v1, v2):
            r = c.post(
                "/v1/bundles",
                content=tar_bundle(bundle),
                headers={**DEPLOY, "Content-Type": "application/gzip"},
            )
            assert r.status_code == 201, r.text
        assert c.get("/v1/status", headers=DEPLOY).json()["probation"]["version"] == "2.0.0"

        # an unknown category is accepted (policy), one that is not text is not: 422, by row
        assert (
            post_json(c, "/v1/predict", {"rows": [{**row, "machine_type": "Z"}]}).status_code == 200
        )
        for _ in range(20):  # far past probation_min_requests
            r = post_json(c, "/v1/predict", {"rows": [row, {**row, "machine_type": f"x{LONE}"}]})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_rows"
            [problem] = problems(r)
            assert (problem["row"], problem["field"]) == (1, "machine_type"), problem
            assert "surrogate at position 1" in problem["problem"]
        # a passthrough column is logged: it must be text too
        r = post_json(c, "/v1/predict", {"rows": [{**row, "timestamp": LONE}]})
        assert r.status_code == 422 and problems(r)[0]["field"] == "timestamp", r.text
        # an unknown key that is not text is named (as "?"), in a body that is valid UTF-8
        r = post_json(c, "/v1/predict", {"rows": [{**row, LONE: 1}]})
        assert r.status_code == 422 and problems(r)[0]["field"] == "?", r.text

        # feedback: the request id and the label go to SQLite: 422 too, not a 500
        r = post_json(c, "/v1/feedback", {"request_id": LONE, "label": 1})
        assert r.status_code == 422 and {p["field"] for p in problems(r)} == {"request_id"}, r.text

        status = c.get("/v1/status", headers=DEPLOY).json()
        assert status["active"]["version"] == "2.0.0", status["history"][-3:]
        assert status["probation"] is not None and status["probation"]["errors"] == 0, status
        assert status["errors"] == 0, status["requests"]  # no 5xx answered
        assert not [h for h in status["history"] if h.get("event") == "rollback"], status["history"]
        rollbacks = [
            line
            for line in c.get("/metrics").text.splitlines()
            if line.startswith('edgeops_rollbacks_total{trigger="probation"}')
        ]
        assert all(line.endswith(" 0.0") for line in rollbacks), rollbacks
        # and the version still predicts
        r = post_json(c, "/v1/predict", {"rows": [row]})
        assert r.status_code == 200 and r.json()["model_version"] == "2.0.0", r.text
