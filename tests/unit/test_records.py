"""Tamper-evident records: every edit, deletion or reordering of an audit entry or a registry
record is detected and named; gate, deploy, rollback, status and doctor refuse to act on it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from edgeops.deploy.records import EXIT_BROKEN, RecordsBroken, Seal
from edgeops.deploy.registry import AuditLog, Registry
from edgeops.edge.bundle import load_public_key
from tests.conftest import BIN, tool_env


@pytest.fixture
def records(tmp_path: Path, signing_keys: Path) -> tuple[Registry, AuditLog, Seal]:
    """A registry with two versions and an audit log of five entries, signed."""
    seal = Seal(
        tmp_path / "audit.jsonl",
        tmp_path / "registry.json",
        load_public_key(signing_keys / "signing.pub"),
    )
    registry, audit = Registry(tmp_path / "registry.json", seal), AuditLog(seal.audit, seal)
    for v in ("1.0.0", "2.0.0"):
        manifest = {"model": {"name": "m", "version": v}, "metrics": {"roc_auc": 0.9}}
        registry.register(manifest, "ab" * 32, "anna")
        registry.set_stage("m", v, "production", "anna")
        registry.save()
        audit.append("gate", model="m", version=v, promote=True, by="anna")
        audit.append("deploy", model="m", version=v, targets=["line-1"], by="anna")
    audit.append("rollback", model="m", version="1.0.0", target="line-1", by="Łukasz Dvořák")
    return registry, audit, seal


def broken(seal: Seal) -> str:
    with pytest.raises(RecordsBroken) as info:
        seal.verify()
    assert info.value.exit_code == EXIT_BROKEN
    return info.value.problem


def lines(seal: Seal) -> list[str]:
    return seal.audit.read_text().splitlines()


def write_lines(seal: Seal, items: list[str]) -> None:
    seal.audit.write_text("".join(line + "\n" for line in items))


def test_signed_records_verify_and_every_entry_links_to_the_one_before(records) -> None:
    _, audit, seal = records
    state = seal.verify()
    assert state.signed and state.entries == 5
    entries = audit.read()
    assert entries[-1]["by"] == "Łukasz Dvořák" and all("prev" in e for e in entries)
    assert len({e["prev"] for e in entries}) == 5


@pytest.mark.parametrize("i", [0, 2, 4])
def test_an_edited_audit_entry_is_named(records, i: int) -> None:
    _, _, seal = records
    items = lines(seal)
    entry = json.loads(items[i])
    entry["by"] = "mallory"
    items[i] = json.dumps(entry, sort_keys=True)
    write_lines(seal, items)
    problem = broken(seal)
    named = i + 2 if i < 4 else 5  # the entry after it no longer follows; the last: the head
    assert f"entry {named} (" in problem, problem


def test_a_removed_audit_entry_is_named(records) -> None:
    _, _, seal = records
    items = lines(seal)
    write_lines(seal, items[:1] + items[2:])  # the second one (a deploy line) removed
    assert "entry 2 (deploy" in broken(seal) or "entry 2 (gate" in broken(seal)
    write_lines(seal, items[:-1])  # the last one removed
    assert "entries after entry 4" in broken(seal) and "were removed" in broken(seal)


def test_reordered_audit_entries_are_named(records) -> None:
    _, _, seal = records
    items = lines(seal)
    items[1], items[2] = items[2], items[1]
    write_lines(seal, items)
    assert "does not follow the entry before it" in broken(seal)


def test_an_entry_appended_by_hand_is_not_covered_by_the_signature(records) -> None:
    _, audit, seal = records
    unsealed = AuditLog(audit.path)  # chains correctly, but cannot sign
    unsealed.append("approval_granted", version="2.0.0", approver="nobody")
    assert "entry 6 (approval_granted" in broken(seal) and "not covered" in broken(seal)


def test_an_audit_log_deleted_or_its_seal_deleted_is_named(records) -> None:
    _, _, seal = records
    seal.path.unlink()
    assert "audit.seal is missing" in broken(seal)
    seal.audit.unlink()
    assert "audit.seal is missing" in broken(seal)  # the registry is still there


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r["models"]["m"]["versions"]["2.0.0"]["stage_history"][0].update(by="mallory"),
        lambda r: r["models"]["m"]["versions"]["1.0.0"]["metrics"].update(roc_auc=0.99),
        lambda r: r["models"]["m"]["versions"]["2.0.0"].update(bundle_sha256="00" * 32),
        lambda r: r["models"]["m"]["versions"].pop("1.0.0"),
    ],
    ids=["actor", "metrics", "bundle_sha256", "version removed"],
)
def test_a_consistent_edit_of_the_registry_is_detected(records, edit) -> None:
    registry, _, seal = records
    data = json.loads(registry.path.read_text())
    edit(data)
    registry.path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert "registry.json was changed outside edgeops" in broken(seal)


def test_a_deleted_registry_is_detected(records) -> None:
    registry, _, seal = records
    registry.path.unlink()
    assert "registry.json is missing" in broken(seal)


def test_a_seal_signed_by_another_key_or_edited_is_refused(records, tmp_path: Path) -> None:
    from edgeops.keys import init_keys

    _, _, seal = records
    doc = json.loads(seal.path.read_text())
    doc["body"]["entries"] = 4
    seal.path.write_text(json.dumps(doc))
    assert "is not signed by the signing key" in broken(seal)
    other, _ = init_keys(tmp_path / "other-keys")
    forger = Seal(seal.audit, seal.registry, seal.public_key, other)
    refused = pytest.raises(Exception, match="does not belong to the trusted public key")
    with refused, forger.writing(reanchor=True):
        pass


def test_a_broken_chain_is_never_signed_over(records) -> None:
    """A write on broken records refuses: the tampering is not laundered into a signed state."""
    registry, audit, seal = records
    items = lines(seal)
    write_lines(seal, items[:2] + items[3:])
    before = seal.path.read_bytes()
    with pytest.raises(RecordsBroken):
        audit.append("gate", model="m", version="3.0.0")
    with pytest.raises(RecordsBroken):
        registry.set_stage("m", "1.0.0", "archived", "x")
        registry.save()
    assert seal.path.read_bytes() == before and len(lines(seal)) == 4


def test_a_person_seals_reviewed_records_and_the_chain_goes_on(records) -> None:
    registry, audit, seal = records
    items = lines(seal)
    write_lines(seal, items[:2] + items[3:])  # say: an entry removed, restored from a backup
    problem = broken(seal)
    with seal.writing(reanchor=True) as state:
        audit.append_at(state.head, "records_sealed", reason="reviewed", found=problem)
    assert seal.verify().entries == 5
    audit.append("gate", model="m", version="3.0.0")
    assert seal.verify().entries == 6
    # an edit within what was taken as it was is still detected
    items = lines(seal)
    items[0] = items[0].replace("anna", "eve")
    write_lines(seal, items)
    assert "the first 4 entries are not those the seal took" in broken(seal)


def test_the_commands_refuse_to_act_on_broken_records(tmp_path: Path, signing_keys: Path) -> None:
    """gate, deploy, rollback and doctor refuse (exit 12, the entry named) before they contact
    any device (the targets here are closed ports); status names it too; audit seal mends it."""
    from tests.agent_process import free_port
    from tests.conftest import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy/targets.yaml").write_text(
        yaml.safe_dump(
            {
                "public_key": str(signing_keys / "signing.pub"),
                "targets": [
                    {"name": "line-1", "url": f"http://127.0.0.1:{free_port()}", "token_env": "X"}
                ],
            }
        )
    )
    seal = Seal(
        tmp_path / "deploy/audit.jsonl",
        tmp_path / "deploy/registry.json",
        load_public_key(signing_keys / "signing.pub"),
    )
    audit = AuditLog(seal.audit, seal)
    audit.append("gate", model="m", version="1.0.0", by="anna")
    audit.append("deploy", model="m", version="1.0.0", by="anna")
    items = lines(seal)
    items[0] = items[0].replace("anna", "eve")
    write_lines(seal, items)

    def edgeops(*args: str) -> subprocess.CompletedProcess:
        env = {**tool_env(), "X": "token"}
        return subprocess.run(
            [str(BIN / "edgeops"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for args in (
        ("gate",),
        ("deploy", "--all"),
        ("rollback", "--target", "line-1"),
        ("audit", "verify"),
    ):
        proc = edgeops(*args)
        assert proc.returncode == EXIT_BROKEN, (args, proc.stderr)
        assert "entry 2 (deploy at" in proc.stderr and "unreachable" not in proc.stderr, proc.stderr
        assert "edgeops audit seal" in proc.stderr
    status = edgeops("status")
    assert status.returncode == EXIT_BROKEN and "do not verify" in status.stderr
    doctor = edgeops("doctor", "--json")
    found = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "deploy records"]
    assert found[0]["status"] == "FAIL" and "entry 2 (deploy" in found[0]["detail"], found
    sealed = edgeops("audit", "seal", "--reason", "entry 1 restored from the paper log")
    assert sealed.returncode == 0, sealed.stderr
    assert edgeops("audit", "verify").returncode == 0
    last = AuditLog(seal.audit).read()[-1]
    assert last["event"] == "records_sealed" and "entry 2 (deploy" in last["found"]
