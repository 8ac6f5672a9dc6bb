"""The training flow through a real Prefect server and a real process worker, deploying to a real
agent on loopback: schedule, runs, artifacts, serialization, lineage, failures, missed runs, UI.

One module-scoped stack; the tests run in file order, as a company's weeks would.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edgeops.deploy.rollout import bundle_sha256
from tests.agent_process import DEPLOY_TOKEN, AgentProcess
from tests.conftest import REPO
from tests.prefect_stack import DVC, EDGEOPS, Stack, set_params, sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory, signing_keys: Path):
    root = tmp_path_factory.mktemp("orchestration")
    agent = AgentProcess(root / "agent-state", signing_keys / "signing.pub").start()
    (root / "deploy.token").write_text(DEPLOY_TOKEN + "\n")
    st = Stack(root, **{"orchestration.lineage.commit": True})
    (st.repo / "deploy/targets.yaml").write_text(
        "targets:\n"
        f"  - {{name: line-1, url: '{agent.url}', canary: true, token_file: '{root / 'deploy.token'}'}}\n"
    )
    # a deployment repository commits its registry and audit log (the product repo ignores them)
    gitignore = (st.repo / ".gitignore").read_text()
    (st.repo / ".gitignore").write_text(gitignore.replace("/deploy/registry.json\n", "").replace(
        "/deploy/audit.jsonl\n", ""))  # fmt: skip
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
    body = {"deployments": {"id": {"any_": [dep["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}  # fmt: skip
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
        ).stdout  # fmt: skip
    )
    assert status["active"]["version"] == version
    # the artifacts, read back through the API
    run = [r for r in stack.flow_runs() if r["parameters"].get("reason") == "first model"][0]
    code, artifacts = stack.api("POST", "/artifacts/filter",
                                {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})  # fmt: skip
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
    # one task per DVC stage, named like the stage
    names = {t["name"].rsplit("-", 1)[0] for t in stack.task_runs(run["id"])}
    assert names >= {"ingest", "validate", "split", "train", "evaluate", "export", "bundle",
                     "gate", "rollout", "push", "record"}  # fmt: skip


def test_two_runs_triggered_together_both_complete_one_after_the_other(stack: Stack) -> None:
    procs = [
        subprocess.Popen(
            [EDGEOPS, "run", "training", "--no-deploy", "--reason", f"together-{i}"],
            cwd=stack.repo,
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in (1, 2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    spans = []
    for i in (1, 2):
        run = [r for r in stack.flow_runs() if r["parameters"].get("reason") == f"together-{i}"][0]
        assert run["state"]["type"] == "COMPLETED"
        tasks = stack.task_runs(run["id"])
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
    diff = sh([DVC, "metrics", "diff", f"plant-failure/{v1}", f"plant-failure/{v2}", "--json"],
              stack.repo).stdout  # fmt: skip
    assert "roc_auc" in json.loads(diff)["reports/metrics.json"]


def test_a_run_on_data_that_fails_validation_fails_and_deploys_nothing(stack: Stack) -> None:
    before = json.loads(sh(["curl", "-sf", "-H", f"Authorization: Bearer {DEPLOY_TOKEN}",
                            f"{stack.agent.url}/v1/status"], stack.repo).stdout)  # fmt: skip
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
    names = {t["name"].rsplit("-", 1)[0] for t in stack.task_runs(run["id"])}
    assert "split" not in names and "gate" not in names and "rollout" not in names
    after = json.loads(sh(["curl", "-sf", "-H", f"Authorization: Bearer {DEPLOY_TOKEN}",
                           f"{stack.agent.url}/v1/status"], stack.repo).stdout)  # fmt: skip
    assert after["active"] == before["active"]


def test_a_scheduled_run_missed_for_days_is_cancelled_not_caught_up(stack: Stack) -> None:
    dep = stack.deployment()
    due = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    code, run = stack.api("POST", f"/deployments/{dep['id']}/create_flow_run", {
        "parameters": {"reason": "scheduled"},
        "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due}},
    })  # fmt: skip
    assert code in (200, 201), run
    final = stack.wait_final(run["id"])
    assert final["state"]["type"] == "CANCELLED"
    assert "skipped: started 72." in final["state"]["message"]
    assert "max_lateness_hours=6" in final["state"]["message"]
    assert stack.task_runs(run["id"]) == []


def test_a_parameter_of_the_wrong_type_is_refused_with_the_reason(stack: Stack) -> None:
    dep = stack.deployment()
    code, body = stack.api("POST", f"/deployments/{dep['id']}/create_flow_run",
                           {"parameters": {"deploy": "maybe"}})  # fmt: skip
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
    render(f"{ui}/deployments/deployment/{dep['id']}", artifacts / "prefect-ui-deployment.png",
           expect=["training", dep["work_pool_name"], "At 02:00 AM, only on Sunday"])  # fmt: skip
    # the runs list, and the completed run's own page with its final log line
    render(f"{ui}/runs", artifacts / "prefect-ui-runs.png", expect=[done["name"], "Completed"])
    # the run itself, with its log
    render(f"{ui}/runs/flow-run/{done['id']}", artifacts / "prefect-ui-run.png",
           expect=[done["name"], "Finished in state Completed()"])  # fmt: skip
