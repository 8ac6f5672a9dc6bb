"""A client generated from the agent's own OpenAPI document predicts, gives feedback and deploys.

A real agent (``edgeops edge serve``, loopback) with a bundle deployed publishes /openapi.json,
exact for that bundle: the row's columns, types and categories, the classes. openapi-python-client
generates a Python client from it into tmp_path; the test imports it and calls the operations
with its typed models: predict (a golden row), feedback, and the bundle upload (a .tar.gz),
then an upload with the predict token, which must come back as the typed error body. After the
switch the document describes the new version.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, FEEDBACK_TOKEN, PREDICT_TOKEN, AgentProcess
from tests.bundles import make_bundle
from tests.conftest import BIN, tool_env

pytestmark = pytest.mark.integration

PACKAGE = "edgeops_agent_client"


def generate_client(spec: dict, out: Path) -> str:
    """Generate the client package ``out`` from ``spec``; return the generator's output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / "openapi.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(path),
            "--output-path",
            str(out),
            "--meta",
            "none",
            "--overwrite",
        ],
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def test_a_generated_client_predicts_and_uploads_a_bundle(tmp_path: Path, signing_keys: Path):
    v1 = make_bundle(tmp_path / "v1", signing_keys, "1.0.0")
    v2 = make_bundle(tmp_path / "v2", signing_keys, "2.0.0", C=0.5)
    manifest = json.loads((v1 / "manifest.json").read_text())
    cats = {i["name"]: set(i["categories"]) for i in manifest["inputs"] if "categories" in i}
    examples = [
        ex
        for ex in manifest["golden"]["examples"]  # not the probes of unseen categories
        if all(ex["inputs"][k] in known for k, known in cats.items())
    ][:3]
    state = tmp_path / "state"
    state.mkdir()
    with AgentProcess(state, signing_keys / "signing.pub", {}) as agent:
        with httpx.Client(base_url=agent.url, timeout=30.0, trust_env=False) as c:
            r = c.post(
                "/v1/bundles",
                content=tar_bundle(v1),
                headers={
                    "Authorization": f"Bearer {DEPLOY_TOKEN}",
                    "Content-Type": "application/gzip",
                },
            )
            assert r.status_code == 201, r.text
            spec = c.get("/openapi.json").json()

        output = generate_client(spec, tmp_path / "gen" / PACKAGE)
        assert "will not be generated" not in output, output  # every operation made it
        sys.path.insert(0, str(tmp_path / "gen"))
        try:
            gen = importlib.import_module(PACKAGE)
            predict = importlib.import_module(f"{PACKAGE}.api.serve.predict")
            feedback = importlib.import_module(f"{PACKAGE}.api.serve.feedback")
            upload = importlib.import_module(f"{PACKAGE}.api.deploy.upload_bundle")
            models = importlib.import_module(f"{PACKAGE}.models")
            types = importlib.import_module(f"{PACKAGE}.types")
        finally:
            sys.path.remove(str(tmp_path / "gen"))

        def client(token: str):
            return gen.AuthenticatedClient(
                base_url=agent.url, token=token, httpx_args={"trust_env": False}
            )

        # the row model has the bundle's columns: its categories are enums
        rows = [models.Row.from_dict(ex["inputs"]) for ex in examples]
        assert isinstance(rows[0].machine_type, models.RowMachineType)
        answer = predict.sync_detailed(
            client=client(PREDICT_TOKEN), body=models.PredictRequest(rows=rows)
        )
        assert answer.status_code == 200, answer.content
        body = answer.parsed
        assert isinstance(body, models.PredictResponse), body
        assert body.model_version == "1.0.0" and len(body.request_id) == 32
        for pred, ex in zip(body.predictions, examples, strict=True):
            assert isinstance(pred.label, models.Label) and pred.label.value == ex["label"]
            assert isinstance(pred.probabilities, models.Probabilities)
            probs = pred.probabilities.to_dict()  # keyed by str(label)
            assert sorted(probs) == sorted(str(k) for k in manifest["classes"])
            assert probs[str(pred.label.value)] == max(probs.values())
            for cls, p in zip(manifest["classes"], ex["probabilities"], strict=True):
                assert probs[str(cls)] == pytest.approx(p, abs=1e-5)

        label = models.FeedbackLabelType0(examples[0]["label"])
        fb = feedback.sync(
            client=client(FEEDBACK_TOKEN),
            body=models.FeedbackRequest(request_id=body.request_id, label=label, row=0),
        )
        assert isinstance(fb, models.FeedbackResponse) and fb.updated == 1, fb

        archive = types.File(
            payload=io.BytesIO(tar_bundle(v2)),
            file_name="bundle.tar.gz",
            mime_type="application/gzip",
        )
        refused = upload.sync_detailed(client=client(PREDICT_TOKEN), body=archive)
        assert refused.status_code == 403 and isinstance(refused.parsed, models.Error)
        assert refused.parsed.error.code == "forbidden"
        archive.payload.seek(0)
        deployed = upload.sync_detailed(client=client(DEPLOY_TOKEN), body=archive)
        assert deployed.status_code == 201, deployed.content
        result = deployed.parsed
        assert isinstance(result, models.DeployResponse), result
        assert (result.version, result.previous, result.probation) == ("2.0.0", "1.0.0", True)

        with httpx.Client(base_url=agent.url, timeout=30.0, trust_env=False) as c:
            again = c.get("/openapi.json").json()
            assert "plant-failure 2.0.0" in again["info"]["description"]
            assert again["components"]["schemas"]["Row"]["description"].endswith("2.0.0")
            after = predict.sync(
                client=client(PREDICT_TOKEN), body=models.PredictRequest(rows=rows[:1])
            )
            assert isinstance(after, models.PredictResponse) and after.model_version == "2.0.0"
