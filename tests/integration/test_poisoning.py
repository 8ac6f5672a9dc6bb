"""One device's labels cannot ship a worse model to the fleet.

The targeted poisoning of the adversarial check, repeated: a plant client holds line-2's predict
token and sends heat-dissipation failures (the model alarms on them) labelled "no failure".
Without the feedback token the labels are refused and nothing is stored; with it (stolen), the
device's labels are quarantined at the next training run, the gate decides on a holdout that did
not move, and no device gets a model worse than the one it runs. The same poisoned labels with
the guards switched off do make a worse model: the attack is real here, the guards stop it.

Real agents, a real DVC workspace (20,000 simulated rows), the CLI as an operator runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.deploy.gate import fetch_bundle, predict_proba, score, verify_local
from edgeops.deploy.targets import AgentClient, Target
from edgeops.edge.bundle import load_public_key
from edgeops.monitor.simulate import build_rows, send_traffic
from tests.agent_process import DEPLOY_TOKEN, FEEDBACK_TOKEN, PREDICT_TOKEN, AgentProcess, http
from tests.conftest import BIN, init_project
from tests.prefect_stack import set_params, sh
from tests.unit.conftest import PLANT_FEATURES

pytestmark = pytest.mark.integration

DVC, EDGEOPS = str(BIN / "dvc"), str(BIN / "edgeops")
POISON = 3000


def heat_failures(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` heat-dissipation failures of the plant: air and process too close, spindle slow."""
    from edgeops.sources.simulator import simulate

    df = simulate(rows=400_000, seed=seed)
    hdf = df[(df["process_temp_k"] - df["air_temp_k"] < 8.6) & (df["spindle_speed_rpm"] < 1380)]
    hdf = hdf[hdf["failure"] == 1].dropna().head(n)
    assert len(hdf) == n
    cols = PLANT_FEATURES
    return [
        {c: (v if isinstance(v, str) else float(v)) for c, v in zip(cols, row, strict=True)}
        for row in hdf[cols].itertuples(index=False, name=None)
    ]


def post(url: str, path: str, body: Any, token: str) -> tuple[int, Any]:
    status, raw = http(
        url,
        "POST",
        path,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return status, json.loads(raw)


@pytest.fixture(scope="module")
def plant(tmp_path_factory, signing_keys: Path):
    root = tmp_path_factory.mktemp("poisoning")
    ws = init_project(root / "workspace")
    set_params(
        ws,
        **{
            "ingest.simulator.rows": 20000,
            "export.latency_repeats": 0,
            "train.hist_gradient_boosting.max_iter": 100,
            "deploy.watch_seconds": 0.5,
            "monitor.window.rows": 1000,
            "monitor.window.min_rows": 500,
        },
    )
    sh(["git", "commit", "-qam", "poisoning test workspace"], ws)
    sh([DVC, "repro"], ws)
    agents = {
        n: AgentProcess(root / n / "state", signing_keys / "signing.pub")
        for n in ("line-1", "line-2")
    }
    token = root / "deploy.token"
    token.write_text(DEPLOY_TOKEN + "\n")
    for a in agents.values():
        a.state_dir.parent.mkdir(parents=True)
        a.start()
    (ws / "deploy/targets.yaml").write_text(
        yaml.safe_dump(
            {
                "public_key": str(signing_keys / "signing.pub"),
                "targets": [
                    {"name": n, "url": a.url, "token_file": str(token), "canary": n == "line-1"}
                    for n, a in agents.items()
                ],
            }
        )
    )
    sh([EDGEOPS, "deploy", "--all", "--reason", "first model"], ws)
    try:
        yield {"ws": ws, "agents": agents, "pub": signing_keys / "signing.pub", "token": token}
    finally:
        for a in agents.values():
            a.stop()


def clean_holdout() -> Any:
    """Rows no model and no device ever saw (another seed), with their true labels."""
    from edgeops.sources.simulator import simulate

    return simulate(rows=40_000, seed=987_654)


def figures(bundle: Any, df: Any) -> dict[str, float]:
    m = score(bundle, df, "failure")
    hdf = (df["process_temp_k"] - df["air_temp_k"] < 8.6) & (df["spindle_speed_rpm"] < 1380)
    hdf &= df["failure"] == 1
    alarmed = (predict_proba(bundle, df[hdf])[:, 1] >= 0.5).mean()
    return {"roc_auc": m["roc_auc"], "pr_auc": m["pr_auc"], "heat_alarmed": float(alarmed)}


def test_one_device_cannot_poison_the_fleet(plant, tmp_path: Path) -> None:
    ws, agents = plant["ws"], plant["agents"]
    first_gate = json.loads((ws / "reports/gate.json").read_text())
    v1 = first_gate["challenger"]["version"]
    holdout_md5 = _md5_of(ws, "data/prepared/test.parquet")

    # honest traffic with honest labels on both lines (the deploy token: the operator's tools)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    for name, seed in (("line-1", 11), ("line-2", 12)):
        records, labels, classes = build_rows(params, "baseline", 1500, seed)
        client = AgentClient(Target(name, agents[name].url, token_file=str(plant["token"])))
        sent = send_traffic(
            client, records, labels, seed=seed, classes=classes, batch=50, feedback_share=0.3
        )
        assert sent["errors"] == 0

    # the attack on line-2: the plant client's predict token ...
    url = agents["line-2"].url
    rows = heat_failures(POISON, seed=5)
    request_ids = []
    for i in range(0, POISON, 100):
        status, body = post(url, "/v1/predict", {"rows": rows[i : i + 100]}, PREDICT_TOKEN)
        assert status == 200, body
        alarmed = sum(p["label"] == 1 for p in body["predictions"])
        assert alarmed > 80  # the model knows these are failures
        request_ids.append(body["request_id"])
    before = http(
        url,
        "GET",
        "/v1/logs/feedback?after=0&limit=1",
        headers={"Authorization": f"Bearer {DEPLOY_TOKEN}"},
    )[1]
    # ... may not label: refused, nothing stored
    for rid in request_ids[:5]:
        status, body = post(url, "/v1/feedback", {"request_id": rid, "label": 0}, PREDICT_TOKEN)
        assert status == 403 and "feedback token" in body["error"]["message"], body
    after = http(
        url,
        "GET",
        "/v1/logs/feedback?after=0&limit=1",
        headers={"Authorization": f"Bearer {DEPLOY_TOKEN}"},
    )[1]
    assert json.loads(after)["last"] == json.loads(before)["last"]
    # with the device's feedback token (stolen), the labels are taken ...
    for rid in request_ids:
        status, body = post(url, "/v1/feedback", {"request_id": rid, "label": 0}, FEEDBACK_TOKEN)
        assert status == 200 and body["updated"] == 100, body

    # ... collected, and quarantined by the next training run's ingest
    out = sh([EDGEOPS, "monitor", "--all", "--json"], ws, check=False)
    assert out.returncode in (0, 5), out.stderr
    sh([DVC, "repro"], ws)
    ingest = json.loads((ws / "reports/ingest.json").read_text())
    line2 = ingest["production"]["line-2"]
    assert line2["quarantined"], line2
    quarantined = sum(q["rows"] for q in line2["quarantined"])
    assert quarantined >= POISON, line2
    joined_keys = _parquet(ws / "data/raw/production.parquet")
    poisoned = {f"{rid}:{row}" for rid in request_ids for row in range(100)}
    assert not poisoned & set(joined_keys["key"]), "a poisoned row joined the training data"
    assert ingest["production"]["line-1"]["joined"] > 300  # honest labels still join
    # the holdout did not move: same file, the champion's figure on it as at its own gate
    assert _md5_of(ws, "data/prepared/test.parquet") == holdout_md5
    status = sh([EDGEOPS, "labels", "status"], ws)
    assert (
        "line-2: QUARANTINED" in status.stderr and "edgeops labels release line-2" in status.stderr
    )

    deployed = sh([EDGEOPS, "deploy", "--all", "--reason", "retrain"], ws, check=False)
    assert deployed.returncode in (0, 3), deployed.stderr
    gate = json.loads((ws / "reports/gate.json").read_text())
    assert gate["champion"]["version"] == v1
    assert gate["champion"]["metrics"] == first_gate["challenger"]["metrics"]
    assert gate["sets"]["production"]["rows"] > 0  # the field's held-out rows are judged

    # no device runs a model worse than v1 on rows nobody saw
    clean = clean_holdout()
    targets = [Target(n, a.url, token_file=str(plant["token"])) for n, a in agents.items()]
    pub = load_public_key(plant["pub"])
    base = figures(fetch_bundle(targets, v1, pub, tmp_path / "v1"), clean)
    for t in targets:
        active = AgentClient(t).status()["active"]["version"]
        got = figures(fetch_bundle([t], active, pub, tmp_path / t.name), clean)
        assert got["roc_auc"] >= base["roc_auc"] - 0.005, (t.name, got, base)
        assert got["heat_alarmed"] >= base["heat_alarmed"] - 0.05, (t.name, got, base)

    # control: the same labels with the guards off make a worse model (the attack is real)
    set_params(
        ws, **{"ingest.production.quarantine.gap": 1.0, "ingest.production.max_target_share": 1.0}
    )
    sh([DVC, "repro"], ws)
    poisoned_model = figures(verify_local(ws / "models/bundle", pub), clean)
    print(f"clean holdout: v1 {base}; guarded fleet {got}; unguarded retrain {poisoned_model}")
    assert poisoned_model["heat_alarmed"] < base["heat_alarmed"] - 0.3, (poisoned_model, base)
    assert _md5_of(ws, "data/prepared/test.parquet") == holdout_md5  # still no field row in it


def _md5_of(ws: Path, out: str) -> str:
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"]["split"]["outs"] if o["path"] == out)


def _parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)
