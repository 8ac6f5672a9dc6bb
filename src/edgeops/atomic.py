"""Write-temp-then-rename: a reader never sees a half-written file, a crash leaves the old one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError

#: "the filesystem is full" (ENOSPC) and "the user's quota is used up" (EDQUOT)
FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(EdgeopsError):
    """No space left where an output is written; the previous output was left as it was."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        where = Path(target).parent
        try:
            free = f"{shutil.disk_usage(where).free / 1e6:,.1f} MB free"
        except OSError:
            free = "free space unknown"
        super().__init__(
            f"no space left on the device writing {target} ({free} in {where}); "
            "nothing was replaced: the previous version is intact",
            fix=f"free space on that filesystem (`df -h {where}`; `dvc gc` drops cached "
            "outputs no commit uses), then run the command again",
        )


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, also when a library (pyarrow) reports it only in its message."""
    if isinstance(exc, OSError) and exc.errno in FULL:
        return True
    return isinstance(exc, OSError) and "No space left on device" in str(exc)


@contextmanager
def reported_when_full(target: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Turn a full disk inside the block into :class:`DiskFull`, naming ``target`` (else the
    file the error names): for writers that are not atomic_path, and the entry points' fallback."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFull(target or exc.filename or Path.cwd() / "?") from exc


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with reported_when_full(target):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes 0600 files: give the file the mode the target has, or the umask's default
    # (a caller that wants a private file, like a signing key, chmods inside the block)
    if target.exists():
        os.chmod(tmp_path, target.stat().st_mode & 0o777)
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFull(target) from exc
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``target`` with ``data``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``target`` with ``text`` (UTF-8)."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable diffs in git)."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, without importing numpy here
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (ValueError, TypeError):
            pass
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory only its owner can enter (0700), whatever the umask or an
    earlier mode: agent state, collected rows, the Prefect home."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file only its owner can read (0600), created empty if missing: a database
    made 0600 before SQLite opens it (its -wal and -shm files take its mode)."""
    path = Path(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return path
