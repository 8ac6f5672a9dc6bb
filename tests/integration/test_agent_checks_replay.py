"""A deploy's own check is not traffic; labels in batches; a company's own rows replayed.

One real agent on loopback serving a real signed plant bundle (``max_feedback_items`` 100, so
that the replay meets the agent's bound): the deployer's post-deploy check (the golden rows over
HTTP) never reaches the inference log nor the monitor's collected window, and a plant client
holding the predict token cannot mark its rows as checks; ``/v1/feedback`` takes many labels at
once, all or nothing; ``edgeops simulate --from`` replays a semicolon / decimal-comma CSV file
as traffic with its labels as batched feedback, and the monitor's collection holds them.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from edgeops.deploy.rollout import post_deploy_check
from edgeops.deploy.targets import AgentClient, Target
from edgeops.edge.bundle import load_public_key, verify_bundle
from edgeops.edge.store import tar_bundle
from edgeops.monitor.store import ProductionStore
from tests.agent_process import DEPLOY_TOKEN, EDGEOPS, FEEDBACK_TOKEN, PREDICT_TOKEN, AgentProcess
from tests.bundles import PARAMS, REPO, make_bundle, plant_schema
from tests.conftest import tool_env

pytestmark = pytest.mark.integration

TOKEN_ENV = "EDGEOPS_TEST_REPLAY_TOKEN"
FEATURES = [c.name for c in plant_schema().features]
MAX_ITEMS = 100
SUMMARY = re.compile(
    r"line-1: (\d+) request\(s\), (\d+) row\(s\), feedback on (\d+) row\(s\) in (\d+) "
    r"request\(s\), (\d+) error\(s\)"
)


@pytest.fixture(scope="module")
def plant(tmp_path_factory, signing_keys: Path):
    """An agent, a bundle deployed to it with the deployer's post-deploy check, a targets file."""
    root = tmp_path_factory.mktemp("replay")
    agent = AgentProcess(
        root / "state", signing_keys / "signing.pub", {"max_feedback_items": MAX_ITEMS}
    )
    agent.state_dir.mkdir(parents=True)
    agent.start()
    (root / "targets.yaml").write_text(
        yaml.safe_dump({"targets": [{"name": "line-1", "url": agent.url, "token_env": TOKEN_ENV}]})
    )
    client = AgentClient(Target(name="line-1", url=agent.url, token_env=TOKEN_ENV))
    client._token = DEPLOY_TOKEN  # this process has no TOKEN_ENV; the commands' processes have
    bundle_dir = make_bundle(root / "v1", signing_keys, "1.0.0")
    client.upload(tar_bundle(bundle_dir), "test", "pytest")
    bundle = verify_bundle(bundle_dir, load_public_key(signing_keys / "signing.pub"))
    check = post_deploy_check(client, bundle, watch_seconds=0.2, max_error_rate=0.2)
    yield {
        "root": root,
        "agent": agent,
        "client": client,
        "bundle": bundle,
        "check": check,
        "env": {**tool_env(), TOKEN_ENV: DEPLOY_TOKEN},
    }
    agent.stop()


def log_items(client: AgentClient, after: int = 0) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while page := client.logs(after)["items"]:
        items += page
        after = page[-1]["id"]
    return items


def last_id(client: AgentClient) -> int:
    return int(client.logs(0, limit=1)["last"])


def post(plant: dict[str, Any], path: str, body: Any, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        plant["agent"].url + path,
        json=body,
        headers={"Authorization": f"Bearer {token}", **headers},
        timeout=30,
    )


def plant_rows(n: int, seed: int) -> pd.DataFrame:
    from edgeops.sources.simulator import simulate

    return simulate(rows=n, seed=seed).reset_index(drop=True)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df[FEATURES].to_json(orient="records"))


def key(row: dict[str, Any]) -> tuple:
    """A row's feature values, comparable across JSON and frames (NaN and None: missing)."""
    return tuple(
        None if v is None or v != v else round(v, 4) if isinstance(v, float) else v
        for v in (row[f] for f in FEATURES)
    )


def collect(plant: dict[str, Any], store: Path) -> ProductionStore:
    s = ProductionStore(store)
    s.collect(plant["client"], schema=plant_schema())
    return s


def test_the_deploy_check_is_answered_but_never_logged_nor_collected(plant, tmp_path) -> None:
    client, golden = plant["client"], plant["bundle"].manifest["golden"]["examples"]
    assert plant["check"]["golden_max_abs_diff"] <= 1e-5  # the check ran, over HTTP
    assert last_id(client) == 0  # ... and left nothing in the log
    metrics = httpx.get(
        plant["agent"].url + "/metrics", headers={"Authorization": f"Bearer {DEPLOY_TOKEN}"}
    ).text
    checked = re.search(r'edgeops_check_predictions_total\{kind="deploy"\} (\S+)', metrics)
    cats = {s.name: s.categories for s in plant["bundle"].model.inputs if s.categories}
    sent = [  # the golden rows the check sends: those whose categories the agent accepts
        ex for ex in golden if all(ex["inputs"].get(c) in (None, *v) for c, v in cats.items())
    ]
    assert checked and float(checked.group(1)) == len(sent) > 0, metrics[:500]

    # a plant client cannot hide its rows as checks: refused, nothing predicted, nothing logged
    hidden = records(plant_rows(5, 3))
    r = post(plant, "/v1/predict", {"rows": hidden}, PREDICT_TOKEN, **{"X-Edgeops-Check": "deploy"})
    assert r.status_code == 403 and "only the deploy token" in r.json()["error"]["message"]
    assert last_id(client) == 0

    # traffic with the predict token, and a second deploy check in the middle of it
    traffic = records(plant_rows(120, 7))
    for k in range(0, 120, 40):
        r = post(plant, "/v1/predict", {"rows": traffic[k : k + 40]}, PREDICT_TOKEN)
        assert r.status_code == 200 and "check" not in r.json()
        if k == 40:
            again = post_deploy_check(client, plant["bundle"], 0.1, 0.2)
            assert again["golden_max_abs_diff"] <= 1e-5
    store = collect(plant, tmp_path / "production")
    window = store.read_rows("line-1")
    assert len(window) == 120  # the traffic, every row once; no golden row
    collected = {key(row) for row in window[FEATURES].to_dict(orient="records")}
    assert collected == {key(row) for row in traffic}
    assert not collected & {key(ex["inputs"]) for ex in golden}


def test_feedback_in_batches_is_all_or_nothing(plant, tmp_path) -> None:
    client = plant["client"]
    rows = records(plant_rows(30, 11))
    ids = [
        post(plant, "/v1/predict", {"rows": rows[k : k + 10]}, PREDICT_TOKEN).json()
        for k in (0, 10, 20)
    ]
    rid = [a["request_id"] for a in ids]
    before = client.feedback_log(0, limit=1)["last"]
    items = [{"request_id": r, "row": i, "label": (i % 2)} for r in rid for i in range(10)]

    bad = [*items[:5], {**items[5], "label": "broken"}, {**items[6], "row": -1}, *items[7:]]
    r = post(plant, "/v1/feedback", {"items": bad}, FEEDBACK_TOKEN)
    assert r.status_code == 422, r.text
    fields = [f["field"] for f in r.json()["error"]["fields"]]
    assert fields == ["items[5].label", "items[6].row"] and "nothing was stored" in r.text
    unknown = [*items[:3], {**items[3], "request_id": "f" * 32}, *items[4:]]
    r = post(plant, "/v1/feedback", {"items": unknown}, FEEDBACK_TOKEN)
    assert r.status_code == 404 and r.json()["error"]["fields"][0]["field"] == "items[3].request_id"
    r = post(plant, "/v1/feedback", {"items": items[:1] * (MAX_ITEMS + 1)}, FEEDBACK_TOKEN)
    assert r.status_code == 413 and "max_feedback_items" in r.text
    r = post(plant, "/v1/feedback", {"items": items}, PREDICT_TOKEN)
    assert r.status_code == 403  # the predict token never labels
    assert client.feedback_log(0, limit=1)["last"] == before  # none of that stored a label

    r = post(plant, "/v1/feedback", {"items": items}, FEEDBACK_TOKEN)
    assert r.status_code == 200 and r.json() == {"updated": 30}
    r = post(plant, "/v1/feedback", {"request_id": rid[0], "label": 1, "row": 0}, DEPLOY_TOKEN)
    assert r.json() == {"updated": 1}  # the single form as before (a later label wins)
    labelled = collect(plant, tmp_path / "production").labelled()
    mine = labelled[labelled["_request_id"].isin(rid)]
    got = {
        (r, int(i)): f
        for r, i, f in mine[["_request_id", "_row", "_feedback"]].itertuples(index=False)
    }
    want = {(r, i): str(i % 2) for r in rid for i in range(10)} | {(rid[0], 0): "1"}
    assert got == want


def simulate(plant: dict[str, Any], *args: str) -> subprocess.CompletedProcess:
    cmd = [
        EDGEOPS,
        "simulate",
        "--params",
        str(REPO / "params.yaml"),
        "--targets",
        str(plant["root"] / "targets.yaml"),
        "--target",
        "line-1",
        *args,
    ]
    return subprocess.run(cmd, env=plant["env"], capture_output=True, text=True, timeout=300)


def test_simulate_from_a_csv_replays_every_row_with_batched_feedback(plant, tmp_path) -> None:
    client = plant["client"]
    df = plant_rows(600, 21)
    target = PARAMS["validate"]["schema"]["target"]
    path = tmp_path / "own rows.csv"
    df.to_csv(path, sep=";", decimal=",", index=False)  # a German Excel export
    start = last_id(client)
    seq = client.feedback_log(0, limit=1)["last"]
    proc = simulate(
        plant, "--from", str(path), "--feedback-share", "0.5", "--seed", "4", "--rate", "1500"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "sep ';'" in proc.stderr, proc.stderr
    m = SUMMARY.search(proc.stdout)
    assert m, proc.stdout
    requests, sent, labelled, fb_requests, errors = map(int, m.groups())
    assert (requests, sent, labelled, errors) == (12, 600, 300, 0)  # 50 rows a request
    assert math.ceil(300 / MAX_ITEMS) <= fb_requests < 300 // 2  # batched, within the bound
    events = []
    after = seq
    while page := client.feedback_log(after)["items"]:
        events += page
        after = page[-1]["seq"]
    assert len(events) == 300

    items = log_items(client, start)
    assert len(items) == 600  # every row, in file order, as the file holds it
    assert [key(i["features"]) for i in items] == [key(r) for r in records(df)]
    labelled_rows = collect(plant, tmp_path / "production").labelled()
    mine = labelled_rows[labelled_rows["_id"] > start].sort_values("_id")
    assert len(mine) == 300
    truth = df[target].astype(str).tolist()
    assert all(
        f == truth[int(i) - start - 1]
        for i, f in mine[["_id", "_feedback"]].itertuples(index=False)
    )

    # the rate is rows a second: the 4th request of 50 rows goes at 150 / 400 s
    proc = simulate(
        plant, "--from", str(path), "--rows", "200", "--rate", "400", "--feedback-share", "0"
    )
    assert proc.returncode == 0, proc.stderr
    elapsed = float(re.search(r", ([\d.]+) s, model", proc.stdout).group(1))
    assert 0.37 <= elapsed < 5, proc.stdout


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, ["--from", "nowhere.csv"], "--from nowhere.csv: no such file or folder"),
        ("full", ["--label-column", "nope"], "--label-column nope: "),
        ("no_torque", [], "has no column(s) ['torque_nm'], which the model needs"),
        ("no_label", [], "(the schema's target) to send as feedback"),
    ],
)
def test_bad_replays_are_one_clear_error_and_send_nothing(plant, tmp_path, make, args, message):
    df = plant_rows(20, 5)
    path = tmp_path / "rows.csv"
    target = PARAMS["validate"]["schema"]["target"]
    drop = {"full": [], "no_torque": ["torque_nm"], "no_label": [target]}.get(make)
    if drop is not None:
        df.drop(columns=drop).to_csv(path, index=False)
        args = ["--from", str(path), *args]
    start = last_id(plant["client"])
    proc = simulate(plant, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert last_id(plant["client"]) == start  # nothing sent
