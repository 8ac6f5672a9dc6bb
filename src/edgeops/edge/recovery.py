"""Start-up repair of the state directory: a damaged ``state.json`` and the downgrade mark.

``state.json`` is only ever replaced whole (write-temp-then-rename), but disks, people and
restores from backups still leave it cut short, overwritten or gone while ``versions/`` holds
verified bundles. Serving "no model" then would take a working device off line, so the state
is rebuilt from what is on disk:

- every version whose signature, manifest and file hashes verify is a candidate (others are
  left out and named); the newest by signed ``model.created_at`` becomes active, the next one
  previous; the damaged file is kept as ``state.json.damaged-<UTC time>``;
- two or more candidates sharing the newest ``created_at`` are ambiguous: the agent activates
  none of them and says, in the log and ``GET /v1/status``'s ``problem``, how to choose one
  (``POST /v1/rollback {"version": V}`` / ``edgeops rollback --target TARGET --to V``).

    problem = repair_state(store, public_key)   # None, or why nothing is served
"""

from __future__ import annotations

import json
import logging
from typing import Any

from edgeops.edge import manifest as manifest_shape
from edgeops.edge.bundle import MANIFEST, BundleError, verify_files
from edgeops.edge.store import StateStore, StoreError

log = logging.getLogger("edgeops.agent")

CHOOSE = (
    'choose one with POST /v1/rollback {"version": V} (edgeops rollback --target TARGET --to V)'
)


def repair_state(store: StateStore, public_key: Any) -> str | None:
    """Rebuild a damaged or lost ``state.json`` (see the module); return the problem that keeps
    the agent from serving (ambiguous versions), else None."""
    damage = store.damage()
    if damage is None:
        return None
    found, skipped = [], []
    for version in store.versions():
        try:
            m = verify_files(store.path_of(version), public_key)
            found.append((manifest_shape.created_at(m), version, m["model"]["created_at"]))
        except (BundleError, StoreError, ValueError) as exc:
            skipped.append(f"{version} ({getattr(exc, 'message', exc)})")
    found.sort(reverse=True)
    aside = store.set_aside()
    why = f"{damage}; {f'kept as {aside.name}' if aside else 'no file left to keep'}"
    if skipped:
        why += f"; not verified, left out: {', '.join(skipped)}"
    newest = {"version": found[0][1], "created_at": found[0][2]} if found else None
    tied = [v for t, v, _ in found if t == found[0][0]] if found else []
    if len(tied) > 1:
        problem = (
            f"state.json was damaged and the newest versions on disk are ambiguous: {tied} "
            f"share created_at {found[0][2]}. Nothing is served until an operator {CHOOSE}"
        )
        store.rebuild(
            None,
            None,
            newest,
            {
                "event": "state_rebuilt",
                "version": None,
                "reason": f"{why}; ambiguous: {tied}",
                "by": "agent",
            },
        )
        log.error("STATE REBUILT, NOTHING ACTIVATED: %s (%s)", problem, why)
        return problem
    active = found[0][1] if found else None
    previous = found[1][1] if len(found) > 1 else None
    store.rebuild(
        active,
        previous,
        newest,
        {"event": "state_rebuilt", "version": active, "reason": why, "by": "agent"},
    )
    log.warning(
        "STATE REBUILT: %s; from the verified versions on disk: active %s, previous %s "
        "(the newest created_at wins)",
        why,
        active,
        previous,
    )
    return None


def _created(store: StateStore) -> list[tuple[Any, str, str]]:
    """``(created_at, version, created_at text)`` of the versions on disk, newest first, read from
    their manifests (verified when they were installed; a damaged one is left out)."""
    out = []
    for version in store.versions():
        try:
            m = json.loads((store.path_of(version) / MANIFEST).read_bytes())
            out.append((manifest_shape.created_at(m), version, m["model"]["created_at"]))
        except (OSError, ValueError, TypeError, AttributeError, KeyError, StoreError):
            continue
    return sorted(out, reverse=True)


def newest_first(store: StateStore) -> list[str]:
    """The versions on disk, newest ``created_at`` first."""
    return [version for _, version, _ in _created(store)]


def with_newest(store: StateStore, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its downgrade mark. A state written before the mark existed gets the newest
    ``created_at`` of the versions on disk (every one of them was accepted once)."""
    if state.get("newest_accepted") is not None:
        return state
    found = _created(store)
    if not found:
        return state
    return store.set_newest({"version": found[0][1], "created_at": found[0][2]})
