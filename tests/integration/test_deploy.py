"""Deploying to two real agents on loopback: gate, staged rollout, rollback, registry, audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeops.deploy import operations
from edgeops.deploy.gate import EXIT_REJECTED
from edgeops.deploy.rollout import EXIT_ROLLOUT_FAILED
from edgeops.errors import EdgeopsError
from tests.agent_process import DEPLOY_TOKEN, AgentProcess
from tests.bundles import REPO, make_bundle, plant_split

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory, signing_keys: Path):
    """Two agents, a targets file, a registry, an audit log, four bundles."""
    root = tmp_path_factory.mktemp("fleet")
    (root / "deploy.token").write_text(DEPLOY_TOKEN + "\n")
    a = AgentProcess(
        root / "state-a", signing_keys / "signing.pub", {"probation_requests": 5}
    ).start()
    b = AgentProcess(
        root / "state-b", signing_keys / "signing.pub", {"probation_requests": 5}
    ).start()
    (root / "targets.yaml").write_text(
        f"public_key: {signing_keys / 'signing.pub'}\n"
        "targets:\n"
        f"  - {{name: line-b, url: '{b.url}', site: plant-1, token_file: '{root / 'deploy.token'}'}}\n"
        f"  - {{name: line-a, url: '{a.url}', site: plant-1, canary: true, token_file: '{root / 'deploy.token'}'}}\n"
    )
    _, test_df = plant_split()
    test_df.to_parquet(root / "test.parquet")
    bundles = {
        "v1": make_bundle(root / "v1", signing_keys, "1.0.0", model="logistic_regression"),
        "v2": make_bundle(root / "v2", signing_keys, "2.0.0", model="hist_gradient_boosting"),
        "v3": make_bundle(
            root / "v3", signing_keys, "3.0.0", model="logistic_regression", shuffle_labels=True
        ),
        "v4": make_bundle(root / "v4", signing_keys, "4.0.0", model="hist_gradient_boosting"),
    }
    yield {"root": root, "a": a, "b": b, "bundles": bundles}
    a.stop()
    b.stop()


def context(world) -> operations.DeployContext:
    root = world["root"]
    ctx = operations.DeployContext.load(
        REPO / "params.yaml",
        targets=root / "targets.yaml",
        registry=root / "registry.json",
        audit=root / "audit.jsonl",
        test_data=root / "test.parquet",
    )
    ctx.gate_report = root / "gate.json"
    ctx.cfg.update(watch_seconds=0.5, floors={"roc_auc": 0.6})
    return ctx


def actives(ctx) -> dict[str, str | None]:
    return {r["target"]: r["active"] for r in operations.status(ctx)}


def test_the_whole_story(world) -> None:
    ctx = context(world)
    b = world["bundles"]
    messages: list[str] = []

    # 1. v1 to both agents (first deployment: floors only), canary first
    operations.deploy(ctx, b["v1"], None, reason="first", log=messages.append)
    assert actives(ctx) == {"line-a": "1.0.0", "line-b": "1.0.0"}
    uploads = [m for m in messages if "uploading" in m]
    assert "line-a (canary)" in uploads[0] and "line-b" in uploads[1]
    assert json.loads((world["root"] / "gate.json").read_text())["reason"].startswith(
        "first deployment"
    )

    # 2. a better v2 passes the gate and lands on both
    operations.deploy(ctx, b["v2"], None, reason="scheduled")
    assert actives(ctx) == {"line-a": "2.0.0", "line-b": "2.0.0"}
    gate = json.loads((world["root"] / "gate.json").read_text())
    assert gate["promote"] and gate["champion"]["version"] == "1.0.0"
    assert gate["challenger"]["metrics"]["roc_auc"] >= gate["champion"]["metrics"]["roc_auc"]

    # 3. a worse v3 is refused by the gate: a normal outcome with its own exit code
    with pytest.raises(EdgeopsError) as refused:
        operations.deploy(ctx, b["v3"], None, reason="drift")
    assert refused.value.exit_code == EXIT_REJECTED and "gate refused 3.0.0" in str(refused.value)
    assert actives(ctx) == {"line-a": "2.0.0", "line-b": "2.0.0"}

    # status shows it all
    rows = {r["target"]: r for r in operations.status(ctx)}
    assert rows["line-a"]["health"] == "ready" and rows["line-a"]["stage"] == "production"
    assert rows["line-b"]["previous"] == "1.0.0"
    table = operations.format_table(list(rows.values()))
    assert "line-a" in table and "2.0.0" in table and "production" in table

    # rollback restores the previous version on one target and records it; then forward again
    r = operations.rollback(ctx, "line-a", None, reason="operator check")
    assert r == {"target": "line-a", "from": "2.0.0", "to": "1.0.0"}
    assert actives(ctx)["line-a"] == "1.0.0"
    operations.rollback(ctx, "line-a", "2.0.0", reason="back to production")
    assert actives(ctx)["line-a"] == "2.0.0"

    # 4. the second agent dies mid-rollout: the canary is rolled back, nothing reaches production
    def kill_b_after_canary(message: str) -> None:
        messages.append(message)
        if message.startswith("  line-a: healthy on 4.0.0"):
            world["b"].kill()

    with pytest.raises(EdgeopsError) as failed:
        operations.deploy(ctx, b["v4"], None, reason="scheduled", log=kill_b_after_canary)
    assert failed.value.exit_code == EXIT_ROLLOUT_FAILED
    assert "line-b" in str(failed.value) and "unreachable" in str(failed.value)
    assert operations.status(ctx, ["line-a"])[0]["active"] == "2.0.0"  # the canary came back
    world["b"].start()  # restarts on what it had: 2.0.0
    assert actives(ctx) == {"line-a": "2.0.0", "line-b": "2.0.0"}

    # the registry and the audit log tell the whole story
    reg = json.loads((world["root"] / "registry.json").read_text())["models"]["plant-failure"]
    stages = {v: e["stage"] for v, e in reg["versions"].items()}
    assert stages == {
        "1.0.0": "archived",
        "2.0.0": "production",
        "3.0.0": "candidate",
        "4.0.0": "candidate",
    }
    assert [s["stage"] for s in reg["versions"]["4.0.0"]["stage_history"]] == [
        "candidate",
        "staging",
        "candidate",
    ]
    assert reg["versions"]["2.0.0"]["data_sha256"] and reg["versions"]["2.0.0"]["bundle_sha256"]
    deployments = [(d["action"], d["target"], d["version"]) for d in reg["deployments"]]
    assert deployments == [
        ("deploy", "line-a", "1.0.0"),
        ("deploy", "line-b", "1.0.0"),
        ("deploy", "line-a", "2.0.0"),
        ("deploy", "line-b", "2.0.0"),
        ("rollback", "line-a", "1.0.0"),
        ("rollback", "line-a", "2.0.0"),
        ("rollback", "line-a", "2.0.0"),  # the failed 4.0.0 rollout undone on the canary
    ]
    assert all(d["by"] for d in reg["deployments"])
    audit = [json.loads(x) for x in (world["root"] / "audit.jsonl").read_text().splitlines()]
    story = [(e["event"], e.get("version")) for e in audit]
    assert story == [
        ("gate", "1.0.0"),
        ("deploy", "1.0.0"),
        ("gate", "2.0.0"),
        ("deploy", "2.0.0"),
        ("gate", "3.0.0"),
        ("rollback", "1.0.0"),
        ("rollback", "2.0.0"),
        ("gate", "4.0.0"),
        ("rollback", "2.0.0"),
        ("rollout_failed", "4.0.0"),
    ]
    assert [e["promote"] for e in audit if e["event"] == "gate"] == [True, True, False, True]
    assert audit[-1]["target"] == "line-b" and "unreachable" in audit[-1]["error"]


def test_bad_input_changes_nothing(world, tmp_path) -> None:
    ctx = context(world)
    registry_before = (world["root"] / "registry.json").read_bytes()

    with pytest.raises(EdgeopsError, match="unknown target"):
        operations.deploy(ctx, world["bundles"]["v2"], ["line-z"])

    unsigned = tmp_path / "unsigned"
    unsigned.mkdir()
    for f in world["bundles"]["v4"].iterdir():
        if f.name != "manifest.sig":
            (unsigned / f.name).write_bytes(f.read_bytes())
    with pytest.raises(EdgeopsError, match="missing_signature"):
        operations.deploy(ctx, unsigned, None)

    (world["root"] / "bad.token").write_text("not-the-token\n")
    targets = (world["root"] / "targets.yaml").read_text().replace("deploy.token", "bad.token")
    (tmp_path / "targets.yaml").write_text(targets)
    bad = operations.DeployContext.load(
        REPO / "params.yaml",
        targets=tmp_path / "targets.yaml",
        registry=world["root"] / "registry.json",
        audit=world["root"] / "audit.jsonl",
        test_data=world["root"] / "test.parquet",
    )
    with pytest.raises(EdgeopsError, match="401.*deploy token"):
        operations.deploy(bad, world["bundles"]["v4"], None)
    assert (world["root"] / "registry.json").read_bytes() == registry_before

    broken = tmp_path / "registry.json"
    reg = json.loads(registry_before)
    reg["models"]["plant-failure"]["versions"]["1.0.0"]["stage"] = "production"  # two in production
    broken.write_text(json.dumps(reg))
    with pytest.raises(EdgeopsError, match="invalid state.*2 production versions"):
        operations.DeployContext.load(
            REPO / "params.yaml",
            targets=world["root"] / "targets.yaml",
            registry=broken,
            audit=tmp_path / "audit.jsonl",
        )
    assert actives(ctx) == {"line-a": "2.0.0", "line-b": "2.0.0"}


def test_records_deleted_whole_leave_no_champion_and_the_gate_refuses(world, tmp_path) -> None:
    """Registry, audit log and seal deleted together verify as "no records yet"; but the agents
    run a model, so the champion is unknown: the gate refuses rather than judge on the baseline
    alone, and says how to go on. Nothing changes on a device."""
    ctx = operations.DeployContext.load(
        REPO / "params.yaml",
        targets=world["root"] / "targets.yaml",
        registry=tmp_path / "registry.json",
        audit=tmp_path / "audit.jsonl",
        test_data=world["root"] / "test.parquet",
    )
    ctx.gate_report = tmp_path / "gate.json"
    before = actives(ctx)
    assert all(before.values())
    report = operations.gate(ctx, world["bundles"]["v4"], ctx.targets.select(None))
    assert not report["promote"] and "the champion is unknown" in report["reason"]
    assert "restore deploy/ from git" in report["reason"]
    with pytest.raises(EdgeopsError, match="the champion is unknown"):
        operations.deploy(ctx, world["bundles"]["v4"], None)
    assert actives(ctx) == before
    # the version they run is one the registry knows, never promoted (a first rollout that
    # never finished): no champion yet, the first deployment's rules (baseline and floors)
    for v in set(before.values()):
        manifest = json.loads((world["bundles"][f"v{v[0]}"] / "manifest.json").read_text())
        ctx.registry.register(manifest, "ab" * 32, "test")
    ctx.registry.save()
    report = operations.gate(ctx, world["bundles"]["v4"], ctx.targets.select(None))
    assert report["champion"]["version"] is None and report["reason"].startswith("first deployment")


def test_an_approval_counts_only_for_an_open_canary(world, tmp_path) -> None:
    """approval_granted after the canary was withdrawn (or rejected, timed out) opens nothing;
    a new canary needs a new approval; and the version must be in staging."""
    ctx = operations.DeployContext.load(
        REPO / "params.yaml",
        targets=world["root"] / "targets.yaml",
        registry=tmp_path / "registry.json",
        audit=tmp_path / "audit.jsonl",
    )
    manifest = json.loads((world["bundles"]["v4"] / "manifest.json").read_text())
    ctx.registry.register(manifest, "ab" * 32, "test")
    ctx.registry.set_stage("plant-failure", "4.0.0", "staging", "test")
    ctx.registry.save()
    log = ctx.audit

    def granted() -> bool:
        return operations.approval_of(ctx, "plant-failure", "4.0.0") is not None

    log.append("canary", model="plant-failure", version="4.0.0")
    assert not granted()
    log.append("approval_granted", model="plant-failure", version="4.0.0", approver="a")
    assert granted()
    log.append("canary_withdrawn", model="plant-failure", version="4.0.0", target="line-a")
    assert not granted()
    log.append("approval_granted", model="plant-failure", version="4.0.0", approver="late")
    assert not granted()  # an answer to a canary that is gone
    log.append("canary", model="plant-failure", version="4.0.0")
    log.append("approval_granted", model="plant-failure", version="4.0.0", approver="b")
    assert granted()
    ctx.registry.set_stage("plant-failure", "4.0.0", "candidate", "test")
    ctx.registry.save()
    assert not granted()  # withdrawn in the registry: not in staging any more
