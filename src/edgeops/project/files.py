"""Writing a project's files and asking git about them (shared by init and upgrade)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.project.template import executable


def write_files(root: Path, files: dict[Path, bytes]) -> None:
    """Write each file (temporary file, then rename); scripts get their executable bit."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
            if executable(rel):
                os.chmod(tmp, 0o755)


def remove_files(root: Path, paths: Iterable[Path]) -> None:
    for rel in paths:
        (root / rel).unlink(missing_ok=True)


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise EdgeopsError("git is not installed", fix="install git (apt install git)") from None
    if check and proc.returncode != 0:
        raise EdgeopsError(
            f"git {' '.join(args)} failed in {root}: {(proc.stderr or proc.stdout).strip()}",
            fix="check the project's git repository (git status)",
        )
    return proc


def identity_args(root: Path) -> list[str]:
    """``-c user.name=... -c user.email=...`` when git has no identity here (a fresh machine),
    so that the project's first commit can be made; nothing when it has one."""
    if git(root, "config", "user.email", check=False).stdout.strip():
        return []
    return ["-c", "user.name=edgeops init", "-c", "user.email=edgeops@localhost"]
