"""The agent's deploy path against hostile or unlucky inputs, on a real agent on loopback.

Downgrade protection (an older, validly signed bundle is refused; a rollback stays allowed), a
damaged ``state.json`` rebuilt from the verified versions on disk, uploads streamed to disk one at
a time, archive bombs refused from their first header, malformed signed manifests answered 422,
and a model too slow to verify stopped by its time limit. Memory is the agent process's own peak
(``VmHWM`` after a reset through ``/proc/PID/clear_refs``).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, AgentProcess, Agents
from tests.bundles import make_bundle
from tests.integration.test_agent import (
    DEPLOY,
    active_version,
    client,
    deploy,
    error_fields,
    error_of,
    manifest_of,
    predict_golden,
    resign,
    snapshot,
    status,
    upload,
)

pytestmark = pytest.mark.integration

OLD, MID, NEW = "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z", "2026-09-01T00:00:00Z"
MB = 1 << 20


# ---- bundles and helpers ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(tmp_path_factory, signing_keys: Path) -> Callable[[str, str], Path]:
    """``make(version, created_at)``: a signed bundle of one trained model (built once)."""
    root = tmp_path_factory.mktemp("hardening-bundles")
    base = make_bundle(root / "base", signing_keys, "0.0.1")
    made: dict[tuple[str, str], Path] = {}

    def make(version: str, created_at: str) -> Path:
        if (version, created_at) not in made:
            out = Path(shutil.copytree(base, root / f"{version}-{created_at[:10]}"))
            resign(
                out,
                signing_keys,
                lambda m: m["model"].update(version=version, created_at=created_at),
            )
            made[version, created_at] = out
        return made[version, created_at]

    return make


@pytest.fixture(scope="module")
def target(module_agents: Agents, bundles) -> AgentProcess:
    """An agent serving 1.0.0, for the refusals that must change nothing."""
    agent = module_agents.start({"max_bundle_bytes": 64 * MB})
    with client(agent) as c:
        deploy(c, bundles("1.0.0", MID))
    return agent


def memory(agent: AgentProcess) -> dict[str, int]:
    """The agent process's resident and peak resident memory, in MB."""
    fields = {}
    for line in Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024
    return fields


def reset_peak(agent: AgentProcess) -> int:
    """Reset the agent's peak-memory mark (VmHWM) to its current RSS; return that RSS in MB."""
    Path(f"/proc/{agent.proc.pid}/clear_refs").write_text("5")
    return memory(agent)["VmRSS"]


def assert_unchanged(
    c: httpx.Client, agent: AgentProcess, before: dict[str, str], serving: Path
) -> None:
    """Nothing on the device changed, nothing is left in incoming/, ``serving`` still serves."""
    assert snapshot(agent.state_dir) == before
    assert list((agent.state_dir / "incoming").iterdir()) == []
    predict_golden(c, serving)


def log_lines_since(agent: AgentProcess, offset: int) -> list[str]:
    return agent.log_path.read_text(errors="replace")[offset:].splitlines()


# ---- 1. downgrade protection -----------------------------------------------------------------
def test_an_older_signed_bundle_is_refused_but_a_rollback_is_allowed(agents: Agents, bundles):
    old, mid, same_time, new = (
        bundles("1.0.0", OLD),
        bundles("2.0.0", MID),
        bundles("2.1.0", MID),
        bundles("3.0.0", NEW),
    )
    agent = agents.start({"keep_versions": 2, "probation_requests": 1})
    with client(agent) as c:
        deploy(c, old)
        deploy(c, mid)
        before = snapshot(agent.state_dir)
        r = upload(c, tar_bundle(old))  # on the device, validly signed, older: refused
        assert r.status_code == 409, r.text
        err = error_of(r)
        assert err["code"] == "downgrade"
        assert "1.0.0" in err["message"] and "2.0.0" in err["message"]
        assert "POST /v1/rollback / edgeops rollback" in err["message"]
        assert {"model.created_at"} == error_fields(r)
        assert snapshot(agent.state_dir) == before and active_version(c) == "2.0.0"

        # the same created_at is no downgrade (bundles of one build run share it)
        assert deploy(c, same_time)["version"] == "2.1.0"
        assert status(c)["newest_accepted"] == {"version": "2.0.0", "created_at": MID}

        deploy(c, new)  # 3.0.0 raises the mark; keep_versions 2 pruned 1.0.0 and 2.0.0
        assert set(status(c)["versions"]) == {"2.1.0", "3.0.0"}

        # going back on purpose: a rollback with the deploy token, recorded in the history
        r = c.post("/v1/rollback", json={"version": "2.1.0", "reason": "bad 3.0.0"}, headers=DEPLOY)
        assert r.status_code == 200 and r.json()["downgrade"] is True, r.text
        last = status(c)["history"][-1]
        assert (last["event"], last["version"], last["downgrade"]) == ("rollback", "2.1.0", True)
        assert last["reason"] == "bad 3.0.0"
        predict_golden(c, same_time)

    # ... and the mark survives the pruning and a restart: 1.0.0 and 2.0.0 are gone from the
    # device, their uploads are still downgrades below 3.0.0
    agent.stop()
    agent.start()
    with client(agent) as c:
        assert status(c)["newest_accepted"] == {"version": "3.0.0", "created_at": NEW}
        for bundle, version in ((old, "1.0.0"), (mid, "2.0.0")):
            r = upload(c, tar_bundle(bundle))
            assert r.status_code == 409 and error_of(r)["code"] == "downgrade", r.text
            assert version in error_of(r)["message"] and "3.0.0" in error_of(r)["message"]
        assert active_version(c) == "2.1.0"
        assert list((agent.state_dir / "incoming").iterdir()) == []


# ---- 2. a damaged state.json is rebuilt from the verified versions on disk -------------------
DAMAGES: dict[str, Callable[[Path], None]] = {
    "cut_short": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "not_json": lambda p: p.write_bytes(b"\x00\x01garbage after a power cut\n"),
    "wrong_shape": lambda p: p.write_text(json.dumps(["active", "3.0.0"])),
    "wrong_type": lambda p: p.write_text(json.dumps({"active": 3, "history": {}})),
    "missing": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_state_is_rebuilt_from_the_newest_verified_version(
    agents: Agents, bundles, damage: str
):
    old, mid, new = bundles("1.0.0", OLD), bundles("2.0.0", MID), bundles("3.0.0", NEW)
    agent = agents.start()
    with client(agent) as c:
        for b in (old, mid, new):
            deploy(c, b)
        # rolled back: the history said 1.0.0, the rebuild can only go by created_at
        assert c.post("/v1/rollback", json={"version": "1.0.0"}, headers=DEPLOY).status_code == 200
    agent.stop()
    state_path = agent.state_dir / "state.json"
    damaged_bytes = state_path.read_bytes() if damage != "missing" else None
    DAMAGES[damage](state_path)
    if damaged_bytes is not None:
        damaged_bytes = state_path.read_bytes()
    # a version whose file no longer verifies is left out (and named)
    broken = agent.state_dir / "versions" / "2.0.0" / "model.onnx"
    broken.write_bytes(broken.read_bytes()[:-1] + b"\x00")
    offset = agent.log_path.stat().st_size
    agent.start()
    with client(agent) as c:
        st = status(c)
        assert st["active"]["version"] == "3.0.0" and st["previous"] == "1.0.0", st
        assert st["problem"] is None
        assert st["newest_accepted"] == {"version": "3.0.0", "created_at": NEW}
        (event,) = st["history"]
        assert event["event"] == "state_rebuilt" and event["by"] == "agent"
        assert "2.0.0 (" in event["reason"] and "left out" in event["reason"]
        predict_golden(c, new)
        r = upload(c, tar_bundle(mid))
        assert r.status_code == 409 and error_of(r)["code"] == "downgrade", r.text
    aside = sorted(agent.state_dir.glob("state.json.damaged-*"))
    if damaged_bytes is None:
        assert aside == []
    else:
        assert len(aside) == 1 and aside[0].read_bytes() == damaged_bytes
        assert aside[0].name in event["reason"]
    lines = [ln for ln in log_lines_since(agent, offset) if "STATE REBUILT" in ln]
    assert len(lines) == 1 and "active 3.0.0" in lines[0], log_lines_since(agent, offset)
    assert "WARNING" in lines[0]


def test_ambiguous_versions_serve_nothing_and_say_how_to_choose(agents: Agents, bundles):
    a, b = bundles("2.0.0", MID), bundles("2.1.0", MID)  # the same created_at
    agent = agents.start()
    with client(agent) as c:
        deploy(c, a)
        deploy(c, b)
    agent.stop()
    (agent.state_dir / "state.json").write_text('{"active": "2.1.0", "prev')
    offset = agent.log_path.stat().st_size
    agent.start()
    with client(agent) as c:
        st = status(c)
        assert st["active"] is None
        problem = st["problem"]
        assert "2.0.0" in problem and "2.1.0" in problem and MID in problem, problem
        assert 'POST /v1/rollback {"version": V}' in problem and "edgeops rollback" in problem
        assert c.get("/readyz").status_code == 503
        assert any(
            "NOTHING ACTIVATED" in ln and "ERROR" in ln for ln in log_lines_since(agent, offset)
        )
        assert len(list(agent.state_dir.glob("state.json.damaged-*"))) == 1

    # still so after a restart (the rebuilt state says no active version, loudly)
    agent.stop()
    agent.start()
    with client(agent) as c:
        assert status(c)["active"] is None and "2.1.0" in status(c)["problem"]
        # the operator chooses
        r = c.post("/v1/rollback", json={"version": "2.1.0", "reason": "chosen"}, headers=DEPLOY)
        assert r.status_code == 200, r.text
        assert status(c)["problem"] is None
        predict_golden(c, b)
    agent.stop()
    agent.start()
    with client(agent) as c:
        assert active_version(c) == "2.1.0"


# ---- 3. uploads: one at a time, streamed to disk, incoming/ always emptied -------------------
def slow_body(total: int, seconds: float, chunk: int = MB) -> Iterator[bytes]:
    block = b"x" * chunk  # not an archive: refused after it arrived whole
    for _ in range(total // chunk):
        time.sleep(seconds * chunk / total)
        yield block


def fast_body(total: int, chunk: int = MB) -> Iterator[bytes]:
    block = b"x" * chunk
    for _ in range(total // chunk):
        yield block


def test_concurrent_uploads_one_at_a_time_in_bounded_memory(agents: Agents, bundles):
    size = 60 * MB
    agent = agents.start({"max_bundle_bytes": 64 * MB})
    incoming = agent.state_dir / "incoming"
    v1 = bundles("1.0.0", MID)
    with client(agent) as c:
        deploy(c, v1)
    rss = reset_peak(agent)
    results: dict[str, Any] = {}

    def send(name: str, body: Iterable[bytes]) -> None:
        with httpx.Client(base_url=agent.url, timeout=60, trust_env=False) as uc:
            headers = {**DEPLOY, "Content-Type": "application/gzip", "Content-Length": str(size)}
            start = time.monotonic()
            results[name] = (
                uc.post("/v1/bundles", content=body, headers=headers),
                time.monotonic() - start,
            )

    first = threading.Thread(target=send, args=("first", slow_body(size, 4.0)))
    first.start()
    deadline = time.monotonic() + 10
    while not any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    others = [threading.Thread(target=send, args=(n, fast_body(size))) for n in ("second", "third")]
    for t in others:
        t.start()
    seen = []
    while first.is_alive():
        seen.append(sorted(p.name for p in incoming.iterdir()))
        time.sleep(0.05)
    for t in (first, *others):
        t.join(timeout=60)
    for name in ("second", "third"):
        r, seconds = results[name]
        assert r.status_code == 409 and error_of(r)["code"] == "deploy_in_progress", r.text
        assert seconds < 3.0, seconds  # refused at once, its body never read
    r, _ = results["first"]
    assert r.status_code == 400 and error_of(r)["code"] == "bad_archive", r.text
    # never more than one upload on disk (its folder + its body)
    assert all(len(names) <= 2 for names in seen), seen
    peak = memory(agent)["VmHWM"]
    print(f"concurrent uploads: 3 x {size // MB} MB, agent RSS {rss} MB, peak {peak} MB")
    assert peak - rss < 40, (rss, peak)
    assert list(incoming.iterdir()) == []
    with client(agent) as c:
        assert active_version(c) == "1.0.0"
        predict_golden(c, v1)


def test_incoming_is_emptied_on_every_way_out(agents: Agents, bundles, signing_keys: Path):
    agent = agents.start({"max_bundle_bytes": 8 * MB})
    incoming = agent.state_dir / "incoming"
    v1, v2 = bundles("1.0.0", MID), bundles("2.0.0", NEW)
    with client(agent) as c:
        deploy(c, v1)
        # over the cap while streaming (chunked: no Content-Length to refuse up front)
        r = c.post(
            "/v1/bundles",
            content=fast_body(12 * MB),
            headers={**DEPLOY, "Content-Type": "application/gzip"},
        )
        assert r.status_code == 413 and error_of(r)["code"] == "body_too_large", r.text
        assert list(incoming.iterdir()) == []
        # refused after unpacking (409 already active)
        r = upload(c, tar_bundle(v1))
        assert r.status_code == 409 and error_of(r)["code"] == "already_active", r.text
        assert list(incoming.iterdir()) == []

    # the client goes away in the middle of its body
    with socket.create_connection(("127.0.0.1", agent.port)) as s:
        s.sendall(
            b"POST /v1/bundles HTTP/1.1\r\nHost: x\r\nContent-Type: application/gzip\r\n"
            b"Authorization: Bearer "
            + DEPLOY_TOKEN.encode()
            + b"\r\nContent-Length: 6000000\r\n\r\n"
            + b"\x1f\x8b"
            + b"\x00" * 2_000_000
        )
        deadline = time.monotonic() + 10
        while not any(incoming.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
    deadline = time.monotonic() + 10
    while any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(incoming.iterdir()) == []
    with client(agent) as c:  # the deploy lock was released too
        assert deploy(c, v2)["version"] == "2.0.0"
        assert list(incoming.iterdir()) == []
    assert "Traceback" not in agent.log_path.read_text(errors="replace")


# ---- 4. the tar reader: bombs refused from their first header, listed files only -------------
def gz(parts: Iterable[bytes]) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    return b"".join(c.compress(p) for p in parts) + c.flush()


def header(name: str, kind: bytes, size: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(tarfile.USTAR_FORMAT)


def huge_header(kind: bytes, size: int = 400 * MB) -> bytes:
    def parts() -> Iterator[bytes]:
        yield header("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax", kind, size)
        for _ in range(size // (8 * MB)):
            yield b"a" * (8 * MB)
        yield b"\0" * 1024

    return gz(parts())


def many_dirs(n: int = 300_000) -> bytes:
    def parts() -> Iterator[bytes]:
        for start in range(0, n, 10_000):
            yield b"".join(
                header(f"d{i:06d}/", tarfile.DIRTYPE) for i in range(start, start + 10_000)
            )
        yield b"\0" * 1024

    return gz(parts())


def archive(
    files: list[tuple[str, bytes]],
    extra: Callable[[tarfile.TarFile], None] | None = None,
    fmt: int = tarfile.PAX_FORMAT,
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if extra:
            extra(tf)
    return buf.getvalue()


def files_of(bundle: Path) -> list[tuple[str, bytes]]:
    return [(f.name, f.read_bytes()) for f in sorted(bundle.iterdir())]


@pytest.fixture(scope="module")
def candidate(bundles) -> Path:
    return bundles("5.0.0", NEW)


def _hardlink(tf: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("copy.onnx")
    info.type, info.linkname = tarfile.LNKTYPE, "model.onnx"
    tf.addfile(info)


ARCHIVES: dict[str, tuple[Callable[[Path], bytes], int, str]] = {
    # case: (body from the candidate bundle, status, code)
    "longname_header_400mb": (lambda b: huge_header(tarfile.GNUTYPE_LONGNAME), 400, "bad_archive"),
    "pax_header_400mb": (lambda b: huge_header(tarfile.XHDTYPE), 400, "bad_archive"),
    "300k_directories": (lambda b: many_dirs(), 400, "bad_archive"),
    "name_over_255": (lambda b: archive([*files_of(b), ("x" * 300, b"1")]), 400, "bad_archive"),
    "17_files": (lambda b: archive([(f"f{i}", b"1") for i in range(17)]), 400, "bad_archive"),
    "hardlink": (lambda b: archive(files_of(b), _hardlink), 400, "bad_archive"),
    "file_twice": (lambda b: archive([*files_of(b), files_of(b)[-1]]), 400, "bad_archive"),
    "deep_path": (lambda b: archive([(f"a/b/{n}", d) for n, d in files_of(b)]), 400, "bad_archive"),
    "unlisted_file_last": (
        lambda b: archive([*files_of(b), ("run.sh", b"#!/bin/sh\n")]),
        422,
        "unlisted_file",
    ),
    "unlisted_file_first": (
        lambda b: archive([("aaa.sh", b"#!/bin/sh\n"), *files_of(b)]),
        422,
        "unlisted_file",
    ),
    "no_manifest": (
        lambda b: archive([f for f in files_of(b) if f[0] != "manifest.json"]),
        422,
        "missing_file",
    ),
    "manifest_over_4mb": (
        lambda b: archive([("manifest.json", b" " * (5 * MB))]),
        400,
        "bad_archive",
    ),
}


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_hostile_archives_are_refused_in_bounded_memory(
    target: AgentProcess, candidate: Path, bundles, case: str
):
    make, want_status, want_code = ARCHIVES[case]
    body = make(candidate)
    offset = target.log_path.stat().st_size
    with client(target) as c:
        before = snapshot(target.state_dir)
        rss = reset_peak(target)
        start = time.monotonic()
        r = upload(c, body)
        seconds = time.monotonic() - start
        assert r.status_code == want_status, r.text
        assert error_of(r)["code"] == want_code, r.text
        peak = memory(target)["VmHWM"]
        print(
            f"{case}: {len(body) / MB:.1f} MB upload, {seconds:.2f} s, agent RSS {rss} MB, "
            f"peak {peak} MB"
        )
        assert peak - rss < 40, (rss, peak)
        assert seconds < 10
        assert_unchanged(c, target, before, bundles("1.0.0", MID))
        assert not list((target.state_dir / "versions").rglob("*.sh"))
    lines = log_lines_since(target, offset)
    assert not any("Traceback" in ln for ln in lines), lines
    assert all(len(ln) < 600 for ln in lines), max(map(len, lines))


def test_a_bundle_with_its_model_before_its_manifest_is_accepted(agents: Agents, bundles):
    v2 = bundles("2.0.0", NEW)
    body = archive(sorted(files_of(v2), key=lambda f: f[0] != "model.onnx"), fmt=tarfile.GNU_FORMAT)
    agent = agents.start()
    with client(agent) as c:
        r = upload(c, body)
        assert r.status_code == 201, r.text
        predict_golden(c, v2)
        assert sorted(p.name for p in (agent.state_dir / "versions" / "2.0.0").iterdir()) == [
            "manifest.json",
            "manifest.sig",
            "model.onnx",
        ]


# ---- 5. malformed but signed manifests: 422 invalid_manifest naming the field ----------------
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is KeyError:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


MANIFESTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "nul_in_version": (_set("model.version", "5.0.0\x00evil"), "model.version"),
    "version_a_number": (_set("model.version", 5), "model.version"),
    "version_a_path": (_set("model.version", "../../etc"), "model.version"),
    "version_too_long": (_set("model.version", "5" * 65), "model.version"),
    "no_created_at": (_set("model.created_at", KeyError), "model.created_at"),
    "created_at_not_a_time": (_set("model.created_at", "yesterday"), "model.created_at"),
    "no_model": (_set("model", KeyError), "model"),
    "inputs_a_string": (_set("inputs", "torque"), "inputs"),
    "input_dtype": (_set("inputs.0.dtype", "int8"), "inputs[0].dtype"),
    "input_without_name": (_set("inputs.0.name", KeyError), "inputs[0].name"),
    "classes_an_object": (_set("classes", {"0": 0}), "classes"),
    "no_golden": (_set("golden", KeyError), "golden"),
    "golden_probabilities": (
        _set("golden.examples.0.probabilities", [1.0]),
        "golden.examples[0].probabilities",
    ),
    "golden_input_type": (
        _set("golden.examples.0.inputs.torque_nm", "forty"),
        "golden.examples[0].inputs.torque_nm",
    ),
    "files_a_list": (_set("files", ["model.onnx"]), "files"),
    "sha256_not_hex": (_set("files.model.onnx", {"sha256": "z" * 64}), "files.model.onnx.sha256"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_malformed_signed_manifests_are_422_naming_the_field(
    target: AgentProcess, candidate: Path, bundles, signing_keys: Path, tmp_path: Path, case: str
):
    edit, field = MANIFESTS[case]
    bad = Path(shutil.copytree(candidate, tmp_path / "bad"))
    if case == "sha256_not_hex":  # "files.model.onnx" is one key: edit it by hand
        edit = lambda m: m["files"].update({"model.onnx": {"sha256": "z" * 64}})  # noqa: E731
    resign(bad, signing_keys, edit)
    offset = target.log_path.stat().st_size
    with client(target) as c:
        before = snapshot(target.state_dir)
        r = upload(c, tar_bundle(bad))
        assert r.status_code == 422, r.text
        assert error_of(r)["code"] == "invalid_manifest", r.text
        assert field in error_fields(r), r.text
        assert field in error_of(r)["message"]
        assert_unchanged(c, target, before, bundles("1.0.0", MID))
    assert not any("Traceback" in ln for ln in log_lines_since(target, offset))


def test_a_signed_manifest_that_is_not_an_object_is_422(target, bundles, signing_keys, tmp_path):
    from edgeops.keys import load_private_key

    raw = b'["not", "a", "manifest"]\n'
    sig = base64.b64encode(load_private_key(signing_keys / "signing.key").sign(raw))
    with client(target) as c:
        before = snapshot(target.state_dir)
        r = upload(c, archive([("manifest.json", raw), ("manifest.sig", sig)]))
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_manifest", r.text
        assert_unchanged(c, target, before, bundles("1.0.0", MID))


# ---- 6. a model too slow to verify is stopped by verify_timeout_seconds ----------------------
def make_slow_bundle(out: Path, key_dir: Path, version: str) -> Path:
    """A signed bundle whose model loops 10^9 times over its input before answering (hours);
    its golden examples come from the same graph with one iteration (the same answers)."""
    import onnx
    from onnx import TensorProto, helper

    from edgeops.edge.bundle import key_id
    from edgeops.edge.inference import OnnxModel
    from edgeops.keys import load_private_key
    from edgeops.stages.bundle import build_manifest, golden_examples, write_bundle
    from edgeops.stages.export import input_specs
    from tests.bundles import plant_schema, plant_split

    schema = plant_schema()
    specs = input_specs(schema)

    def model(iterations: int) -> bytes:
        f = TensorProto.FLOAT
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                helper.make_node("Add", ["x_in", "zero"], ["x_out"]),
            ],
            "body",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x_in", f, None),
            ],
            [
                helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x_out", f, None),
            ],
            [helper.make_tensor("zero", f, [], [0.0])],
        )
        nodes = [
            helper.make_node("Loop", ["trips", "true", "torque_nm"], ["looped"], body=body),
            helper.make_node("Sub", ["looped", "forty"], ["shifted"]),
            helper.make_node("Sigmoid", ["shifted"], ["p1"]),
            helper.make_node("Sub", ["one", "p1"], ["p0"]),
            helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ]
        inits = [
            helper.make_tensor("trips", TensorProto.INT64, [], [iterations]),
            helper.make_tensor("true", TensorProto.BOOL, [], [True]),
            helper.make_tensor("forty", f, [1], [40.0]),
            helper.make_tensor("one", f, [1], [1.0]),
        ]
        inputs = [
            helper.make_tensor_value_info(
                s.name, f if s.dtype == "float32" else TensorProto.STRING, [None, 1]
            )
            for s in specs
        ]
        outputs = [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", f, [None, 2]),
        ]
        graph = helper.make_graph(nodes, "slow", inputs, outputs, inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m.SerializeToString()

    fast, slow = model(1), model(10**9)
    _, test_df = plant_split()
    golden = golden_examples(OnnxModel(fast, specs, [0, 1]), schema, test_df, n=10)
    private = load_private_key(key_dir / "signing.key")
    manifest = build_manifest(
        slow,
        schema,
        [0, 1],
        golden,
        name="plant-failure",
        version=version,
        created_at=NEW,
        commit="test",
        data={"sha256": "test", "rows": 3000},
        metrics={"roc_auc": 0.5},
        export_report={"parity_test": {"max_abs_diff": 0.0}, "opset": {"": 17}},
        tolerance=1e-5,
        signing_key_id=key_id(private.public_key()),
    )
    return write_bundle(out, slow, manifest, private)


def test_a_model_too_slow_to_verify_is_stopped_and_the_lock_released(
    agents: Agents, bundles, signing_keys: Path, tmp_path: Path
):
    slow = make_slow_bundle(tmp_path / "slow", signing_keys, "6.0.0-slow")
    v1, v2 = bundles("1.0.0", MID), bundles("2.0.0", NEW)
    agent = agents.start({"verify_timeout_seconds": 2})
    offset = agent.log_path.stat().st_size
    with client(agent) as c:
        deploy(c, v1)
        before = snapshot(agent.state_dir)
        start = time.monotonic()
        r = upload(c, tar_bundle(slow))
        seconds = time.monotonic() - start
        assert r.status_code == 422, r.text
        err = error_of(r)
        assert err["code"] == "verify_timeout" and "verify_timeout_seconds" in err["message"]
        assert 1.5 < seconds < 10, seconds
        assert snapshot(agent.state_dir) == before
        assert "6.0.0-slow" not in status(c)["versions"]
        # the lock is free at once: the next deploy goes through
        assert deploy(c, v2)["version"] == "2.0.0"
        predict_golden(c, v2)
        assert list((agent.state_dir / "incoming").iterdir()) == []
    lines = log_lines_since(agent, offset)
    assert not any("Traceback" in ln or "terminate flag" in ln for ln in lines), lines
    assert manifest_of(slow)["model"]["version"] == "6.0.0-slow"
