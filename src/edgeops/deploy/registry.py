"""The model registry and the audit log: plain files a person can read and git can version.

``registry.json`` holds every model version with its stage (candidate -> staging -> production ->
archived), metrics, data hash, git commit and bundle hash, plus the history of which version went
to which target, when, why and by whom. It is rewritten atomically and validated on every load: a
hand edit that breaks it is refused with a message, never silently "repaired".

``audit.jsonl`` is append-only: one JSON object per gate decision, deploy, rollback and failed
rollout; it is never rewritten.

Why files and not a registry server or GTO's git tags: the registry must work on an air-gapped
training host with nothing else running, survive restarts, be diffable in code review, and keep
per-target deployment history that git tags cannot hold. Commit both files in your deployment
repository after a rollout; ``git log -p deploy/registry.json`` is then the registry's history.

Two deploys at once: each holds the registry's lock (``registry.json.lock`` beside it, an
``flock`` the kernel releases when the process dies) for its whole run, and reads the registry
again once it has it; the second waits, saying for whom. A save outside the lock refuses to
overwrite a file that changed on disk since it was read. So the registry is never rewritten from
a stale read and no version is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeops import atomic
from edgeops.errors import EdgeopsError

STAGES = ("candidate", "staging", "production", "archived")
FORMAT = 1


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def whoami() -> str:
    """The OS user running the command (recorded as 'by')."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


class Registry:
    """Load, change and save ``registry.json``; every save validates first."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._held = False
        self._read_digest: str | None = None  # what the file held when it was read (None: absent)
        self.data = self._load()

    def _load(self) -> dict[str, Any]:
        raw = self.path.read_bytes() if self.path.exists() else None
        self._read_digest = _digest(raw)
        if raw is None:
            return {"format": FORMAT, "models": {}}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise self._invalid(f"it is not valid JSON ({exc})") from None
        validate(data, self._invalid)
        return data

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(
        self, timeout: float = 900.0, log: Callable[[str], Any] = print
    ) -> Iterator[Registry]:
        """Hold the registry for a whole deploy: wait for the lock (up to ``timeout`` seconds,
        saying who holds it), then read the registry again."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _acquire(fd, self.lock_path, timeout, log)
            holder = {
                "pid": os.getpid(),
                "by": whoami(),
                "host": socket.gethostname(),
                "since": now_iso(),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            self.data = self._load()
            self._held = True
            try:
                yield self
            finally:
                self._held = False
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the flock

    def _invalid(self, problem: str) -> EdgeopsError:
        return EdgeopsError(
            f"the registry {self.path} is in an invalid state: {problem}",
            fix=f"restore it from git (git checkout -- {self.path}) or correct the edit; "
            "nothing was deployed or changed",
        )

    def save(self) -> None:
        """Validate and write atomically; outside :meth:`locked`, only if the file is still what
        was read (a concurrent deploy's save is never overwritten from a stale read)."""
        validate(self.data, self._invalid)
        if self._held:
            self._write()
            return
        with _short_lock(self.lock_path):
            current = _digest(self.path.read_bytes() if self.path.exists() else None)
            if current != self._read_digest:
                raise EdgeopsError(
                    f"{self.path} changed on disk since this command read it (another deploy "
                    "wrote it meanwhile); nothing was written",
                    fix="run the command again: it reads the registry afresh",
                )
            self._write()

    def _write(self) -> None:
        atomic.write_json(self.path, self.data)
        self._read_digest = _digest(self.path.read_bytes())

    def model(self, name: str) -> dict[str, Any]:
        return self.data["models"].setdefault(name, {"versions": {}, "deployments": []})

    def version(self, name: str, version: str) -> dict[str, Any] | None:
        return self.data["models"].get(name, {}).get("versions", {}).get(version)

    def register(self, manifest: dict[str, Any], bundle_sha256: str, by: str) -> dict[str, Any]:
        """Add the bundle's version as a candidate (no-op when it is already known)."""
        m = manifest["model"]
        versions = self.model(m["name"])["versions"]
        if m["version"] not in versions:
            versions[m["version"]] = {
                "stage": "candidate",
                "registered_at": now_iso(),
                "created_at": m.get("created_at"),
                "git_commit": m.get("git_commit"),
                "data_sha256": (manifest.get("data") or {}).get("sha256"),
                "train_md5": (manifest.get("data") or {}).get("train_md5"),
                "bundle_sha256": bundle_sha256,
                "metrics": {
                    k: v
                    for k, v in (manifest.get("metrics") or {}).items()
                    if isinstance(v, int | float)
                },
                "stage_history": [{"stage": "candidate", "at": now_iso(), "by": by}],
            }
        return versions[m["version"]]

    def set_stage(self, name: str, version: str, stage: str, by: str, note: str = "") -> None:
        entry = self.version(name, version)
        if entry is None:
            raise EdgeopsError(f"model {name} has no version {version} in the registry")
        if stage == "production":  # one production version at a time
            for v, e in self.model(name)["versions"].items():
                if v != version and e["stage"] == "production":
                    e["stage"] = "archived"
                    e["stage_history"].append(
                        {
                            "stage": "archived",
                            "at": now_iso(),
                            "by": by,
                            "note": f"superseded by {version}",
                        }
                    )
        if entry["stage"] != stage:
            entry["stage"] = stage
            entry["stage_history"].append(
                {"stage": stage, "at": now_iso(), "by": by, **({"note": note} if note else {})}
            )

    def record_deployment(self, name: str, version: str, target: str, action: str, reason: str, by: str,
                          previous: str | None = None) -> None:  # fmt: skip
        self.model(name)["deployments"].append(
            {
                "at": now_iso(),
                "version": version,
                "target": target,
                "action": action,
                "previous": previous,
                "reason": reason,
                "by": by,
            }  # fmt: skip
        )

    def production(self, name: str) -> str | None:
        for v, e in self.data["models"].get(name, {}).get("versions", {}).items():
            if e["stage"] == "production":
                return v
        return None


def _digest(raw: bytes | None) -> str | None:
    return None if raw is None else hashlib.sha256(raw).hexdigest()


def _acquire(fd: int, path: Path, timeout: float, log: Callable[[str], Any] | None) -> None:
    """flock ``fd`` exclusively, waiting up to ``timeout`` s; ``log`` once who holds it."""
    deadline, told = time.monotonic() + timeout, log is None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = _holder(fd)
            if time.monotonic() >= deadline:
                raise EdgeopsError(
                    f"{path} is held by another deploy ({holder}) for over {timeout:.0f} s",
                    fix="wait for that deploy to finish, or stop it (the lock goes with its "
                    "process); then run this command again. Nothing was changed",
                ) from None
            if not told:
                log(f"waiting for another deploy to finish: {holder} holds {path}")  # type: ignore[misc]
                told = True
            time.sleep(0.2)


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the lock file."""
    try:
        h = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {h['pid']} on {h['host']}, {h['by']}, since {h['since']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"


@contextlib.contextmanager
def _short_lock(path: Path, timeout: float = 60.0) -> Iterator[None]:
    """The registry's lock for one read-compare-write (a deploy holding it is waited for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, timeout, None)
        yield
    finally:
        os.close(fd)


def validate(data: Any, invalid: Any) -> None:
    """Raise ``invalid(problem)`` unless ``data`` is a well-formed registry."""
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("models"), dict)
    ):
        raise invalid(f"expected an object with format {FORMAT} and 'models'")
    for name, model in data["models"].items():
        if (
            not isinstance(model, dict)
            or not isinstance(model.get("versions"), dict)
            or not isinstance(model.get("deployments"), list)
        ):
            raise invalid(f"model {name!r} needs 'versions' (object) and 'deployments' (list)")
        production = []
        for v, e in model["versions"].items():
            if not isinstance(e, dict) or e.get("stage") not in STAGES:
                raise invalid(f"{name} {v}: stage must be one of {STAGES}")
            if not isinstance(e.get("stage_history"), list):
                raise invalid(f"{name} {v}: stage_history must be a list")
            if e["stage"] == "production":
                production.append(v)
        if len(production) > 1:
            raise invalid(
                f"{name} has {len(production)} production versions {production}; at most one"
            )
        for i, d in enumerate(model["deployments"]):
            if not isinstance(d, dict) or not {"at", "version", "target", "action"} <= set(d):
                raise invalid(f"{name} deployments[{i}] needs at, version, target and action")


class AuditLog:
    """Append-only JSON lines: each entry is written with one write() and fsync'd."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        entry = {"at": now_iso(), "event": event, "by": fields.pop("by", whoami()), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
