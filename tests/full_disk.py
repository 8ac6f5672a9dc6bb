"""Run a command while one directory sits on a small filesystem that is (nearly) full.

The directory gets a tmpfs of its own in a private mount namespace (``unshare -m``; ``-r`` too
when not root), holding a copy of what was there and a filler file that leaves ``free`` bytes.
The command runs inside that namespace, so it writes to the full filesystem; the real directory
underneath is never touched, and the mount is gone with the namespace.

>>> run = on_full_disk(ws / "models", [python, "-m", "edgeops.stages.bundle", ...], free=64_000,
...                    cwd=ws, env=env)
>>> run.returncode, run.before == run.after, run.leftovers

This file is also the driver that runs inside the namespace (``python full_disk.py SPEC``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILLER = ".edgeops-test-filler"


@dataclass
class FullDiskRun:
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, str]  # relative path -> sha256, what was there before the command
    after: dict[str, str]  # ... and after it (files only; the filler left out)
    leftovers: list[str]  # hidden temporary files or directories the command left behind
    free_before: int  # bytes free on the filesystem when the command started


def on_full_disk(
    directory: Path,
    cmd: list[str],
    *,
    free: int,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 300,
) -> FullDiskRun:
    """Run ``cmd`` with ``directory`` on a tmpfs that has only ``free`` bytes left."""
    spec = {"dir": str(directory), "cmd": cmd, "free": free, "cwd": str(cwd), "timeout": timeout}
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    proc = subprocess.run(
        [*unshare, sys.executable, __file__, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the full-disk driver failed ({proc.returncode}):\n{proc.stderr}")
    return FullDiskRun(**json.loads(proc.stdout))


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != FILLER:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _leftovers(root: Path) -> list[str]:
    """Hidden temporary writes: ``.name.*.tmp`` files and ``.name.*`` directories."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob(".*")
        if p.name != FILLER and (p.is_dir() or p.name.endswith(".tmp"))
    )


def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    target = Path(spec["dir"])
    keep = Path(tempfile.mkdtemp(prefix="full-disk-copy-"))
    if target.exists():
        shutil.copytree(target, keep, dirs_exist_ok=True, symlinks=True)
    target.mkdir(parents=True, exist_ok=True)
    used = sum(p.stat().st_size for p in keep.rglob("*") if p.is_file())
    size = (used // 4096 + 64) * 4096 + spec["free"] + (1 << 20)  # data, metadata, slack
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "edgeops-full", str(target)],
        check=True,
    )
    shutil.copytree(keep, target, dirs_exist_ok=True, symlinks=True)
    shutil.rmtree(keep)
    fill = shutil.disk_usage(target).free - spec["free"]
    with open(target / FILLER, "wb") as fh:
        fh.truncate(0)
        chunk = b"\0" * (1 << 20)
        while fill > 0:
            fill -= fh.write(chunk[: min(len(chunk), fill)])
    before, hidden = _hashes(target), set(_leftovers(target))
    free_before = shutil.disk_usage(target).free
    proc = subprocess.run(
        spec["cmd"], cwd=spec["cwd"], capture_output=True, text=True, timeout=spec["timeout"]
    )
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "before": before,
        "after": _hashes(target),
        "leftovers": [p for p in _leftovers(target) if p not in hidden],
        "free_before": free_before,
    }


if __name__ == "__main__":
    print(json.dumps(_drive(json.loads(sys.argv[1]))))
