"""A device serves one model: another model (name, inputs or classes) needs --replace-model.

And clients may send the whole row as it comes from the machine: the timestamp, the target and
dropped columns are accepted (and logged), a truly unknown column is refused.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, EDGEOPS, PREDICT_TOKEN, AgentProcess
from tests.bundles import PARAMS, make_bundle, plant_split

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory, signing_keys: Path):
    root = tmp_path_factory.mktemp("identity")
    (root / "deploy.token").write_text(DEPLOY_TOKEN + "\n")
    agent = AgentProcess(root / "state", signing_keys / "signing.pub").start()
    (root / "targets.yaml").write_text(
        f"public_key: {signing_keys / 'signing.pub'}\ntargets:\n"
        f"  - {{name: line-a, url: '{agent.url}', token_file: '{root / 'deploy.token'}'}}\n"
    )
    _, test_df = plant_split()
    test_df.to_parquet(root / "test.parquet")
    params = json.loads(json.dumps(PARAMS))
    params["deploy"].update(
        test_data=str(root / "test.parquet"), gate_report=str(root / "gate.json"), watch_seconds=0.2
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bundles = {
        "v1": make_bundle(root / "v1", signing_keys, "1.0.0"),
        "v2": make_bundle(root / "v2", signing_keys, "2.0.0", C=0.5),
        "renamed": make_bundle(root / "renamed", signing_keys, "5.0.0", name="penguin-species"),
        "fewer": make_bundle(root / "fewer", signing_keys, "6.0.0", drop=("vibration_mm_s",)),
    }
    yield {"root": root, "agent": agent, "bundles": bundles}
    agent.stop()


def deploy_cli(world, bundle: str, *extra: str) -> subprocess.CompletedProcess:
    root = world["root"]
    return subprocess.run(
        [
            EDGEOPS,
            "deploy",
            "--all",
            "--bundle",
            str(world["bundles"][bundle]),
            "--params",
            str(root / "params.yaml"),
            "--targets",
            str(root / "targets.yaml"),
            "--registry",
            str(root / "registry.json"),
            "--audit-log",
            str(root / "audit.jsonl"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def active(world) -> str | None:
    with httpx.Client(base_url=world["agent"].url, trust_env=False) as c:
        st = c.get("/v1/status", headers={"Authorization": f"Bearer {DEPLOY_TOKEN}"}).json()
    return (st["active"] or {}).get("version")


def audit(world) -> list[dict]:
    lines = (world["root"] / "audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_another_model_is_refused_unless_replaced_on_purpose(world) -> None:
    assert deploy_cli(world, "v1", "--force").returncode == 0
    # a new version of the same model goes through as always
    r = deploy_cli(world, "v2", "--force")  # (the gate is not what this test is about)
    assert r.returncode == 0, r.stderr
    assert active(world) == "2.0.0"

    # another name, then another input schema: refused by `edgeops deploy`, nothing changes
    for bundle, words in (
        ("renamed", "model name 'penguin-species'"),
        ("fewer", "inputs without ['vibration_mm_s']"),
    ):
        r = deploy_cli(world, bundle)
        assert r.returncode == 3, r.stderr
        assert words in r.stderr and "--replace-model" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert active(world) == "2.0.0"

    # ... and by the agent itself (an upload that bypasses the CLI)
    with httpx.Client(base_url=world["agent"].url, trust_env=False, timeout=60) as c:
        up = c.post(
            "/v1/bundles",
            content=tar_bundle(world["bundles"]["fewer"]),
            headers={"Authorization": f"Bearer {DEPLOY_TOKEN}", "Content-Type": "application/gzip"},
        )
        assert up.status_code == 409, up.text
        assert up.json()["error"]["code"] == "model_mismatch"
        assert "X-Edgeops-Replace-Model" in up.json()["error"]["message"]
    assert active(world) == "2.0.0"
    assert not any(e["event"] == "replace_model" for e in audit(world))

    # --replace-model: deployed, and the audit log says so
    r = deploy_cli(world, "renamed", "--replace-model")
    assert r.returncode == 0, r.stderr
    assert active(world) == "5.0.0"
    replaced = [e for e in audit(world) if e["event"] == "replace_model"]
    assert len(replaced) == 1
    assert replaced[0]["model"] == "penguin-species" and replaced[0]["version"] == "5.0.0"
    assert (
        "model name 'penguin-species' instead of 'plant-failure'"
        in replaced[0]["targets"]["line-a"][0]
    )
    gate = json.loads((world["root"] / "gate.json").read_text())
    assert gate["champion"]["version"] is None  # another model is no champion


def test_clients_may_send_the_whole_row(world, signing_keys: Path, tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path / "state", signing_keys / "signing.pub").start()
    try:
        with httpx.Client(base_url=agent.url, trust_env=False, timeout=60) as c:
            up = c.post(
                "/v1/bundles",
                content=tar_bundle(world["bundles"]["fewer"]),
                headers={
                    "Authorization": f"Bearer {DEPLOY_TOKEN}",
                    "Content-Type": "application/gzip",
                },
            )
            assert up.status_code == 201, up.text
            # the journal (systemd keeps the agent's stderr) records every switch
            assert (
                "switched to plant-failure 6.0.0 (previous None) by unknown: manual"
                in agent.log_path.read_text()
            )
            manifest = json.loads((world["bundles"]["fewer"] / "manifest.json").read_text())
            assert set(manifest["passthrough"]) == {"timestamp", "failure", "vibration_mm_s"}
            _, test_df = plant_split()
            row = json.loads(test_df.head(1).to_json(orient="records", date_format="iso"))[0]
            assert {"timestamp", "failure", "vibration_mm_s"} <= set(row)  # the machine's whole row
            auth = {"Authorization": f"Bearer {PREDICT_TOKEN}"}
            ok = c.post("/v1/predict", json={"rows": [row]}, headers=auth)
            assert ok.status_code == 200, ok.text

            unknown = c.post(
                "/v1/predict", json={"rows": [{**row, "operator": "kim"}]}, headers=auth
            )
            assert unknown.status_code == 422, unknown.text
            fields = unknown.json()["error"]["fields"]
            assert [f["field"] for f in fields] == ["operator"]

            # the passthrough columns reach the inference log (monitoring reads them there)
            deadline, items = time.monotonic() + 10, []
            while not items and time.monotonic() < deadline:  # the log is written in batches
                items = c.get(
                    "/v1/logs", headers={"Authorization": f"Bearer {DEPLOY_TOKEN}"}
                ).json()["items"]
                time.sleep(0.1)
            logged = items[-1]["features"]
            assert logged["timestamp"] == row["timestamp"] and logged["failure"] == row["failure"]
    finally:
        agent.stop()
