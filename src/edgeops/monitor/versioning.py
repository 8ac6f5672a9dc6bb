"""Version the production store with DVC: one ``data/production/<target>.dvc`` per target."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from edgeops.errors import EdgeopsError


def version_store(workspace: Path, store: Path, targets: list[str]) -> list[str]:
    """``dvc add`` each target's folder; returns the .dvc files written (none outside a DVC repo).

    DVC hashes only files it has not seen, so an hourly run adds the new parts, not the history.
    """
    import logging

    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.logger import set_loggers_level
    from dvc.repo import Repo

    workspace = Path(workspace).resolve()
    if not (workspace / ".dvc").is_dir():
        return []
    root = store if store.is_absolute() else workspace / store
    paths = [str(root / t) for t in targets if (root / t).is_dir()]
    if not paths:
        return []
    try:
        # DVC prints git hints ("git add ...") meant for a person at a shell: keep them out.
        # They are INFO log records, and DVC's handlers hold the sys.stdout of its import time,
        # so redirecting sys.stdout alone does not catch them (`--json` output was broken).
        with (
            Repo(str(workspace)) as repo,
            set_loggers_level(logging.WARNING),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            repo.add(paths)
    except LockError:
        raise EdgeopsError(
            "DVC is busy in this workspace (a training run?): the collected rows are stored "
            "but not yet versioned",
            fix="nothing to do: the next `edgeops monitor` versions them",
            exit_code=8,
        ) from None
    except DvcException as exc:
        raise EdgeopsError(f"dvc add {' '.join(paths)} failed: {exc}", exit_code=8) from None
    return [p + ".dvc" for p in paths]
