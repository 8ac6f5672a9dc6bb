"""Faults in the pipeline's own machinery: DVC killed mid-stage, a corrupted remote, a full disk.

One module-scoped workspace runs `dvc repro` once (6,000 simulated rows); each test works on its
own copy of it (`cp -a`, DVC cache included), so they neither wait for nor disturb one another.
The orchestrated faults (a worker or the server killed during a run, two retrains at once,
invalid data) are in test_orchestration.py; an agent down during monitoring in test_monitor.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, init_project, tool_env
from tests.full_disk import on_full_disk
from tests.prefect_stack import set_params, sh

pytestmark = pytest.mark.integration

DVC = str(BIN / "dvc")
PY = str(BIN / "python")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    repo = init_project(tmp_path_factory.mktemp("faults") / "built")
    set_params(repo, **{"ingest.simulator.rows": 6000, "export.latency_repeats": 0})
    sh(["git", "commit", "-qam", "fault tests workspace"], repo)
    sh([DVC, "repro"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "the run"], repo)
    return repo


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built workspace (git, DVC cache and outputs)."""
    dest = tmp_path / "ws"
    subprocess.run(["cp", "-a", str(built), str(dest)], check=True)
    return dest


def lock_outs(ws: Path, stage: str) -> dict[str, str]:
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for o in lock["stages"][stage]["outs"]}


def md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


# ---- 3. `dvc repro` SIGKILLed in the middle of a stage --------------------------------------
def test_dvc_repro_killed_mid_stage_is_rebuilt_by_the_next_run(ws: Path) -> None:
    set_params(ws, **{"train.hist_gradient_boosting.max_iter": 60})  # train must run again
    old_lock = (ws / "dvc.lock").read_text()
    # its own session: DVC and the stage's python are killed together, as a crash would
    proc = subprocess.Popen(
        [DVC, "repro"],
        cwd=ws,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("edgeops train: fitting"):  # the stage's python, mid-fit
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    # the kill left the lock as it was, and DVC's read/write lock naming the dead process
    assert (ws / "dvc.lock").read_text() == old_lock
    rwlock = json.loads((ws / ".dvc/tmp/rwlock").read_text())
    assert any(e["pid"] == proc.pid for entries in rwlock["read"].values() for e in entries)

    again = sh([DVC, "repro"], ws)
    out = again.stdout + again.stderr
    assert f"(Pid {proc.pid})" in out and "Auto removed it from the lock file" in out  # stale
    assert "Running stage 'train'" in out
    # dvc.lock is valid and describes what is on disk
    assert "Data and pipelines are up to date" in sh([DVC, "status"], ws).stdout
    assert lock_outs(ws, "train")["models/model.joblib"] == md5(ws / "models/model.joblib")
    assert yaml.safe_load((ws / "dvc.lock").read_text())["stages"]["train"]["params"]


# ---- 4. an object in the DVC remote corrupted ---------------------------------------------
def test_a_corrupted_remote_object_fails_dvc_pull_and_nothing_trains_on_it(
    ws: Path, tmp_path: Path
) -> None:
    # the product's remote verifies what it downloads (without it DVC trusts the bytes)
    assert sh([DVC, "config", "remote.localstore.verify"], ws).stdout.strip() == "true"
    remote = tmp_path / "remote"
    sh([DVC, "remote", "modify", "localstore", "url", str(remote)], ws)
    sh(["git", "commit", "-qam", "remote for the test"], ws)
    sh([DVC, "push"], ws)
    digest = lock_outs(ws, "split")["data/prepared/train.parquet"]
    obj = remote / "files/md5" / digest[:2] / digest[2:]
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    obj.write_bytes(bytes(data))

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(ws), str(clone)], tmp_path)
    pull = sh([DVC, "pull", "-v"], clone, check=False)  # -v: DVC names the hash mismatch
    out = pull.stdout + pull.stderr
    assert pull.returncode != 0 and "Checkout failed for following targets" in out, out
    assert "data/prepared/train.parquet" in pull.stderr
    corrupted = [line for line in out.splitlines() if "corrupted cache file" in line]
    assert corrupted and f"/files/md5/{digest[:2]}/{digest[2:]}'" in corrupted[0], out
    assert not (clone / "data/prepared/train.parquet").exists()  # not checked out
    assert not (clone / ".dvc/cache/files/md5" / digest[:2] / digest[2:]).exists()  # not kept
    # the documented way to reproduce a run stops at the pull: training never starts on it
    chained = subprocess.run(
        f"{DVC} pull && {DVC} repro",
        shell=True,
        cwd=clone,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert chained.returncode != 0 and "Running stage" not in chained.stdout
    assert (
        not (clone / "models/model.joblib").exists()
        or md5(clone / "models/model.joblib") == lock_outs(ws, "train")["models/model.joblib"]
    )


# ---- 6. the disk full while writing a bundle or a report ----------------------------------
def test_a_full_disk_while_writing_a_bundle_keeps_the_previous_one(ws: Path) -> None:
    cmd = [PY, "-m", "edgeops.stages.bundle", "--out", str(ws / "models/bundle")]
    run = on_full_disk(ws / "models", cmd, free=16_384, cwd=ws, env=tool_env())
    assert run.returncode == 2, run.stderr
    error = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "no space left on the device writing" in error[0], run.stderr
    assert "models/bundle" in error[0] and "the previous version is intact" in error[0]
    assert "fix: free space on that filesystem" in run.stderr and "Traceback" not in run.stderr
    assert run.after == run.before  # bundle/ (and everything else) byte for byte
    assert run.leftovers == []  # no half-written .bundle.* directory


def test_a_full_disk_while_writing_a_report_keeps_the_previous_one(ws: Path) -> None:
    reports = ws / "reports"
    cmd = [
        PY,
        "-m",
        "edgeops.stages.evaluate",
        "--metrics",
        str(reports / "metrics.json"),
        "--plots-dir",
        str(reports / "plots"),
    ]
    before = (reports / "metrics.json").read_bytes()
    run = on_full_disk(reports, cmd, free=0, cwd=ws, env=tool_env())
    assert run.returncode == 2, run.stderr
    assert "no space left on the device writing" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert run.after == run.before and run.leftovers == []
    assert (reports / "metrics.json").read_bytes() == before
