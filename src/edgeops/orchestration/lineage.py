"""Lineage that lasts: each new model version is a git commit of its run's lineage, and a tag.

A run that produced a model version not tagged yet commits ``dvc.lock``, ``params.yaml``, the
registry, the audit log and the ``data/production/*.dvc`` files of the collected logs (only those
paths, whatever else is uncommitted) and tags the commit ``<model>/<version>``. Any past run is then ``git checkout <tag> && dvc pull && dvc repro``:
nothing to do, the same bundle. Where the repository says no (``orchestration.lineage.commit:
false``, as in the edgeops product repository itself), nothing is committed and the run's summary
says why. Files git ignores (the registry and audit log in the product repository) are left out.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError

#: What a run's lineage is made of (paths relative to the workspace); missing files are skipped.
LINEAGE_FILES = (
    "dvc.lock",
    "params.yaml",
    "deploy/registry.json",
    "deploy/audit.jsonl",
    "deploy/audit.seal",
)
#: what a rollout changes after the lineage was recorded: the deploy records
RECORD_FILES = ("deploy/registry.json", "deploy/audit.jsonl", "deploy/audit.seal")


@dataclass
class LineageResult:
    committed: bool
    reason: str
    commit: str | None = None
    tag: str | None = None


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise EdgeopsError(
            f"git {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}",
            fix="check the workspace's git repository (`git status`)",
        )
    return proc


def tag_name(model: str, version: str) -> str:
    return f"{model}/{version}"


def record(root: Path, model: str, version: str, reason: str, cfg: dict[str, Any]) -> LineageResult:
    """Commit the lineage files and tag ``model/version``, unless tagged already or switched off."""
    if not cfg.get("commit", True):
        return LineageResult(False, "orchestration.lineage.commit is false")
    if git(root, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
        return LineageResult(False, f"{root} is not a git work tree")
    tag = tag_name(model, version)
    if git(root, "rev-parse", "-q", "--verify", f"refs/tags/{tag}", check=False).returncode == 0:
        return LineageResult(False, f"{tag} is tagged already", tag=tag)
    branch = cfg.get("branch")
    current = git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    if branch and current != branch:
        raise EdgeopsError(
            f"the workspace is on branch {current!r}, orchestration.lineage.branch is {branch!r}",
            fix=f"git checkout {branch} in {root}, or change lineage.branch",
        )
    # the collected production logs the run trained on: one .dvc file per target
    production = [
        str(p.relative_to(root)) for p in sorted((root / "data/production").glob("*.dvc"))
    ]
    message = f"{model} {version}: lineage of a training run ({reason})"
    paths, staged = _commit(root, (*LINEAGE_FILES, *production), message)
    git(root, "tag", "-a", tag, "-m", message)
    commit = git(root, "rev-parse", "HEAD").stdout.strip()
    return LineageResult(True, f"committed {', '.join(paths)}" if staged else "tagged", commit, tag)


def commit_records(root: Path, model: str, version: str, cfg: dict[str, Any]) -> str | None:
    """After the rollout: commit what it recorded (registry, audit log, seal), if anything and
    if the repository says so (the lineage itself was committed and tagged before it)."""
    if not cfg.get("commit", True):
        return None
    if git(root, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
        return None
    paths, staged = _commit(root, RECORD_FILES, f"{model} {version}: records of its rollout")
    return f"committed {', '.join(paths)}" if staged else None


def _commit(root: Path, candidates: tuple[str, ...], message: str) -> tuple[list[str], bool]:
    """Commit those of ``candidates`` that exist and git does not ignore (only those paths,
    whatever else is staged); ``(paths, whether anything changed)``."""
    paths = [
        p
        for p in candidates
        if (root / p).exists() and git(root, "check-ignore", "-q", p, check=False).returncode != 0
    ]
    if not paths:
        return [], False
    git(root, "add", "--", *paths)
    staged = git(root, "diff", "--cached", "--quiet", "--", *paths, check=False).returncode != 0
    if staged:
        git(root, "commit", "-q", "-m", message, "--", *paths)
    return paths, staged
