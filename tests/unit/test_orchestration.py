"""The orchestration pieces that need no server: settings, stage errors, summary, lineage, pid files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgeops.errors import EdgeopsError
from edgeops.orchestration import lineage, processes, summary
from edgeops.orchestration.settings import HEARTBEAT_SECONDS, Orchestration, workspace_limit
from edgeops.orchestration.workspace import INTERESTING, captured_output, stage_error
from tests.unit.conftest import REPO


def test_settings_from_the_repository_params() -> None:
    s = Orchestration.load(REPO / "params.yaml")
    assert (s.port, s.work_pool, s.home) == (4200, "edgeops-local", REPO / ".prefect")
    assert s.server_env()["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("sqlite+aiosqlite:")
    assert s.server_env()["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert s.client_env()["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_a_bad_orchestration_value_names_the_section(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["orchestration"]["port"] = "forty-two"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(EdgeopsError, match="orchestration has a value of the wrong type"):
        Orchestration.load(tmp_path / "params.yaml")


def test_runs_send_heartbeats_and_a_too_short_crash_window_is_refused(tmp_path: Path) -> None:
    s = Orchestration.load(REPO / "params.yaml")
    assert s.crashed_after_seconds == 120 and s.monitoring_max_lateness_minutes == 30
    assert s.client_env()["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_SECONDS)
    unit = (REPO / "src/edgeops/examples/edgeops-prefect-worker.service").read_text()
    assert f"Environment=PREFECT_FLOWS_HEARTBEAT_FREQUENCY={HEARTBEAT_SECONDS}\n" in unit
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["orchestration"]["crashed_after_seconds"] = 45  # one missed heartbeat would crash it
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(EdgeopsError, match="a healthy run would be marked Crashed") as err:
        Orchestration.load(tmp_path / "params.yaml")
    assert "set it to 90 or more" in str(err.value)


def test_auth_string_reaches_the_server_as_its_own_setting(monkeypatch) -> None:
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:pw")
    monkeypatch.setenv("PREFECT_API_KEY", "would-win-over-the-auth-string")
    env = Orchestration.load(REPO / "params.yaml").server_env()
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == "admin:pw" and "PREFECT_API_KEY" not in env


def test_each_workspace_has_its_own_concurrency_limit(tmp_path: Path) -> None:
    assert workspace_limit(tmp_path / "a") != workspace_limit(tmp_path / "b")
    assert workspace_limit(tmp_path / "a") == workspace_limit(tmp_path / "x" / ".." / "a")


def test_stage_error_is_the_stages_own_message_in_one_line() -> None:
    lines = [
        "Running stage 'validate':",
        "> python -m edgeops.stages.validate --data data/raw/dataset.parquet",
        "edgeops validate: error: data/raw/dataset.parquet failed validation:",
        "  - torque_nm: 12 rows outside [0.0, 100.0]",
        "  fix: fix the data at its source",
        "ERROR: failed to reproduce 'validate': failed to run: python -m ..., exited with 2",
    ]
    assert stage_error("validate", lines) == (
        "data/raw/dataset.parquet failed validation: - torque_nm: 12 rows outside [0.0, 100.0] "
        "fix: fix the data at its source"
    )
    assert stage_error("train", lines) is None


def test_captured_output_reads_child_processes_and_forwards_only_stage_lines() -> None:
    forwarded: list[str] = []
    with captured_output(forwarded.append) as lines:
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; print('edgeops train: fitting'); print('noise', file=sys.stderr)",
            ],
            check=True,
        )
    assert "edgeops train: fitting" in lines and "noise" in lines
    assert forwarded == ["edgeops train: fitting"]
    assert not INTERESTING.match("06:01:22.123 | INFO | Task run 'train' - edgeops train: x")


def test_summary_names_the_decision_and_the_metrics_against_the_champion() -> None:
    facts = {
        "reason": "scheduled",
        "version": "20261122.1-abc",
        "model": "plant-failure",
        "ingest": {"rows": 6000, "source": "simulator", "sha256": "ab" * 32},
        "validation": {"success": True, "expectations": [{}] * 30, "failures": []},
        "stages": [{"stage": "ingest", "ran": False, "seconds": 0.1}],
        "metrics": {"roc_auc": 0.95, "f1": 0.5},
        "gate": {
            "promote": False,
            "reason": "roc_auc 0.95 < champion 0.97 - tolerance 0.005",
            "champion": {"version": "old", "metrics": {"roc_auc": 0.97, "f1": 0.52}},
        },
        "deploy": {"note": "the gate refused the model"},
        "push": 3,
        "lineage": {"committed": False, "reason": "orchestration.lineage.commit is false"},
    }
    md = summary.markdown(facts)
    assert "**Why:** scheduled" in md and "6,000 rows from `simulator`" in md
    assert "decision: **refuse**: roc_auc 0.95 < champion 0.97" in md
    assert "| roc_auc | 0.9500 | 0.9700 | -0.0200 |" in md
    assert "- none updated: the gate refused the model" in md and "3 file(s) sent" in md
    rows = summary.metrics_table(facts["metrics"], facts["gate"])
    assert rows[0] == {"metric": "roc_auc", "challenger": 0.95, "champion": 0.97, "delta": -0.02}


def test_the_resources_table_names_each_stage_and_whether_it_ran() -> None:
    record = {
        "stages": {
            "ingest": {
                "wall_s": 1.5,
                "cpu_s": 1.2,
                "peak_rss_mb": 170.0,
                "threads": 2,
                "finished": "t1",
            },
            "train": {
                "wall_s": 9.0,
                "cpu_s": 16.0,
                "peak_rss_mb": 400.0,
                "threads": 2,
                "finished": "t2",
            },
        }
    }
    stages = [
        {"stage": "ingest", "ran": False},
        {"stage": "train", "ran": True},
        {"stage": "bundle", "ran": True},
    ]
    rows = summary.resources_table(record, stages)
    assert [r["stage"] for r in rows] == ["ingest", "train"]  # bundle has no record yet
    assert rows[0]["ran"] == "no (up to date)" and rows[1]["ran"] == "yes"
    assert rows[1] == {
        "stage": "train",
        "ran": "yes",
        "wall_s": 9.0,
        "cpu_s": 16.0,
        "peak_rss_mb": 400.0,
        "threads": 2,
        "finished": "t2",
    }
    assert summary.resources_table(None, stages) == []


def _git_repo(path: Path) -> Path:
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "t@e.invalid"],
        ["git", "config", "user.name", "t"],
    ):
        subprocess.run(cmd, cwd=path, check=True)
    (path / "params.yaml").write_text("a: 1\n")
    (path / "notes.txt").write_text("mine\n")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True)
    return path


def test_lineage_commits_only_its_files_and_tags_the_version_once(tmp_path: Path) -> None:
    repo = _git_repo(tmp_path)
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    (repo / "notes.txt").write_text("an unrelated edit stays uncommitted\n")
    first = lineage.record(repo, "plant-failure", "v1", "scheduled", {"commit": True})
    assert first.committed and first.tag == "plant-failure/v1"
    shown = subprocess.run(
        ["git", "show", "--stat", "--format=%s", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout
    assert "dvc.lock" in shown and "notes.txt" not in shown and "(scheduled)" in shown
    again = lineage.record(repo, "plant-failure", "v1", "manual", {"commit": True})
    assert not again.committed and "tagged already" in again.reason
    off = lineage.record(repo, "plant-failure", "v2", "manual", {"commit": False})
    assert not off.committed and "commit is false" in off.reason
    with pytest.raises(EdgeopsError, match="lineage.branch is 'release'"):
        lineage.record(repo, "plant-failure", "v2", "manual", {"commit": True, "branch": "release"})


def test_a_pid_file_of_a_reused_pid_is_not_trusted(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # alive, but not a prefect process
    assert processes.running_pid(pidfile, "prefect server") is None
    assert processes.stop(pidfile, "prefect server") is None and not pidfile.exists()
