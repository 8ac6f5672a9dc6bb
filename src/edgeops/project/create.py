"""``edgeops init``: a new project from the template, as a git + DVC repository.

The project is built in a hidden folder beside the destination and renamed into place at the
end, so an init that fails (no git, a full disk, DVC missing) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgeops.errors import EdgeopsError
from edgeops.project.files import git, identity_args, write_files
from edgeops.project.template import Answers, render, with_record

Log = Callable[[str], None]


def check_destination(dest: Path) -> None:
    """A new folder, or an empty one; anything else is refused before anything is written."""
    if dest.exists() and not dest.is_dir():
        raise EdgeopsError(f"{dest} is a file", fix="name a new folder: edgeops init DIR")
    if dest.is_dir() and any(dest.iterdir()):
        raise EdgeopsError(
            f"{dest} is not empty: edgeops init makes a new project and never writes over files",
            fix="name a new or empty folder; to bring an existing project up to date with this "
            "edgeops, run `edgeops upgrade` in it",
        )


def create(dest: Path, answers: Answers, edgeops_version: str, log: Log = print) -> Path:
    """Make the project in ``dest`` (new or empty); return its resolved path."""
    dest = dest.expanduser().resolve()
    check_destination(dest)
    try:
        from dvc.repo import Repo
    except ImportError:
        raise EdgeopsError(
            "DVC is not installed: a project is a DVC repository",
            fix="install the pipeline extra: pip install 'edgeops[pipeline]' "
            "(or uv tool install 'edgeops[pipeline]')",
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.edgeops-init-", dir=dest.parent))
    try:
        files = with_record(answers, edgeops_version, render(answers, edgeops_version))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp made it 0700: a project folder as any other
        git(work, "init", "-q")
        with contextlib.redirect_stdout(io.StringIO()):  # DVC's "You can now commit..." banner
            Repo.init(str(work)).close()  # .dvc/ (its config is the template's, written next)
        write_files(work, files)
        git(work, "add", "-A")
        ident = identity_args(work)
        message = f"edgeops init: project {answers.name} (edgeops {edgeops_version})"
        git(work, *ident, "commit", "-q", "-m", message)
        if dest.is_dir():
            dest.rmdir()  # empty (checked): the finished project takes its place
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    who = " (committed as 'edgeops init': git has no user.email here)" if ident else ""
    log(f"created project {answers.name} in {dest}: git + DVC, first commit made{who}")
    return dest
