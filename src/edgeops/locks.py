"""File locks that wait and say for whom: ``flock`` on a lock file, released by the kernel when
the holder's process dies (no stale lock survives a crash).

    with hold(Path("deploy/registry.json.lock"), timeout=900, log=print, what="deploy"):
        ...   # the second process waits here, told once who holds it
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def whoami() -> str:
    """The OS user running the command (recorded as 'by')."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@contextlib.contextmanager
def hold(
    path: Path,
    timeout: float,
    log: Callable[[str], Any] | None = None,
    what: str = "work",
    announce: bool = True,
) -> Iterator[int]:
    """Hold the exclusive lock on ``path`` (created 0600), waiting up to ``timeout`` seconds and
    telling ``log`` once who holds it; yields the lock file's descriptor. ``announce`` writes
    who holds it (pid, user, host, since) into the file while held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        acquire(fd, path, timeout, log, what)
        if announce:
            holder = {
                "pid": os.getpid(),
                "by": whoami(),
                "host": socket.gethostname(),
                "since": now_iso(),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield fd
        finally:
            if announce:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def acquire(
    fd: int, path: Path, timeout: float, log: Callable[[str], Any] | None, what: str = "work"
) -> None:
    """flock ``fd`` exclusively, waiting up to ``timeout`` s; ``log`` once who holds it."""
    deadline, told = time.monotonic() + timeout, log is None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            who = holder(fd)
            if time.monotonic() >= deadline:
                raise EdgeopsError(
                    f"{path} is held by another {what} ({who}) for over {timeout:.0f} s",
                    fix=f"wait for that {what} to finish, or stop it (the lock goes with its "
                    "process); then run this command again. Nothing was changed",
                ) from None
            if not told:
                log(f"waiting for another {what} to finish: {who} holds {path}")  # type: ignore[misc]
                told = True
            time.sleep(0.2)


def holder(fd: int) -> str:
    """Who holds the lock, from what :func:`hold` wrote into the lock file."""
    try:
        h = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {h['pid']} on {h['host']}, {h['by']}, since {h['since']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"
