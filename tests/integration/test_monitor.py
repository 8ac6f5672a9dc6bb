"""`edgeops monitor` against real agents on loopback, a real signed bundle and a real DVC workspace.

One module-scoped workspace (a copy of the repository, `dvc repro` on 20,000 simulated rows, the
bundle deployed with `edgeops deploy --all --force` to six agents) serves every test; each test
has its own agent, so their logs do not mix:

- line-drift: detection rates of the four simulator scenarios (in-process, Evidently once);
- line-kill: the collector SIGKILLed twenty times, then every row and label stored exactly once;
  then the agent down during a run (named, the others judged, its rows collected later, once);
- line-perf: feedback contradicting the model -> retrain for performance, not drift;
- line-figures: the printed summary, summary.md, decision.json, drift.json and the Evidently page
  agree on every drift figure;
- line-edge, line-minimised: not enough data, an unreachable agent, a reset log, a schema that does
  not fit the logs, a missing drift reference (the CLI as a person runs it: exit codes, messages).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.deploy.targets import AgentClient, Target
from edgeops.monitor.simulate import build_rows, send_traffic
from edgeops.monitor.store import ProductionStore, cursor, parts
from tests.agent_process import DEPLOY_TOKEN, EDGEOPS, AgentProcess, free_port
from tests.conftest import BIN, REPO, init_project, tool_env
from tests.prefect_stack import set_params, set_params_file, sh

pytestmark = pytest.mark.integration

DVC = str(BIN / "dvc")
TOKEN_ENV = "EDGEOPS_TEST_MONITOR_TOKEN"
AGENTS = ("line-drift", "line-kill", "line-perf", "line-edge", "line-minimised", "line-figures")
AGENT_CONFIG = {"line-minimised": {"log_drop_fields": ["vibration_mm_s"]}}
SCENARIOS = ("baseline", "hot_summer", "biased_sensor", "new_product_mix")
# the columns each scenario moves (edgeops.sources.simulator)
MOVED = {
    "hot_summer": {"air_temp_k", "process_temp_k"},
    "biased_sensor": {"torque_nm"},
    "new_product_mix": {"machine_type", "product_line"},
}
WINDOWS = 20
RATES_FILE = REPO / "test-artifacts" / "monitor-rates.json"


@pytest.fixture(scope="module")
def plant(tmp_path_factory, signing_keys: Path):
    """A trained workspace, five agents serving its bundle, a targets file naming them."""
    root = tmp_path_factory.mktemp("monitor")
    ws = init_project(root / "workspace")
    # leftovers of a local `edgeops monitor` (untracked .dvc files) are not part of the product
    for leftover in (ws / "data/production").glob("*.dvc"):
        sh(["git", "rm", "-q", "--cached", str(leftover)], ws)
        leftover.unlink()
    set_params(
        ws,
        **{
            "ingest.simulator.rows": 20000,
            "export.latency_repeats": 0,
            "train.hist_gradient_boosting.max_iter": 100,
            "deploy.watch_seconds": 0.5,
            "monitor.window.rows": 1000,
            "monitor.window.min_rows": 500,
            "monitor.reference_rows": 10000,
            "monitor.cooldown_hours": 0,
        },
    )
    sh(["git", "commit", "-qam", "monitor test workspace"], ws)
    sh([DVC, "repro"], ws)

    agents = {}
    for name in AGENTS:
        agents[name] = AgentProcess(
            root / f"agent-{name}" / "state",
            signing_keys / "signing.pub",
            AGENT_CONFIG.get(name, {}),
        )
        agents[name].state_dir.parent.mkdir(parents=True)
        agents[name].start()
    targets = [
        {
            "name": n,
            "url": a.url,
            "site": "plant-1",
            "token_env": TOKEN_ENV,
            "canary": n == AGENTS[0],
        }
        for n, a in agents.items()
    ]
    (ws / "deploy/targets.yaml").write_text(
        yaml.safe_dump({"public_key": str(signing_keys / "signing.pub"), "targets": targets})
    )
    env = {**tool_env(), TOKEN_ENV: DEPLOY_TOKEN}
    sh([EDGEOPS, "deploy", "--all", "--force", "--reason", "test"], ws, env=env)
    version = json.loads((ws / "models/bundle/manifest.json").read_text())["model"]["version"]
    old_token = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = DEPLOY_TOKEN  # for the in-process clients and monitor runs
    try:
        yield {
            "ws": ws,
            "root": root,
            "agents": agents,
            "env": env,
            "version": version,
            "keys": signing_keys,
        }
    finally:
        for a in agents.values():
            a.stop()
        if old_token is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = old_token


def client(plant: dict[str, Any], name: str) -> AgentClient:
    return AgentClient(Target(name=name, url=plant["agents"][name].url, token_env=TOKEN_ENV))


def traffic(
    plant: dict[str, Any], name: str, rows: int, seed: int, scenario: str = "baseline", **kw: Any
) -> dict[str, Any]:
    """Simulated plant rows to one agent (the `edgeops simulate --target` code path)."""
    params = yaml.safe_load((plant["ws"] / "params.yaml").read_text())
    records, labels, classes = build_rows(params, scenario, rows, seed)
    kw.setdefault("batch", 50)
    sent = send_traffic(client(plant, name), records, labels, seed=seed, classes=classes, **kw)
    assert sent["rows"] == rows and sent["errors"] == 0, sent
    return sent


def monitor(plant: dict[str, Any], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`edgeops monitor ...` in the workspace, as a person runs it."""
    return sh(
        [EDGEOPS, "monitor", *args], plant["ws"], env=plant["env"], check=False, timeout=timeout
    )


def agent_rows(c: AgentClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while page := c.logs(after=after, limit=5000)["items"]:
        items += page
        after = page[-1]["id"]
    return items


def agent_feedback(c: AgentClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while page := c.feedback_log(after=after, limit=5000)["items"]:
        items += page
        after = page[-1]["seq"]
    return items


def stored(ws: Path, target: str, kind: str) -> list[Any]:
    """Every stored part of ``kind`` of ``target`` (all logs), read whole: a list of frames."""
    import pandas as pd

    out = []
    for series in ProductionStore(ws / "data/production").series(target):
        for p in parts(series, kind):
            df = pd.read_parquet(p.path)
            key = "_id" if kind == "rows" else "_seq"
            assert (df[key].min(), df[key].max()) == (p.first, p.last), p.path  # name = content
            out.append(df.assign(_log=series.name, _stored_at=p.path.stat().st_mtime))
    return out


# ---- 1. detection rates ----------------------------------------------------------------------
def test_detection_rates_of_the_simulator_scenarios(plant, monkeypatch) -> None:
    """20 windows of 1,000 rows per scenario, each from a fresh seed, each judged by a monitor run.

    Unchanged traffic must rarely be flagged (<= 2 of 20); each drift scenario almost always
    (>= 19 of 20), with the columns it moves named as drifted."""
    from edgeops.monitor.run import Monitor, run_monitor

    ws, name = plant["ws"], "line-drift"
    monkeypatch.chdir(ws)  # the deploy section's relative paths (audit log: the cooldown)
    m = Monitor.load(ws / "params.yaml", ws / "deploy/targets.yaml")
    m.collect(m.targets([name])[0], log=lambda _msg: None)  # the deploy's own checks
    settings = m.settings
    flagged: dict[str, list[bool]] = {s: [] for s in SCENARIOS}
    columns: dict[str, Counter[str]] = {s: Counter() for s in SCENARIOS}
    seeds: dict[str, list[int]] = {s: [] for s in SCENARIOS}
    started = time.monotonic()
    for k, scenario in enumerate(SCENARIOS):
        for i in range(WINDOWS):
            # Saving a run to the Evidently workspace re-reads every run stored there (~0.5 MB
            # each, ~45 ms per stored run on this machine): a folder per window keeps that growth
            # out of this test's time budget (the UI workspace is not what is measured here).
            m.settings = replace(settings, workspace=Path(".evidently-rates") / f"{scenario}-{i}")
            seed = 1000 + 100 * k + i  # a fresh seed per window, never the training seed (42)
            traffic(plant, name, 1000, seed, scenario, feedback_share=0.0)
            result = run_monitor(m, [name], log=lambda _msg: None)
            t = result["targets"][name]
            assert t["collected"]["rows"] == 1000  # the window is exactly this traffic
            assert t["window"]["rows"] == 1000 and t["version"] == plant["version"]
            drift = t["drift"]
            assert drift["reference"]["rows"] == 10000 and drift["current"]["rows"] == 1000
            assert Path(t["reports"]["drift_html"]).is_file() and t["reports"]["evidently_run"]
            flagged[scenario].append(bool(drift["dataset_drift"]))
            columns[scenario].update(drift["drifted_columns"])
            seeds[scenario].append(seed)
            # the decision follows the drift verdict (no feedback here: no performance verdict)
            assert t["decision"] == ("retrain" if drift["dataset_drift"] else "keep"), t["reasons"]
            if drift["dataset_drift"]:
                assert any(r.startswith("drift: ") for r in t["reasons"])
            assert t["performance"]["verdict"] == "not_enough_labels"
    elapsed = time.monotonic() - started

    rates = {
        s: {"flagged": sum(v), "of": len(v), "drifted_columns": dict(columns[s]), "seeds": seeds[s]}
        for s, v in flagged.items()
    }
    RATES_FILE.parent.mkdir(exist_ok=True)
    RATES_FILE.write_text(
        json.dumps(
            {
                "window_rows": 1000,
                "reference_rows": 10000,
                "thresholds": m.settings.thresholds()["drift"],
                "elapsed_s": round(elapsed, 1),
                "rates": rates,
            },
            indent=2,
        )
    )
    print("\ndrift detection rates (windows flagged of 20):")
    for s, r in rates.items():
        print(f"  {s:16s} {r['flagged']:2d}/{r['of']}  {r['drifted_columns']}")
    print(f"  ({len(SCENARIOS) * WINDOWS} monitor runs in {elapsed:.0f} s)")

    assert rates["baseline"]["flagged"] <= 2, rates["baseline"]
    for scenario, moved in MOVED.items():
        assert rates[scenario]["flagged"] >= 19, (scenario, rates[scenario])
        # the report names what moved: a moved column drifted in every flagged window
        assert sum(columns[scenario][c] for c in moved) >= rates[scenario]["flagged"], (
            scenario,
            columns[scenario],
        )


# ---- 2. exactly once under SIGKILL -----------------------------------------------------------
def feedback_on(
    c: AgentClient, items: list[dict[str, Any]], rng: random.Random, share: float
) -> int:
    """Ground truth for a share of the requests in ``items``: per row for some, per request for
    others (one feedback event labelling all its rows). Returns the rows labelled."""
    by_request: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        by_request.setdefault(it["request_id"], []).append(it)
    n = 0
    for rid in sorted(by_request):
        if rng.random() >= share:
            continue
        if rng.random() < 0.5:
            n += c.feedback(rid, rng.choice(["0", "1"]))["updated"]
        else:
            for it in by_request[rid][:: rng.randint(1, 7)]:
                n += c.feedback(rid, rng.choice(["0", "1"]), it["row"])["updated"]
    return n


def test_collecting_is_exactly_once_under_sigkill(plant) -> None:
    ws, name = plant["ws"], "line-kill"
    params = ws / "params-kill.yaml"  # small pages: kills land between them
    shutil.copy(ws / "params.yaml", params)
    set_params_file(params, {"monitor.page_rows": 200})
    c = client(plant, name)
    rng = random.Random(20261122)

    deployed = c.logs(limit=1)["last"]  # the deploy's own checks are logged too
    traffic(plant, name, 20000, seed=7001, batch=100, feedback_share=0.0)
    labelled = feedback_on(c, agent_rows(c), rng, share=0.1)
    assert labelled > 500
    kills: list[dict[str, Any]] = []
    orphans: list[tuple[int, str]] = []
    try:
        kill_twenty_times(plant, params, c, rng, kills, orphans)
        # the killed runs' worker processes (Evidently) do not outlive them for long
        deadline = time.monotonic() + 30
        while (alive := [p for p in orphans if running(p)]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert alive == [], f"worker processes of killed runs still running: {alive}"
    finally:
        for p in orphans:  # only the processes these runs started, by pid (and start time)
            if running(p):
                os.kill(p[0], signal.SIGKILL)

    # a complete run stores everything; labels given after it are late for sure (whatever the
    # kills above left behind), and the next run must pick them up
    done = monitor(plant, "--target", name, "--params", str(params))
    assert done.returncode in (0, 5), done.stderr
    assert feedback_on(c, agent_rows(c)[-3000:], rng, share=0.2) > 50
    final = monitor(plant, "--target", name, "--params", str(params), "--json")
    assert final.returncode in (0, 5), final.stderr
    decision = json.loads(final.stdout)
    assert decision["targets"][name]["window"]["rows"] == 1000

    # every row the agent logged is stored exactly once: none missing, none twice
    import pandas as pd

    logged = agent_rows(c)
    rows = pd.concat(stored(ws, name, "rows"), ignore_index=True)
    counts = Counter(rows["_id"].tolist())
    assert [i for i, n in counts.items() if n > 1] == []
    assert sorted(counts) == [it["id"] for it in logged]
    assert len(rows) == len(logged) == deployed + 20000 + sum(BETWEEN_KILLS)
    by_id = rows.set_index("_id")
    for it in logged[::997]:  # the stored row is the logged one
        assert by_id.at[it["id"], "_request_id"] == it["request_id"]
        assert by_id.at[it["id"], "torque_nm"] == pytest.approx(it["features"]["torque_nm"])

    # every feedback event likewise; the latest label per row is the agent's
    events = agent_feedback(c)
    fb = pd.concat(stored(ws, name, "feedback"), ignore_index=True)
    pairs = Counter(zip(fb["_id"], fb["_seq"], strict=True))
    assert [p for p, n in pairs.items() if n > 1] == []
    assert {(e["id"], e["seq"]) for e in events} <= set(pairs)
    latest = ProductionStore.read_feedback(ProductionStore(ws / "data/production").series(name)[0])
    assert dict(zip(latest["_id"], latest["_feedback"], strict=True)) == {
        e["id"]: e["feedback"] for e in events
    }
    # late labels (given after their row had been stored) are there too
    stored_at = dict(zip(rows["_id"], rows["_stored_at"], strict=True))
    late = [e for e in events if e["feedback_ts"] > stored_at[e["id"]]]
    assert len(late) > 50 and {(e["id"], e["seq"]) for e in late} <= set(pairs)

    # the kills landed mid-collection (rows or labels partly stored), and nothing half-written
    # is left behind
    print("\nSIGKILL runs, (rows, feedback) cursors before -> after the kill, of the agent's:")
    print("\n".join(f"  {k['before']} -> {k['after']} of {k['agent']}" for k in kills))
    cut = [k for k in kills if k["before"] != k["after"] != k["agent"]]
    assert len(cut) >= 3 and any(k["after"][0] < k["agent"][0] for k in cut), kills
    strays = [p for p in (ws / "data/production").rglob("*") if p.name.endswith(".tmp")]
    assert strays == []
    assert len(ProductionStore(ws / "data/production").series(name)) == 1


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, ..., starttime at [19])."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below ``pid``."""
    children: dict[int, list[tuple[int, str]]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(d.name)):
            children.setdefault(int(st[1]), []).append((int(d.name), st[19]))
    out, todo = [], [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid[0])
    return out


def running(p: tuple[int, str]) -> bool:
    """The process is there (not a zombie) and is the same one (start time)."""
    st = _stat(p[0])
    return st is not None and st[0] != "Z" and st[19] == p[1]


# rows sent after each of the 20 killed runs: the runs killed after their first page (0, 2, 4, 6)
# find 10+ pages waiting, so the kill lands mid-collection however fast the pages are stored
BETWEEN_KILLS = [2000 if k in (1, 3, 5) else 300 for k in range(20)]


def kill_twenty_times(
    plant: dict[str, Any],
    params: Path,
    c: AgentClient,
    rng: random.Random,
    kills: list[dict[str, Any]],
    orphans: list[tuple[int, str]],
) -> None:
    """Start `edgeops monitor`, SIGKILL it (four runs right after their first stored page, so load on
    the machine cannot decide whether kills land mid-collection; the others after a random delay);
    new traffic and labels between."""
    ws, name = plant["ws"], c.target.name
    store = ProductionStore(ws / "data/production")

    def cursors() -> tuple[int, int]:
        series = store.series(name)
        return (cursor(series[0], "rows"), cursor(series[0], "feedback")) if series else (0, 0)

    for k in range(20):
        before = cursors()
        agent = (c.logs(limit=1)["last"], c.feedback_log(limit=1)["last"])
        err_path = plant["root"] / f"kill-{k}.log"
        with open(err_path, "w") as err_file:
            proc = subprocess.Popen(
                [EDGEOPS, "monitor", "--target", name, "--params", str(params)],
                cwd=ws,
                env=plant["env"],
                stdout=subprocess.DEVNULL,
                stderr=err_file,
            )
        if k % 2 == 0 and k < 8:  # four runs: SIGKILL just after they stored their first page
            deadline = time.monotonic() + 60
            while cursors() == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05))
        else:  # ... the others anywhere: starting, collecting, judging
            time.sleep(rng.uniform(0.5, 4.0))
        orphans += descendants(proc.pid)  # its Evidently worker
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        err = err_path.read_text()
        assert proc.returncode == -signal.SIGKILL, f"run {k} ended by itself: {err}"
        assert "Traceback" not in err, err
        kills.append({"before": before, "after": cursors(), "agent": agent})
        # between kills: new traffic, labels for new rows and late labels for collected ones
        traffic(plant, name, BETWEEN_KILLS[k], seed=7100 + k, batch=30, feedback_share=0.3)
        recent = c.logs(after=max(0, agent[0] - 2000), limit=5000)["items"]
        feedback_on(c, recent, rng, share=0.05)


# ---- 3. performance --------------------------------------------------------------------------
def test_feedback_contradicting_the_model_retrains_for_performance(plant) -> None:
    name = "line-perf"
    sent = traffic(plant, name, 1000, seed=4242, batch=10, feedback_share=0.5, label_flip=1.0)
    assert sent["flipped"] == sent["feedback"] == 500
    proc = monitor(plant, "--target", name, "--json")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    t = result["targets"][name]
    assert result["decision"] == t["decision"] == "retrain"
    assert [r.split(":")[0] for r in t["reasons"]] == ["performance"], t["reasons"]
    assert t["drift"]["dataset_drift"] is False  # baseline traffic: the inputs did not move
    perf = t["performance"]
    assert perf["verdict"] == "degraded" and perf["labelled_rows"] == 500
    assert perf["drop"]["roc_auc"] >= 0.1 and perf["production"]["roc_auc"] < 0.5
    assert f"{name}: performance: roc_auc" in "\n".join(result["reasons"])
    decision = json.loads((plant["ws"] / "reports/monitoring/decision.json").read_text())
    assert decision["decision"] == "retrain" and decision["exit_code"] == 5


# ---- 3b. one drift figure --------------------------------------------------------------------
def printed_drift(summary: str, target: str) -> dict[str, Any]:
    """The drift figures of ``target``'s section of a printed summary (summary.md's markdown):
    the share line and the table of columns (method, score, threshold, drifted)."""
    import re

    section = summary.split(f"## {target}: ", 1)[1].split("\n## ", 1)[0]
    head = re.search(r"Drift: (\d+) of (\d+) feature columns \(share ([0-9.]+),", section)
    assert head, section
    columns = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[1] in ("wasserstein", "jensenshannon"):
            columns[cells[0]] = {
                "method": cells[1],
                "score": float(cells[2]),
                "threshold": float(cells[3]),
                "drifted": cells[4] == "**yes**",
            }
    return {
        "drifted": int(head.group(1)),
        "columns": int(head.group(2)),
        "share": float(head.group(3)),
        "table": columns,
    }


def test_the_summary_decision_and_evidently_page_agree_on_every_figure(plant) -> None:
    """A drifting window (hot summer: the two temperatures move, the rest does not), judged by
    `edgeops monitor` as a person runs it: the figures it prints, summary.md, decision.json,
    drift.json and the Evidently page are the same share, drifted columns and scores."""
    from tests.drift_cases import page_figures

    ws, name = plant["ws"], "line-figures"
    traffic(plant, name, 1000, seed=8101, scenario="hot_summer", feedback_share=0.0)
    proc = monitor(plant, "--target", name)
    assert proc.returncode in (5, 8), proc.stdout + proc.stderr  # retrain (8: not yet versioned)
    decision = json.loads((ws / "reports/monitoring/decision.json").read_text())
    drift = decision["targets"][name]["drift"]
    assert json.loads((ws / f"reports/monitoring/{name}/drift.json").read_text()) == drift
    assert drift["dataset_drift"] and {"air_temp_k", "process_temp_k"} <= set(
        drift["drifted_columns"]
    )
    features = list(drift["columns"])
    assert "prediction" not in features and drift["prediction"] is not None

    page = page_figures(Path(decision["targets"][name]["reports"]["drift_html"]))
    printed = printed_drift(proc.stdout, name)
    stored_md = printed_drift((ws / "reports/monitoring/summary.md").read_text(), name)
    assert printed == stored_md
    # the share and the drifted columns: one figure everywhere, over the feature columns only
    assert page["columns"] == printed["columns"] == len(features)
    assert page["drifted"] == printed["drifted"] == len(drift["drifted_columns"])
    assert page["share"] == pytest.approx(drift["share"], abs=0.005)
    assert printed["share"] == pytest.approx(drift["share"], abs=0.005)
    assert f"share {drift['share']:.2f} >= {drift['share_threshold']}" in " ".join(
        decision["reasons"]
    )
    # every column: the score, the verdict and the threshold
    assert set(page["scores"]) == set(features)
    assert set(printed["table"]) == {*features, "prediction (model output)"}
    for col in features:
        ours = drift["columns"][col]
        assert page["scores"][col] == pytest.approx(ours["score"], abs=1e-5), col
        assert page["detected"][col] == ours["drifted"], col
        assert page["thresholds"][col] == round(ours["threshold"], 2), col
        row = printed["table"][col]
        assert row["score"] == float(f"{ours['score']:.4g}") and row["drifted"] == ours["drifted"]
        assert row["threshold"] == ours["threshold"] and row["method"] == ours["method"]
        if ours["drifted"]:  # the reasons name each drifted column with its score
            assert f"{col} ({ours['method']} {ours['score']:.3g})" in " ".join(decision["reasons"])
    assert page["prediction"].startswith(f"Drift score is {drift['prediction']['score']:.2f}.")


# ---- 4. bad input ----------------------------------------------------------------------------
def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


def test_bad_input_is_one_clear_message(plant, tmp_path) -> None:
    ws, name = plant["ws"], "line-edge"
    store = ws / "data/production" / name

    # a window below min_rows: no verdict, never "no drift"
    deployed = client(plant, name).logs(limit=1)["last"]  # the deploy's own checks are logged
    traffic(plant, name, 100, seed=5001, batch=10)
    proc = monitor(plant, "--target", name)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 6, out
    assert f"not enough data (n={deployed + 100} < min 500)" in out and "no drift" not in out
    assert "Traceback" not in out

    # an unreachable agent: one error line, exit 2
    dead = tmp_path / "targets-dead.yaml"
    dead.write_text(
        yaml.safe_dump(
            {
                "public_key": str(plant["keys"] / "signing.pub"),
                "targets": [
                    {
                        "name": "line-gone",
                        "url": f"http://127.0.0.1:{free_port()}",
                        "token_env": TOKEN_ENV,
                    }
                ],
            }
        )
    )
    proc = monitor(plant, "--target", "line-gone", "--targets", str(dead))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(error_lines(proc)) == 1 and "unreachable" in error_lines(proc)[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (ws / "data/production/line-gone").exists()

    # params whose schema does not fit the deployed model (a feature removed): a clear error
    traffic(plant, name, 600, seed=5002, batch=20)
    changed = ws / "params-schema.yaml"
    params = yaml.safe_load((ws / "params.yaml").read_text())
    cols = params["validate"]["schema"]["columns"]
    params["validate"]["schema"]["columns"] = [c for c in cols if c["name"] != "vibration_mm_s"]
    changed.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = monitor(plant, "--target", name, "--params", str(changed))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = error_lines(proc)
    assert "takes [" in line and "validate.schema's features are" in line, proc.stderr
    assert "'vibration_mm_s'" in line and "Traceback" not in proc.stderr

    # logs that lack a feature of the deployed model (the agent drops it): a clear error
    traffic(plant, "line-minimised", 600, seed=5003, batch=20)
    proc = monitor(plant, "--target", "line-minimised")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = error_lines(proc)
    assert "the logs of line-minimised lack the feature columns ['vibration_mm_s']" in line
    assert "log.drop_fields" in proc.stderr and "Traceback" not in proc.stderr

    # the drift reference is gone (neither the file nor DVC's cache): the fix names `dvc pull`
    manifest = json.loads((ws / "models/bundle/manifest.json").read_text())
    md5 = manifest["data"]["train_md5"]
    train = ws / "data/prepared/train.parquet"
    cached = ws / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    assert cached.is_file()
    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(train, aside / "train.parquet")
    shutil.move(cached, aside / "cached")
    try:
        proc = monitor(plant, "--target", name)
    finally:
        shutil.move(aside / "train.parquet", train)
        shutil.move(aside / "cached", cached)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(error_lines(proc)) == 1 and md5 in error_lines(proc)[0], proc.stderr
    assert "dvc pull" in proc.stderr and "Traceback" not in proc.stderr

    # the agent's log reset (database deleted): nothing collected, exit 2, "reset" named
    agent = plant["agents"][name]
    old_log = client(plant, name).logs(limit=1)["log_id"]
    agent.stop()
    for db in agent.state_dir.glob("inference.db*"):
        db.unlink()
    agent.start()
    new_log = client(plant, name).logs(limit=1)["log_id"]
    assert new_log != old_log
    traffic(plant, name, 120, seed=5004, batch=10)
    before = files(store)
    assert [p.name for p in store.iterdir() if p.is_dir()] == [old_log]
    proc = monitor(plant, "--target", name)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = error_lines(proc)
    assert "reset" in line and new_log in line and "nothing was collected" in line
    assert "--accept-reset" in proc.stderr and "Traceback" not in proc.stderr
    assert files(store) == before

    # --accept-reset: the new log is collected beside the old one (nothing deleted)
    proc = monitor(plant, "--target", name, "--accept-reset", "--json")
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == sorted([old_log, new_log])
    assert set(before) <= set(files(store))
    new_rows = sum(len(df) for df in stored(ws, name, "rows") if df["_log"].iloc[0] == new_log)
    assert new_rows == 120
    t = json.loads(proc.stdout)["targets"][name]
    assert t["collected"]["log_id"] == new_log and t["collected"]["rows"] == 120
    assert t["window"]["rows"] == deployed + 100 + 600 + 120  # both logs of the deployed version


# ---- 5. a device gone during monitoring --------------------------------------------------------
def test_an_unreachable_agent_is_named_and_the_others_are_judged(plant) -> None:
    """Fault: one agent down during a run. The run names it, judges the others (line-perf still
    wants a retrain), and the next run collects what the device logged meanwhile, none twice."""
    import pandas as pd

    ws, name, gone = plant["ws"], "line-kill", plant["agents"]["line-kill"]
    stored_before = sum(len(df) for df in stored(ws, name, "rows"))
    traffic(plant, name, 300, seed=6001, batch=30)  # logged on the device, not collected yet
    gone.stop()
    try:
        proc = monitor(plant, "--target", "line-perf", "--target", name, "--json")
    finally:
        gone.start()
    assert proc.returncode == 5, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["decision"] == "retrain" and result["unreachable"] == [name]
    assert result["targets"]["line-perf"]["decision"] == "retrain"
    down = result["targets"][name]
    assert down["decision"] == "unreachable" and down["collected"] is None
    assert down["reasons"][0].startswith(f"agent at {gone.url} is unreachable")
    assert any(r.startswith(f"{name}: agent at {gone.url}") for r in result["reasons"])
    assert f"{name}: skipped: target {name}: agent at" in proc.stderr
    assert "Traceback" not in proc.stderr
    summary = (ws / "reports/monitoring/summary.md").read_text()
    assert f"## {name}: unreachable" in summary

    # the device is back: what it logged meanwhile (the 300 rows, and its start-up checks) is
    # collected now, and every row it ever logged is stored exactly once
    proc = monitor(plant, "--target", name, "--json")
    assert proc.returncode in (0, 5, 6), proc.stdout + proc.stderr  # the verdict is not the point
    logged = [it["id"] for it in agent_rows(client(plant, name))]
    collected = json.loads(proc.stdout)["targets"][name]["collected"]["rows"]
    assert collected == len(logged) - stored_before and collected >= 300
    rows = pd.concat(stored(ws, name, "rows"), ignore_index=True)
    assert rows["_id"].is_unique and sorted(rows["_id"]) == logged

    # only a single target, and it is down: one clear error (exit 2), nothing judged
    gone.stop()
    try:
        proc = monitor(plant, "--target", name)
    finally:
        gone.start()
    assert proc.returncode == 2 and "unreachable" in error_lines(proc)[0], proc.stderr


# ---- 6. the disk full while storing what was collected -----------------------------------------
def test_a_full_disk_while_storing_rows_is_one_error_and_keeps_the_stored_ones(plant) -> None:
    """Fault: data/production on a full filesystem. One clear error; the stored parts and the
    cursor as they were (the real store is not touched); with space again, the rows come in."""
    import pandas as pd

    from tests.full_disk import on_full_disk

    ws, name = plant["ws"], "line-edge"
    traffic(plant, name, 400, seed=7001, batch=40)
    run = on_full_disk(
        ws / "data/production",
        [EDGEOPS, "monitor", "--target", name],
        free=0,
        cwd=ws,
        env=plant["env"],
    )
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no space left on the device writing" in lines[0], run.stderr
    assert f"data/production/{name}/" in lines[0] and "Traceback" not in run.stderr
    assert run.before and run.after == run.before and run.leftovers == []
    proc = monitor(plant, "--target", name, "--json")
    assert proc.returncode in (0, 5, 6), proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["targets"][name]["collected"]["rows"] >= 400
    log_id = client(plant, name).logs(limit=1)["log_id"]
    rows = pd.concat(stored(ws, name, "rows"), ignore_index=True)
    rows = rows[rows["_log"] == log_id]  # the agent's current log: every row, once
    assert sorted(rows["_id"]) == [it["id"] for it in agent_rows(client(plant, name))]
