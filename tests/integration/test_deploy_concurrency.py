"""Two `edgeops deploy --all` at once: the second waits for the first, the registry keeps both."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.agent_process import DEPLOY_TOKEN, EDGEOPS, AgentProcess
from tests.bundles import PARAMS, make_bundle, plant_split

pytestmark = pytest.mark.integration


def test_concurrent_deploys_are_serialized_and_keep_every_version(
    tmp_path: Path, signing_keys: Path
) -> None:
    (tmp_path / "deploy.token").write_text(DEPLOY_TOKEN + "\n")
    agent = AgentProcess(tmp_path / "state", signing_keys / "signing.pub").start()
    try:
        (tmp_path / "targets.yaml").write_text(
            f"public_key: {signing_keys / 'signing.pub'}\ntargets:\n"
            f"  - {{name: line-a, url: '{agent.url}', token_file: '{tmp_path / 'deploy.token'}'}}\n"
        )
        _, test_df = plant_split()
        test_df.to_parquet(tmp_path / "test.parquet")
        params = json.loads(json.dumps(PARAMS))
        params["deploy"].update(
            test_data=str(tmp_path / "test.parquet"),
            watch_seconds=2,
            gate_report=str(tmp_path / "gate.json"),
        )
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        bundles = [
            make_bundle(tmp_path / v, signing_keys, v, C=c)
            for v, c in (("1.0.0", 1.0), ("2.0.0", 0.5))
        ]
        common = [
            "--all",
            "--force",
            "--params",
            str(tmp_path / "params.yaml"),
            "--targets",
            str(tmp_path / "targets.yaml"),
            "--registry",
            str(tmp_path / "registry.json"),
            "--audit-log",
            str(tmp_path / "audit.jsonl"),
        ]
        procs = [
            subprocess.Popen(
                [EDGEOPS, "deploy", "--bundle", str(b), *common], stderr=subprocess.PIPE, text=True
            )
            for b in bundles
        ]
        errs = [p.communicate(timeout=180)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        assert any("waiting for another deploy to finish" in e for e in errs), errs
        registry = json.loads((tmp_path / "registry.json").read_text())
        versions = registry["models"]["plant-failure"]["versions"]
        assert sorted(versions) == ["1.0.0", "2.0.0"]
        assert sum(v["stage"] == "production" for v in versions.values()) == 1
        deployed = [d["version"] for d in registry["models"]["plant-failure"]["deployments"]]
        assert sorted(deployed) == ["1.0.0", "2.0.0"]
    finally:
        agent.stop()
