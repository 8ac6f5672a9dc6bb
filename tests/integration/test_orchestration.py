"""The training flow through a real Prefect server and a real process worker, deploying to a real
agent on loopback: schedule, runs, artifacts, serialization, lineage, failures, missed runs, UI.

One module-scoped stack; the tests run in file order, as a company's weeks would.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from edgeops.deploy.rollout import bundle_sha256
from tests.agent_process import DEPLOY_TOKEN, AgentProcess
from tests.conftest import REPO
from tests.prefect_stack import DVC, EDGEOPS, Stack, kill_tree, process_tree, set_params, sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory, signing_keys: Path):
    root = tmp_path_factory.mktemp("orchestration")
    agent = AgentProcess(root / "agent-state", signing_keys / "signing.pub").start()
    (root / "deploy.token").write_text(DEPLOY_TOKEN + "\n")
    st = Stack(
        root, **{"orchestration.lineage.commit": True, "orchestration.crashed_after_seconds": 90}
    )
    (st.repo / "deploy/targets.yaml").write_text(
        "targets:\n"
        f"  - {{name: line-1, url: '{agent.url}', canary: true, token_file: '{root / 'deploy.token'}'}}\n"
    )
    # a deployment repository commits its registry and audit log (the product repo ignores them)
    gitignore = (st.repo / ".gitignore").read_text()
    (st.repo / ".gitignore").write_text(
        gitignore.replace("/deploy/registry.json\n", "")
        .replace("/deploy/audit.jsonl\n", "")
        .replace("/deploy/audit.seal\n", "")
    )
    sh(["git", "commit", "-qam", "targets: the test agent"], st.repo)
    st.agent = agent
    try:
        st.up()
        yield st
    finally:
        st.down()
        agent.stop()


def manifest(repo: Path) -> dict:
    return json.loads((repo / "models/bundle/manifest.json").read_text())


def test_up_applies_the_deployment_with_its_cron_schedule(stack: Stack) -> None:
    dep = stack.deployment()
    (schedule,) = dep["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * 0"
    assert schedule["schedule"]["timezone"] == "Europe/Zurich"
    assert schedule["active"] is True and schedule["parameters"] == {"reason": "scheduled"}
    assert dep["work_pool_name"] == f"edgeops-test-{stack.port}"
    assert dep["parameters"] == {"reason": "manual", "deploy": True}
    # the server's scheduler has put the next runs on the calendar: Sundays 02:00 in Zurich
    body = {
        "deployments": {"id": {"any_": [dep["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }
    deadline = time.monotonic() + 60
    while not (upcoming := stack.api("POST", "/flow_runs/filter", body)[1]):
        assert time.monotonic() < deadline, "the scheduler created no run (sqlalchemy pin?)"
        time.sleep(1)
    zurich = ZoneInfo("Europe/Zurich")
    for run in upcoming:
        due = datetime.fromisoformat(run["expected_start_time"]).astimezone(zurich)
        assert (due.weekday(), due.hour, due.minute) == (6, 2, 0), due
        assert run["auto_scheduled"] and run["parameters"]["reason"] == "scheduled"


def test_a_triggered_run_completes_deploys_and_leaves_its_artifacts(stack: Stack) -> None:
    out = stack.edgeops("run", "training", "--reason", "first model")
    version = manifest(stack.repo)["model"]["version"]
    # the CLI followed the run: stage logs, then the final state
    for stage in ("ingest", "validate", "split", "train", "evaluate", "export", "bundle"):
        assert f"{stage}: ran in" in out.stdout
    assert "Completed" in out.stderr
    # deployed to the real agent
    status = stack.agent and json.loads(
        sh(
            [
                "curl",
                "-sf",
                "-H",
                f"Authorization: Bearer {DEPLOY_TOKEN}",
                f"{stack.agent.url}/v1/status",
            ],
            stack.repo,
        ).stdout
    )
    assert status["active"]["version"] == version
    # the artifacts, read back through the API
    run = [r for r in stack.flow_runs() if r["parameters"].get("reason") == "first model"][0]
    code, artifacts = stack.api(
        "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    assert code == 200
    by_key = {a["key"]: a for a in artifacts}
    summary = by_key["training-summary"]["data"]
    assert f"# Training run: {version}" in summary and "**Why:** first model" in summary
    assert "validation (Great Expectations): passed" in summary
    assert "decision: **promote**" in summary and "- line-1: updated" in summary
    assert f"tag `plant-failure/{version}`" in summary
    table = by_key["training-metrics"]["data"]
    table = json.loads(table) if isinstance(table, str) else table
    assert {row["metric"] for row in table} >= {"roc_auc", "pr_auc", "f1"}
    used = by_key["training-resources"]["data"]
    used = json.loads(used) if isinstance(used, str) else used
    assert [row["stage"] for row in used] == [
        "ingest",
        "validate",
        "split",
        "train",
        "evaluate",
        "export",
        "bundle",
    ]
    assert all(row["ran"] == "yes" and row["wall_s"] > 0 and row["threads"] >= 1 for row in used)
    # one task per DVC stage, named like the stage
    tasks = {t["name"].rsplit("-", 1)[0]: t for t in stack.finished_task_runs(run["id"])}
    assert set(tasks) >= {
        "unfinished",
        "ingest",
        "validate",
        "split",
        "train",
        "evaluate",
        "export",
        "bundle",
        "gate",
        "push",
        "record",
        "rollout",
        "summarize",
    }
    # data pushed and lineage recorded before any device changed
    at = {
        k: (datetime.fromisoformat(t["start_time"]), datetime.fromisoformat(t["end_time"]))
        for k, t in tasks.items()
    }
    assert at["push"][1] <= at["rollout"][0] and at["record"][1] <= at["rollout"][0], at


def test_the_prefect_home_is_the_owners_only_without_systemd(stack: Stack) -> None:
    """`edgeops up` from a shell with umask 022: the Prefect home, its database (runs, logs,
    approvers' names) and the server's and workers' logs are the owner's only."""
    import stat

    mode = {
        p: stat.S_IMODE(p.stat().st_mode)
        for p in (
            stack.home,
            stack.home / "prefect.db",
            stack.home / "logs",
            stack.home / "logs/server.log",
            stack.home / "logs/worker-1.log",
            stack.home / "run",
        )
    }
    assert all(m == (0o700 if p.is_dir() else 0o600) for p, m in mode.items()), mode


def test_two_runs_triggered_together_both_complete_one_after_the_other(stack: Stack) -> None:
    procs = [
        subprocess.Popen(
            [EDGEOPS, "run", "training", "--no-deploy", "--reason", f"together-{i}"],
            cwd=stack.repo,
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (1, 2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    spans = []
    for i in (1, 2):
        run = [r for r in stack.flow_runs() if r["parameters"].get("reason") == f"together-{i}"][0]
        assert run["state"]["type"] == "COMPLETED"
        tasks = stack.finished_task_runs(run["id"])
        spans.append((min(t["start_time"] for t in tasks), max(t["end_time"] for t in tasks)))
    first, second = sorted(spans)
    assert first[1] <= second[0], f"the runs' DVC work overlapped: {spans}"
    assert any("acquired after" in o for o in outputs)


def test_a_past_run_reproduces_from_its_tag_on_a_fresh_clone(stack: Stack, tmp_path: Path) -> None:
    v1 = manifest(stack.repo)["model"]["version"]
    set_params(stack.repo, **{"train.hist_gradient_boosting.max_iter": 60})
    sh(["git", "commit", "-qam", "fewer trees"], stack.repo)
    stack.edgeops("run", "training", "--no-deploy", "--reason", "fewer trees")
    v2 = manifest(stack.repo)["model"]["version"]
    assert v2 != v1
    tags = sh(["git", "tag", "-l"], stack.repo).stdout.split()
    assert {f"plant-failure/{v1}", f"plant-failure/{v2}"} <= set(tags)

    registry = json.loads((stack.repo / "deploy/registry.json").read_text())
    v1_hash = registry["models"]["plant-failure"]["versions"][v1]["bundle_sha256"]
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(stack.repo), str(clone)], tmp_path)
    sh(["git", "checkout", "-q", f"plant-failure/{v1}"], clone)
    sh([DVC, "pull"], clone)
    repro = sh([DVC, "repro"], clone).stdout
    assert "Data and pipelines are up to date" in repro and "Running stage" not in repro
    assert bundle_sha256(clone / "models/bundle") == v1_hash
    diff = sh(
        [DVC, "metrics", "diff", f"plant-failure/{v1}", f"plant-failure/{v2}", "--json"], stack.repo
    ).stdout
    assert "roc_auc" in json.loads(diff)["reports/metrics.json"]


def test_a_failed_push_deploys_nothing(stack: Stack) -> None:
    """A new model, promoted by the gate, and a DVC remote that cannot take it: the run fails at
    the push, before any device changed; the registry's production version stays."""
    status = [
        "curl",
        "-sf",
        "-H",
        f"Authorization: Bearer {DEPLOY_TOKEN}",
        f"{stack.agent.url}/v1/status",
    ]
    before = json.loads(sh(status, stack.repo).stdout)["active"]["version"]
    registry = json.loads((stack.repo / "deploy/registry.json").read_text())["models"][
        "plant-failure"
    ]
    production = next(v for v, e in registry["versions"].items() if e["stage"] == "production")
    set_params(
        stack.repo, **{"train.hist_gradient_boosting.max_iter": 77, "deploy.gate.tolerance": 1.0}
    )
    # a remote below a regular file: every write to it fails (root ignores file modes)
    sh(
        [DVC, "remote", "modify", "localstore", "url", str(stack.repo / "README.md" / "store")],
        stack.repo,
    )
    try:
        out = stack.edgeops("run", "training", "--reason", "push fails", check=False)
    finally:
        sh(["git", "checkout", "params.yaml", ".dvc/config"], stack.repo)
    assert out.returncode == 1, out.stderr[-2000:]
    run = [r for r in stack.flow_runs() if r["parameters"].get("reason") == "push fails"][0]
    assert run["state"]["type"] == "FAILED", run["state"]
    tasks = {t["name"].rsplit("-", 1)[0]: t for t in stack.finished_task_runs(run["id"])}
    assert tasks["gate"]["state"]["type"] == "COMPLETED"  # the new model was promoted ...
    assert tasks["push"]["state"]["type"] == "FAILED"  # ... its data could not be kept ...
    assert "rollout" not in tasks and "canary" not in tasks  # ... so no device got it
    assert json.loads(sh(status, stack.repo).stdout)["active"]["version"] == before
    registry = json.loads((stack.repo / "deploy/registry.json").read_text())["models"][
        "plant-failure"
    ]
    assert (
        next(v for v, e in registry["versions"].items() if e["stage"] == "production") == production
    )


def test_a_run_on_data_that_fails_validation_fails_and_deploys_nothing(stack: Stack) -> None:
    before = json.loads(
        sh(
            [
                "curl",
                "-sf",
                "-H",
                f"Authorization: Bearer {DEPLOY_TOKEN}",
                f"{stack.agent.url}/v1/status",
            ],
            stack.repo,
        ).stdout
    )
    downstream = (
        "data/prepared/train.parquet",
        "models/model.joblib",
        "models/bundle/manifest.json",
        "reports/metrics.json",
        "deploy/registry.json",
    )
    written = {p: (stack.repo / p).read_bytes() for p in downstream}
    set_params(stack.repo, **{"validate.schema.min_rows": 10_000_000})
    try:
        out = stack.edgeops("run", "training", "--reason", "bad data", check=False)
    finally:
        sh(["git", "checkout", "params.yaml"], stack.repo)
    assert out.returncode == 1
    run = [r for r in stack.flow_runs() if r["parameters"].get("reason") == "bad data"][0]
    assert run["state"]["type"] == "FAILED"
    assert "validate failed" in run["state"]["message"]
    assert "failed validation" in run["state"]["message"]
    assert "validate failed" in out.stderr
    names = {t["name"].rsplit("-", 1)[0] for t in stack.finished_task_runs(run["id"])}
    assert "split" not in names and "gate" not in names and "rollout" not in names
    after = json.loads(
        sh(
            [
                "curl",
                "-sf",
                "-H",
                f"Authorization: Bearer {DEPLOY_TOKEN}",
                f"{stack.agent.url}/v1/status",
            ],
            stack.repo,
        ).stdout
    )
    assert after["active"] == before["active"]
    assert {p: (stack.repo / p).read_bytes() for p in downstream} == written  # nothing rewritten


def test_a_scheduled_run_missed_for_days_is_cancelled_not_caught_up(stack: Stack) -> None:
    dep = stack.deployment()
    due = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    code, run = stack.api(
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        {
            "parameters": {"reason": "scheduled"},
            "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due}},
        },
    )
    assert code in (200, 201), run
    final = stack.wait_final(run["id"])
    assert final["state"]["type"] == "CANCELLED"
    assert "skipped: started 72." in final["state"]["message"]
    assert "max_lateness_hours=6" in final["state"]["message"]
    assert stack.finished_task_runs(run["id"]) == []


def test_a_parameter_of_the_wrong_type_is_refused_with_the_reason(stack: Stack) -> None:
    dep = stack.deployment()
    code, body = stack.api(
        "POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": {"deploy": "maybe"}}
    )
    assert 400 <= code < 500, body
    assert "deploy" in json.dumps(body)


def test_runs_lists_the_recent_runs(stack: Stack) -> None:
    out = stack.edgeops("runs", "--limit", "20").stdout
    assert "first model" in out and "Completed" in out and "Failed" in out and "Cancelled" in out


def test_the_prefect_ui_shows_the_deployment_schedule_and_a_completed_run(stack: Stack) -> None:
    from tests.browser import chromium_path, render

    assert chromium_path(), "Debian's chromium is needed (.ci/run installs it)"
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    dep = stack.deployment()
    done = [r for r in stack.flow_runs() if r["state"]["type"] == "COMPLETED"][-1]
    ui = stack.api_url.removesuffix("/api")
    # the deployment page: its name, work pool and the schedule in words
    render(
        f"{ui}/deployments/deployment/{dep['id']}",
        artifacts / "prefect-ui-deployment.png",
        expect=["training", dep["work_pool_name"], "At 02:00 AM, only on Sunday"],
    )
    # the runs list, and the completed run's own page with its final log line
    render(f"{ui}/runs", artifacts / "prefect-ui-runs.png", expect=[done["name"], "Completed"])
    # the run itself, with its log
    render(
        f"{ui}/runs/flow-run/{done['id']}",
        artifacts / "prefect-ui-run.png",
        expect=[done["name"], "Finished in state Completed()"],
    )


# ---- faults: a worker killed, the server restarted, runs missed while it was down -----------
def versions(stack: Stack) -> set[str]:
    """The versions in the model registry (a version is registered when it is deployed)."""
    path = stack.repo / "deploy/registry.json"
    registry = json.loads(path.read_text()) if path.exists() else {}
    return set(registry.get("models", {}).get("plant-failure", {}).get("versions", {}))


def start_run(stack: Stack, reason: str, **params: Any) -> str:
    code, run = stack.api(
        "POST",
        f"/deployments/{stack.deployment()['id']}/create_flow_run",
        {"parameters": {"reason": reason, **params}},
    )
    assert code in (200, 201), run
    return run["id"]


def wait_for_task(stack: Stack, run_id: str, stage: str, timeout: float = 300) -> None:
    """Until the run's task ``stage`` is Running (the DVC stage is at work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in stack.task_runs(run_id):
            # a task run recorded from its events can be read before its state is (state null)
            state = (t.get("state") or {}).get("type")
            if t["name"].rsplit("-", 1)[0] == stage and state == "RUNNING":
                return
        time.sleep(0.5)
    raise AssertionError(
        f"task {stage} of {run_id} never ran: {stack.api('GET', f'/flow_runs/{run_id}')}"
    )


def wait_for_stage_process(pid: int, stage: str, timeout: float = 300) -> None:
    """Until a descendant of ``pid`` runs ``edgeops stage STAGE``: the stage itself is at work,
    not only its task (under load a task is Running for seconds before DVC starts the command)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in process_tree(pid):
            with contextlib.suppress(OSError):
                if f"\0stage\0{stage}\0".encode() in Path(f"/proc/{p}/cmdline").read_bytes():
                    return
        time.sleep(0.05)
    raise AssertionError(f"no process of {pid} ran edgeops stage {stage} within {timeout} s")


def test_a_worker_killed_mid_run_leaves_it_crashed_and_a_rerun_adds_one_version(
    stack: Stack,
) -> None:
    before = versions(stack)
    # train runs again (long enough to be caught at work), and its model is deployed whatever
    # its quality against the champion
    set_params(
        stack.repo, **{"train.hist_gradient_boosting.max_iter": 400, "deploy.gate.tolerance": 1.0}
    )
    sh(["git", "commit", "-qam", "fault test: retrain"], stack.repo)
    killed = start_run(stack, "fault: worker killed")
    worker = int((stack.home / "run/worker-1.pid").read_text().split()[0])
    try:
        wait_for_task(stack, killed, "train")
        wait_for_stage_process(worker, "train")
        tree = kill_tree(worker)
    finally:
        t0 = time.monotonic()
        stack.up()  # a new worker (systemd's Restart=on-failure does this for the unit)
    assert len(tree) >= 3, tree  # the worker, the flow run, the stage's python
    # nobody can report the dead run's end: its missing heartbeat does (the automation)
    final = stack.wait_final(killed, timeout=stack_crashed_after(stack) + 120)
    assert final["state"]["type"] == "CRASHED", final["state"]
    assert "no heartbeat for 90 s" in final["state"]["message"]
    crashed_in = time.monotonic() - t0
    assert versions(stack) == before  # the killed run registered nothing

    rerun = start_run(stack, "fault: rerun")
    done = stack.wait_final(rerun, timeout=600)  # waits for the dead run's slot lease first
    assert done["state"]["type"] == "COMPLETED", done["state"]
    (new,) = versions(stack) - before  # exactly one new version, deployed
    assert manifest(stack.repo)["model"]["version"] == new
    took = datetime.fromisoformat(done["end_time"]) - datetime.fromisoformat(done["start_time"])
    print(
        f"worker killed: Crashed {crashed_in:.0f} s after the kill; the rerun took "
        f"{took.total_seconds():.0f} s (its slot wait included) and deployed {new}"
    )


def stack_crashed_after(stack: Stack) -> float:
    return float(
        yaml.safe_load((stack.repo / "params.yaml").read_text())["orchestration"][
            "crashed_after_seconds"
        ]
    )


def test_the_server_restarted_mid_run_the_run_ends_and_schedules_resume(stack: Stack) -> None:
    from edgeops.orchestration import processes

    set_params(stack.repo, **{"train.hist_gradient_boosting.max_iter": 500})
    sh(["git", "commit", "-qam", "fault test: server restart"], stack.repo)
    run = start_run(stack, "fault: server restart", deploy=False)
    wait_for_task(stack, run, "train")
    wait_for_stage_process(int((stack.home / "run/worker-1.pid").read_text().split()[0]), "train")
    stopped = processes.stop(stack.home / "run/server.pid", "server")
    assert stopped is not None
    time.sleep(3)
    stack.up()  # the server again (the worker kept running)
    final = stack.wait_final(run, timeout=stack_crashed_after(stack) + 300)
    assert final["state"]["type"] in ("COMPLETED", "CRASHED"), final["state"]
    print(f"server restarted mid-run: the run ended {final['state']['type']}")
    running = [r["name"] for r in stack.flow_runs() if r["state"]["type"] == "RUNNING"]
    assert running == []
    # runs missed while the server was down are not caught up: the hourly monitoring run
    # skips (Cancelled, no task) when it starts more than 30 min late
    dep = stack.api("GET", "/deployments/name/monitoring/plant")[1]
    missed = []
    for hours in (3, 2):
        due = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
        code, late = stack.api(
            "POST",
            f"/deployments/{dep['id']}/create_flow_run",
            {
                "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due}},
            },
        )
        assert code in (200, 201), late
        missed.append(late["id"])
    for run_id in missed:
        ended = stack.wait_final(run_id, timeout=180)
        assert ended["state"]["type"] == "CANCELLED", ended["state"]
        assert "monitoring_max_lateness_minutes=30" in ended["state"]["message"]
        assert stack.task_runs(run_id) == []
    # and the schedule goes on: the next Sunday's training run is planned, none is overdue
    body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    planned = stack.api("POST", "/flow_runs/filter", body)[1]
    now = datetime.now(UTC)
    assert any(r["deployment_id"] == stack.deployment()["id"] for r in planned)
    overdue = [
        r
        for r in planned
        if datetime.fromisoformat(r["expected_start_time"]) < now - timedelta(minutes=2)
    ]
    assert overdue == []
