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
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeops import atomic, locks
from edgeops.deploy.records import Chain, Seal
from edgeops.errors import EdgeopsError
from edgeops.locks import now_iso, whoami

STAGES = ("candidate", "staging", "production", "archived")
FORMAT = 1


class Registry:
    """Load, change and save ``registry.json``; every save validates first."""

    def __init__(self, path: str | Path, seal: Seal | None = None) -> None:
        self.path = Path(path)
        #: signs every write together with the audit log (:mod:`edgeops.deploy.records`)
        self.seal = seal
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

    def reload(self) -> Registry:
        """Read the file again (another command may have written it since)."""
        self.data = self._load()
        return self

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(
        self, timeout: float = 900.0, log: Callable[[str], Any] = print
    ) -> Iterator[Registry]:
        """Hold the registry for a whole deploy: wait for the lock (up to ``timeout`` seconds,
        saying who holds it), then read the registry again."""
        with locks.hold(self.lock_path, timeout, log, what="deploy"):
            self.reload()
            self._held = True
            try:
                yield self
            finally:
                self._held = False

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
        with locks.hold(self.lock_path, 60.0, None, what="deploy", announce=False):
            current = _digest(self.path.read_bytes() if self.path.exists() else None)
            if current != self._read_digest:
                raise EdgeopsError(
                    f"{self.path} changed on disk since this command read it (another deploy "
                    "wrote it meanwhile); nothing was written",
                    fix="run the command again: it reads the registry afresh",
                )
            self._write()

    def _write(self) -> None:
        with self.seal.writing() if self.seal else contextlib.nullcontext():
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

    def record_deployment(
        self,
        name: str,
        version: str,
        target: str,
        action: str,
        reason: str,
        by: str,
        previous: str | None = None,
    ) -> None:
        self.model(name)["deployments"].append(
            {
                "at": now_iso(),
                "version": version,
                "target": target,
                "action": action,
                "previous": previous,
                "reason": reason,
                "by": by,
            }
        )

    def production(self, name: str) -> str | None:
        for v, e in self.data["models"].get(name, {}).get("versions", {}).items():
            if e["stage"] == "production":
                return v
        return None


def _digest(raw: bytes | None) -> str | None:
    return None if raw is None else hashlib.sha256(raw).hexdigest()


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
    """Append-only JSON lines: each entry is written with one write() and fsync'd, and carries
    ``prev``, the chain hash of the entries before it; with a ``seal`` (what every command
    uses), the new chain head is signed with the registry (:mod:`edgeops.deploy.records`)."""

    def __init__(self, path: str | Path, seal: Seal | None = None) -> None:
        self.path = Path(path)
        self.seal = seal

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        if self.seal is None:
            return self.append_at(Chain.read(self.path).heads[-1], event, **fields)
        with self.seal.writing() as state:
            return self.append_at(state.head, event, **fields)

    def append_at(self, prev: str, event: str, **fields: Any) -> dict[str, Any]:
        """Append an entry after the chain head ``prev`` (the caller holds the seal's write)."""
        entry = {"at": now_iso(), "event": event, "by": fields.pop("by", whoami()), **fields}
        entry["prev"] = prev
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
        return [json.loads(line) for line in Chain.read(self.path).lines]
