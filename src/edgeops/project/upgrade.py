"""``edgeops upgrade``: the installed edgeops's template merged into an existing project.

For every file the template makes, three versions meet: the project's (with the company's
edits), the base (what the template rendered when the project was made or last upgraded, kept
in ``.edgeops/base/``) and the new render. A file the company did not touch takes the new
render; a file the template did not change keeps the company's; a file both changed is merged
line by line (``git merge-file``, the merge ``copier update`` uses). If any merge conflicts,
nothing is written unless ``--conflict-markers`` asks for the markers to be written to resolve.

Copier itself is not used: ``copier update`` regenerates the old template version from the
template's git history, and a template shipped in a wheel has none. The base copies stand in
for it, and travel with the project's repository.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeops.errors import EdgeopsError
from edgeops.project.files import git, remove_files, write_files
from edgeops.project.template import (
    BASE_DIR,
    STATE_DIR,
    TEMPLATE_VERSION,
    ProjectState,
    base_path,
    render,
    sha256,
    with_record,
)

Log = Callable[[str], None]


@dataclass
class Plan:
    """What an upgrade changes, decided before anything is written."""

    write: dict[Path, bytes] = field(default_factory=dict)
    remove: list[Path] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # the company's edits, kept as they are
    merged: list[str] = field(default_factory=list)  # both changed, merged cleanly
    conflicts: dict[str, int] = field(default_factory=dict)  # path -> conflicting hunks
    notes: list[str] = field(default_factory=list)


def merge(
    ours: bytes, base: bytes, theirs: bytes, labels: tuple[str, str, str]
) -> tuple[bytes, int]:
    """Three-way merge of one file: (result with conflict markers if any, conflicts)."""
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / n for n in ("ours", "base", "theirs")]
        for p, data in zip(paths, (ours, base, theirs), strict=True):
            p.write_bytes(data)
        args = ["git", "merge-file", "-p"]
        for label in labels:
            args += ["-L", label]
        proc = subprocess.run([*args, *map(str, paths)], capture_output=True)
    if proc.returncode < 0 or proc.returncode > 127:
        raise EdgeopsError(f"git merge-file failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout, proc.returncode


def plan(root: Path, state: ProjectState, new: dict[Path, bytes], version: str) -> Plan:
    """Decide, file by file, what the upgrade does (nothing is written here)."""
    out = Plan()
    labels = (
        "this project",
        f"template {state.template_version} (edgeops {state.edgeops_version})",
        f"template {TEMPLATE_VERSION} (edgeops {version})",
    )
    for name in sorted(set(state.files) | {str(p) for p in new}):
        rel = Path(name)
        path = root / rel
        ours = path.read_bytes() if path.is_file() else None
        theirs = new.get(rel)
        base_hash = state.files.get(name)
        base_file = root / base_path(rel)
        base = base_file.read_bytes() if base_file.is_file() else None
        if base is not None and sha256(base) != base_hash:
            base = None  # a base copy that was edited is no ancestor
        if theirs is None:  # the template no longer makes it
            if ours is not None and sha256(ours) == base_hash:
                out.remove.append(rel)
            elif ours is not None:
                out.notes.append(f"{name}: the template no longer makes it; kept (edited here)")
            continue
        if ours is None:
            if base_hash is None:
                out.write[rel] = theirs  # new in this template
            elif sha256(theirs) != base_hash:
                out.notes.append(f"{name}: deleted here, changed in the template; not restored")
            continue
        if ours == theirs:
            continue
        if sha256(ours) == base_hash:
            out.write[rel] = theirs  # untouched here: the template's new version
        elif sha256(theirs) == base_hash:
            out.kept.append(name)  # the template did not change it: the company's edits stay
        elif base is None:
            out.conflicts[name] = 1  # no ancestor to merge from (a large file, or no record)
        else:
            merged, conflicts = merge(ours, base, theirs, labels)
            out.write[rel] = merged
            if conflicts:
                out.conflicts[name] = conflicts
            else:
                out.merged.append(name)
    return out


def uncommitted(root: Path) -> list[str]:
    """Tracked files with changes not committed (an upgrade must be one reviewable diff)."""
    proc = git(root, "status", "--porcelain", "--untracked-files=no")
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


def upgrade(root: Path, version: str, markers: bool = False, log: Log = print) -> Plan:
    """Bring the project in ``root`` up to the installed template; return what was done."""
    root = root.resolve()
    state = ProjectState.read(root)
    if not (root / ".git").exists():
        raise EdgeopsError(
            f"{root} is not a git repository: an upgrade must be a diff you can review and undo",
            fix="git init && git add -A && git commit -m 'before edgeops upgrade', then upgrade",
        )
    dirty = uncommitted(root)
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise EdgeopsError(
            f"the project has uncommitted changes ({shown}): an upgrade on top of them could "
            "not be reviewed or undone apart from them",
            fix="commit them (git commit -am '...') or put them aside (git stash), then run "
            "edgeops upgrade again",
        )
    rendered = render(state.answers, version)
    decided = plan(root, state, rendered, version)
    if decided.conflicts and not markers:
        listed = ", ".join(f"{n} ({c} place{'s' * (c > 1)})" for n, c in decided.conflicts.items())
        raise EdgeopsError(
            f"the template's changes and this project's edits overlap in {listed}; "
            "nothing was changed",
            fix="run `edgeops upgrade --conflict-markers` to write both versions into those "
            "files (git-style markers), resolve them, then commit; or undo your edit of those "
            "lines, commit, and upgrade again",
        )
    record = with_record(state.answers, version, rendered)
    state_files = {p: d for p, d in record.items() if p.parts[0] == str(STATE_DIR)}
    stale = [
        p.relative_to(root)
        for p in (root / BASE_DIR).rglob("*.orig")
        if p.relative_to(root) not in state_files
    ]
    write_files(root, {**decided.write, **state_files})
    remove_files(root, [*decided.remove, *stale])
    log(
        f"upgraded {root.name} from template {state.template_version} (edgeops "
        f"{state.edgeops_version}) to template {TEMPLATE_VERSION} (edgeops {version})"
    )
    for what, names in (
        ("updated", [str(p) for p in decided.write if str(p) not in decided.conflicts]),
        ("removed", [str(p) for p in decided.remove]),
        ("merged with your edits", decided.merged),
        ("kept as you edited them", decided.kept),
        ("CONFLICTS to resolve", list(decided.conflicts)),
    ):
        if names:
            log(f"  {what}: {', '.join(names)}")
    for note in decided.notes:
        log(f"  note: {note}")
    from edgeops.stages import STAGE_VERSIONS

    rerun = [s for s, v in STAGE_VERSIONS.items() if state.stage_versions.get(s) != v]
    log(
        "  stages whose version changed (dvc repro re-runs them and what follows): "
        + (", ".join(rerun) if rerun else "none")
    )
    log("review with `git diff`, then `dvc repro` and commit")
    return decided
