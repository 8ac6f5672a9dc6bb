"""The agent's state directory: committed model versions and which one is active.

    STATE/
      state.json            active, previous, probation, history, the newest created_at
                            accepted (downgrade protection); replaced atomically
      state.json.damaged-*  a damaged state.json, kept aside when it was rebuilt
      versions/<version>/   verified bundles, immutable once renamed into place
      incoming/             the one upload being received, unpacked and verified (emptied on
                            start and after every upload)
      loading               marker: a version is being loaded (survives a crash while loading)
      inference.db          the inference log (see inference_log.py)
      inference.db.damaged-*  a damaged inference log, kept aside when a new one was started

Every change is write-temp-then-rename plus fsync of the directory, so after a power loss or a
SIGKILL the agent finds either the old or the new state, never a mix. Uploads are read by
:mod:`edgeops.edge.unpack`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeops import atomic
from edgeops.edge import manifest as manifest_shape
from edgeops.edge.bundle import MANIFEST

HISTORY_LIMIT = 200
#: state.json's keys and the types each may hold (a state of any other shape is damaged)
STATE_SHAPE: dict[str, tuple[type, ...]] = {
    "active": (str, type(None)),
    "previous": (str, type(None)),
    "since": (str, type(None)),
    "probation": (dict, type(None)),
    "history": (list,),
    "newest_accepted": (dict, type(None)),
}


class StoreError(Exception):
    """A request the store refuses; ``status`` is the HTTP status, ``code`` a stable name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_durable(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class StateStore:
    """Versions on disk and the active pointer. Thread-safe; every method persists before returning."""

    def __init__(self, root: str | Path, keep: int = 5) -> None:
        self.root = Path(root)
        self.keep = max(2, keep)
        self.versions_dir = self.root / "versions"
        self.incoming = self.root / "incoming"
        self.state_path = self.root / "state.json"
        self.loading_path = self.root / "loading"
        self._lock = threading.RLock()
        for d in (self.root, self.versions_dir, self.incoming):
            atomic.private_dir(d)  # 0700 whatever started the agent

    # ---- state -------------------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        """The committed state (a fresh dict)."""
        with self._lock:
            try:
                state = json.loads(self.state_path.read_text())
            except FileNotFoundError:
                state = {}
            except ValueError:  # cannot happen with rename-into-place; be safe anyway
                state = {}
            state.setdefault("active", None)
            state.setdefault("previous", None)
            state.setdefault("since", None)
            state.setdefault("probation", None)
            state.setdefault("history", [])
            state.setdefault("newest_accepted", None)
            return state

    def damage(self) -> str | None:
        """What is wrong with ``state.json`` (None: it is sound, or a fresh device has none).

        Missing while ``versions/`` holds bundles counts as damaged: the device had a state.
        """
        with self._lock:
            try:
                raw = self.state_path.read_bytes()
            except FileNotFoundError:
                held = self.versions()
                return f"state.json is missing but versions/ holds {held}" if held else None
            if not raw.strip():
                return "state.json is empty (cut short)"
            try:
                state = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                return f"state.json is not JSON (cut short or overwritten: {str(exc)[:80]})"
            if not isinstance(state, dict):
                return f"state.json holds a {type(state).__name__}, not an object"
            for key, types in STATE_SHAPE.items():
                if key in state and not isinstance(state[key], types):
                    return f"state.json's {key!r} is a {type(state[key]).__name__}"
            return None

    def set_aside(self) -> Path | None:
        """Rename a damaged ``state.json`` to ``state.json.damaged-<UTC time>`` (kept for people)."""
        with self._lock:
            if not self.state_path.exists():
                return None
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            aside = self.state_path.with_name(f"state.json.damaged-{stamp}")
            os.replace(self.state_path, aside)
            _fsync_dir(self.root)
            return aside

    def rebuild(
        self,
        active: str | None,
        previous: str | None,
        newest: dict[str, str] | None,
        event: dict[str, Any],
    ) -> dict[str, Any]:
        """Write a fresh state (after a damaged one was set aside); ``event`` says why."""
        with self._lock:
            state = {
                "active": active,
                "previous": previous,
                "since": now_iso() if active else None,
                "probation": None,
                "history": [],
                "newest_accepted": newest,
            }
            return self._commit(state, event)

    def newest(self) -> tuple[datetime, dict[str, str]] | None:
        """The downgrade mark: the newest ``created_at`` accepted and ``{"version", "created_at"}``."""
        newest = self.read().get("newest_accepted")
        try:
            return manifest_shape.created_at({"model": newest}), newest
        except (ValueError, TypeError, AttributeError):
            return None

    def set_newest(self, newest: dict[str, str]) -> dict[str, Any]:
        """Record the newest ``{"version", "created_at"}`` accepted (no history event)."""
        with self._lock:
            state = self.read()
            state["newest_accepted"] = newest
            return self._commit(state, None)

    def _commit(self, state: dict[str, Any], event: dict[str, Any] | None) -> dict[str, Any]:
        if event is not None:
            state["history"] = (state.get("history") or []) + [{"at": now_iso(), **event}]
            state["history"] = state["history"][-HISTORY_LIMIT:]
        _write_json_durable(self.state_path, state)
        return state

    def versions(self) -> list[str]:
        """Committed versions on disk, oldest first (by install time)."""
        found = [p for p in self.versions_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    def path_of(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise StoreError(404, "unknown_version", f"no version {version!r} on this device")
        return self.versions_dir / version

    # ---- start-up ----------------------------------------------------------------------------
    def recover(self) -> None:
        """Clear half-finished uploads and temp files left by a crash."""
        with self._lock:
            shutil.rmtree(self.incoming, ignore_errors=True)
            self.incoming.mkdir(parents=True, exist_ok=True)
            for tmp in self.root.glob(".state.json.*.tmp"):
                tmp.unlink(missing_ok=True)

    def mark_loading(self, version: str) -> str | None:
        """Write the loading marker; return the version a previous boot died loading, if any."""
        with self._lock:
            died = self.loading_path.read_text().strip() if self.loading_path.exists() else None
            tmp = self.loading_path.with_suffix(".tmp")
            tmp.write_text(version)
            os.replace(tmp, self.loading_path)
            _fsync_dir(self.root)
            return died or None

    def clear_loading(self) -> None:
        with self._lock:
            self.loading_path.unlink(missing_ok=True)

    # ---- uploads -----------------------------------------------------------------------------
    def new_upload_dir(self) -> Path:
        d = self.incoming / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d

    def install(self, staged: Path, version: str) -> Path:
        """Move a verified upload into ``versions/<version>`` (atomic rename)."""
        with self._lock:
            target = self.path_of(version)
            if target.exists():
                same = (target / MANIFEST).read_bytes() == (staged / MANIFEST).read_bytes()
                shutil.rmtree(staged, ignore_errors=True)
                if not same:
                    raise StoreError(
                        409,
                        "version_conflict",
                        f"a different bundle with version {version} is already on this device",
                    )
                return target
            staged.rename(target)
            _fsync_dir(self.versions_dir)
            os.utime(target)
            return target

    # ---- switching ---------------------------------------------------------------------------
    def activate(
        self,
        version: str,
        reason: str,
        probation: bool,
        actor: str = "api",
        newest: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Make ``version`` active (the old active becomes previous); persist before returning.

        ``newest``: the new newest ``{"version", "created_at"}`` accepted, if this raises it.
        """
        with self._lock:
            state = self.read()
            old = state["active"]
            if old == version:
                return state
            state.update(
                active=version,
                previous=old,
                since=now_iso(),
                probation={"version": version, "since": time.time()} if probation and old else None,
            )
            if newest is not None:
                state["newest_accepted"] = newest
            return self._commit(
                state,
                {
                    "event": "activate",
                    "version": version,
                    "from": old,
                    "reason": reason,
                    "by": actor,
                },
            )

    def rollback(
        self, reason: str, to: str | None = None, actor: str = "api", downgrade: bool = False
    ) -> dict[str, Any]:
        """Return to ``to`` (default: the previous version); ``downgrade``: it is older than the
        newest version accepted (said in the history; the high-water mark stays)."""
        with self._lock:
            state = self.read()
            target = to or state["previous"]
            if not target:
                raise StoreError(
                    409, "no_previous_version", "there is no previous version to roll back to"
                )
            if not (self.path_of(target) / MANIFEST).is_file():
                raise StoreError(
                    404,
                    "unknown_version",
                    f"no version {target!r} on this device; known: {self.versions()}",
                )
            if target == state["active"]:
                raise StoreError(409, "already_active", f"{target} is already the active version")
            old = state["active"]
            state.update(active=target, previous=old, since=now_iso(), probation=None)
            event = {
                "event": "rollback",
                "version": target,
                "from": old,
                "reason": reason,
                "by": actor,
            }
            if downgrade:
                event["downgrade"] = True
            return self._commit(state, event)

    def end_probation(self, version: str) -> dict[str, Any]:
        """The version passed its probation: it is committed."""
        with self._lock:
            state = self.read()
            if not state["probation"] or state["probation"].get("version") != version:
                return state
            state["probation"] = None
            return self._commit(
                state, {"event": "commit", "version": version, "reason": "probation passed"}
            )

    def record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._commit(self.read(), event)

    def prune(self) -> list[str]:
        """Delete the oldest versions beyond ``keep``; never the active or previous one."""
        with self._lock:
            state = self.read()
            protected = {state["active"], state["previous"]}
            versions = self.versions()
            removed = []
            for v in versions[: max(0, len(versions) - self.keep)]:
                if v not in protected:
                    shutil.rmtree(self.versions_dir / v, ignore_errors=True)
                    removed.append(v)
            return removed


def tar_bundle(bundle_dir: str | Path) -> bytes:
    """A bundle directory as .tar.gz bytes (files at the archive's top), for uploading."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for f in sorted(Path(bundle_dir).iterdir()):
            if f.is_file():
                tf.add(f, arcname=f.name)
    return buf.getvalue()
