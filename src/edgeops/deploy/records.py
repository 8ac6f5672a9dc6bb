"""Tamper-evident records: the audit log is a hash chain, its head and the registry are signed.

Every audit entry carries ``prev``, the chain hash of everything before it; the chain hash after
entry *n* is ``sha256(hash_{n-1} + line_n)``, starting from a fixed genesis. Beside the log,
``audit.seal`` holds the number of entries, the chain head, the sha256 of ``registry.json`` and an
ed25519 signature over them, made with the bundle signing key (``bundle.signing_key``, default
``$EDGEOPS_KEY_DIR/signing.key``) and checked with its public key, as bundles are. So:

- an entry edited, removed or reordered breaks the link of the entry after it (named), or, for
  the last one, the signed head; entries appended by hand are not covered by the signature;
- an edit of the registry (an actor, a metric, a bundle hash, a stage) or its deletion does not
  match the signed hash;
- a deleted or re-signed seal needs the private key to forge, which never leaves the training host.

Every write goes through :meth:`Seal.writing`: it verifies the records first (a broken chain is
never re-signed: the tampering would be laundered), makes the change under a lock and signs the
new state. ``edgeops gate``, ``deploy``, ``rollback`` and ``doctor`` refuse to act on records
that do not verify, naming the entry; a person who has reviewed a change (or records written
before edgeops signed them) runs ``edgeops audit seal --reason TEXT``: the current state is taken
as it is from then on (the seal's ``anchor``), recorded as an entry of its own.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeops import atomic, locks
from edgeops.errors import EdgeopsError

FORMAT = 1
GENESIS = hashlib.sha256(b"edgeops audit chain 1").hexdigest()
#: the exit code of a command refused because the records do not verify
EXIT_BROKEN = 12


def link(prev: str, line: bytes) -> str:
    """The chain hash after ``line`` (the entry's bytes, newline excluded)."""
    return hashlib.sha256(bytes.fromhex(prev) + line).hexdigest()


def file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


SEAL_HINT = "sign the records as they are with `edgeops audit seal --reason TEXT` (an entry)"


class RecordsBroken(EdgeopsError):
    """The registry or the audit log is not what edgeops last signed: nothing is done on it.

    ``changed``: the file that differs (the fix restores it); ``fix``: a fix of its own."""

    def __init__(self, problem: str, changed: Path, fix: str | None = None) -> None:
        super().__init__(
            f"the deploy records do not verify: {problem}; nothing was done",
            fix=fix
            or f"restore {changed} from git (`git log -p {changed}` shows what changed, `git "
            f"checkout -- {changed}` restores it) or from the backup; if a person changed it on "
            f"purpose, review the change and {SEAL_HINT}",
            exit_code=EXIT_BROKEN,
        )


@dataclass(frozen=True)
class Anchor:
    """Entries taken as they were (records from before the chain, or a reviewed repair)."""

    entries: int = 0
    head: str = GENESIS


@dataclass(frozen=True)
class State:
    """What the records hold now: entries, chain head, the registry's hash."""

    entries: int
    head: str
    registry_sha256: str | None
    anchor: Anchor
    signed: bool

    def body(self, key_id: str, at: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "entries": self.entries,
            "head": self.head,
            "registry_sha256": self.registry_sha256,
            "anchor": asdict(self.anchor),
            "key_id": key_id,
            "at": at,
        }


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Chain:
    """The audit log read as a chain: each entry's bytes and the chain hash before it."""

    lines: list[bytes]
    heads: list[str]  # heads[i]: the chain hash after the first i entries (heads[0] = GENESIS)

    @classmethod
    def read(cls, path: Path) -> Chain:
        raw = path.read_bytes() if path.exists() else b""
        lines = [line for line in raw.split(b"\n") if line.strip()]
        heads = [GENESIS]
        for line in lines:
            heads.append(link(heads[-1], line))
        return cls(lines, heads)

    def describe(self, i: int) -> str:
        """Entry ``i`` (1-based) in words: its number, event and time."""
        try:
            e = json.loads(self.lines[i - 1])
            return f"entry {i} ({e.get('event')} at {e.get('at')})"
        except (ValueError, IndexError, AttributeError):
            return f"entry {i}"

    def links(self, anchor: Anchor) -> str | None:
        """The first broken link after ``anchor``, in words (None: every entry follows on)."""
        if anchor.entries > len(self.lines):
            return (
                f"the audit log has {len(self.lines)} entries, fewer than the "
                f"{anchor.entries} its seal took as they were: entries were removed"
            )
        if self.heads[anchor.entries] != anchor.head:
            return (
                f"the first {anchor.entries} entries are not those the seal took as they "
                "were: one of them was edited, removed or reordered"
            )
        for i in range(anchor.entries + 1, len(self.lines) + 1):
            try:
                entry = json.loads(self.lines[i - 1])
            except ValueError:
                return f"{self.describe(i)} is not JSON: the audit log was edited"
            prev = entry.get("prev") if isinstance(entry, dict) else None
            if prev != self.heads[i - 1]:
                what = (
                    "has no chain link" if prev is None else "does not follow the entry before it"
                )
                return (
                    f"{self.describe(i)} {what}: an entry before it was edited, removed or "
                    "reordered, or this one was written by hand"
                )
        return None


class Seal:
    """The signed state of one registry and audit log (``audit.seal`` beside the log)."""

    def __init__(
        self,
        audit: str | Path,
        registry: str | Path,
        public_key: Any,
        signing_key: str | Path | None = None,
    ) -> None:
        self.audit, self.registry = Path(audit), Path(registry)
        self.path = self.audit.with_suffix(".seal")
        self.public_key = public_key
        self.signing_key = Path(signing_key).expanduser() if signing_key else None

    @property
    def lock_path(self) -> Path:
        return self.audit.with_name(self.audit.name + ".lock")

    # ---- reading -------------------------------------------------------------------------------
    def _signed(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        from cryptography.exceptions import InvalidSignature

        from edgeops.edge.bundle import key_id

        try:
            doc = json.loads(self.path.read_bytes())
            body, sig = doc["body"], base64.b64decode(doc["signature"], validate=True)
            self.public_key.verify(sig, _canonical(body))
        except (ValueError, KeyError, TypeError, InvalidSignature):
            problem = f"{self.path} is not signed by the signing key"
            raise RecordsBroken(problem, self.path) from None
        if body.get("key_id") != key_id(self.public_key) or body.get("format") != FORMAT:
            raise RecordsBroken(f"{self.path} names another key or format", self.path)
        return body

    def verify(self) -> State:
        """The records' state, if they are what edgeops last signed; else :class:`RecordsBroken`
        naming the first entry (or the registry) that differs. Read under a shared lock: never
        between a writer's change and its signature."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # a read-only checkout: nobody writes there either
            return self._verify()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return self._verify()
        finally:
            os.close(fd)

    def _verify(self) -> State:
        chain = Chain.read(self.audit)
        registry = file_sha256(self.registry)
        body = self._signed()
        n = len(chain.lines)
        if body is None:
            if n or registry is not None:
                raise RecordsBroken(
                    f"{self.path} is missing: {self.audit} ({n} entries) and {self.registry} are "
                    "not signed (written by an edgeops from before signed records, or the seal "
                    "was deleted)",
                    self.path,
                    fix=f"after an upgrade: review the records (`git log -p {self.audit.parent}`) "
                    "and sign them once: `edgeops audit seal --reason 'upgrade to signed "
                    f"records'`; if the seal was deleted: restore {self.path} from git",
                )
            return State(0, GENESIS, None, Anchor(), signed=False)
        anchor = Anchor(**body["anchor"])
        if problem := chain.links(anchor):
            raise RecordsBroken(problem, self.audit)
        signed_n = body["entries"]
        if n < signed_n:
            removed = f"entries after {chain.describe(n)} were removed" if n else "all removed"
            problem = f"{self.audit} has {n} entries, its signed seal {signed_n}: {removed}"
            raise RecordsBroken(problem, self.audit)
        if chain.heads[signed_n] != body["head"]:
            problem = f"{chain.describe(signed_n)}, the last one signed, was edited"
            raise RecordsBroken(problem, self.audit)
        if n > signed_n:
            raise RecordsBroken(
                f"{chain.describe(signed_n + 1)} and after ({n - signed_n} in all) are not covered "
                "by the signature: appended by hand, or by a process that died before it signed",
                self.audit,
                fix=f"look at those entries (`tail -n {n - signed_n} {self.audit}`): written by a "
                f"run that died, and right: {SEAL_HINT}; else restore {self.audit} from git",
            )
        if registry != body["registry_sha256"]:
            what = "is missing" if registry is None else "was changed outside edgeops"
            raise RecordsBroken(
                f"{self.registry} {what} (it is not the signed state)", self.registry
            )
        return State(n, chain.heads[n], registry, anchor, signed=True)

    # ---- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, reanchor: bool = False) -> Iterator[State]:
        """Verify, let the block change the records, then sign their new state; one writer at a
        time. ``reanchor``: take the records as they are now, even if they do not verify
        (``edgeops audit seal``, after a person's review)."""
        key = self._private_key()
        with locks.hold(self.lock_path, 120.0, None, what="write of the deploy records"):
            if reanchor:
                chain = Chain.read(self.audit)
                state = State(len(chain.lines), chain.heads[-1], None, Anchor(), signed=False)
                anchor = Anchor(len(chain.lines), chain.heads[-1])
            else:
                state = self._verify()
                anchor = state.anchor
            try:
                yield state
            finally:  # also when the block failed after writing: what is there is this writer's
                chain = Chain.read(self.audit)
                registry = file_sha256(self.registry)
                new = State(len(chain.lines), chain.heads[-1], registry, anchor, signed=True)
                self._sign(new, key)

    def _sign(self, state: State, key: Any) -> None:
        from edgeops.edge.bundle import key_id
        from edgeops.locks import now_iso

        body = state.body(key_id(key.public_key()), now_iso())
        sig = base64.b64encode(key.sign(_canonical(body))).decode()
        atomic.write_json(self.path, {"body": body, "signature": sig})

    def _private_key(self) -> Any:
        from edgeops.edge.bundle import key_id
        from edgeops.keys import load_private_key

        key = load_private_key(self.signing_key)
        if key_id(key.public_key()) != key_id(self.public_key):
            raise EdgeopsError(
                "the signing key does not belong to the trusted public key: the deploy records "
                "would not verify",
                fix="use the key pair the devices trust (bundle.signing_key, EDGEOPS_KEY_DIR)",
            )
        return key
