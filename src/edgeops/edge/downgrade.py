"""Downgrade protection (as Mender's and TUF's): an older bundle is never installed by upload.

The state records the newest signed ``model.created_at`` the device has ever accepted (with its
version): ``state.json``'s ``newest_accepted``, kept across restarts and pruning. An upload
created before it is refused, however validly signed: whoever holds an old bundle (and the deploy
token) cannot quietly bring back a model that was replaced, e.g. one with a known flaw. The same
``created_at`` is no downgrade. Going back on purpose is a rollback to a version still on the
device, recorded as a downgrade in the history.

    refuse(store, manifest)                       # 409 downgrade, or nothing
    store.activate(..., newest=raised(store, manifest))
"""

from __future__ import annotations

from typing import Any

from edgeops.edge import manifest as manifest_shape
from edgeops.edge.errors import ApiError
from edgeops.edge.store import StateStore

ROLLBACK_HOW = "POST /v1/rollback / edgeops rollback"


def is_older(store: StateStore, manifest: dict[str, Any]) -> bool:
    """``manifest`` was created before the newest bundle accepted."""
    newest = store.newest()
    return newest is not None and manifest_shape.created_at(manifest) < newest[0]


def refuse(store: StateStore, manifest: dict[str, Any]) -> None:
    """409 ``downgrade`` naming both versions if ``manifest`` is older than the newest accepted."""
    if not is_older(store, manifest):
        return
    m, n = manifest["model"], store.newest()[1]
    raise ApiError(
        409,
        "downgrade",
        f"{m['version']} (created {m['created_at']}) is older than {n['version']} (created "
        f"{n['created_at']}), the newest bundle this device has accepted: uploads of older "
        f"bundles are refused (downgrade protection). To go back on purpose, roll back with "
        f"the deploy token: {ROLLBACK_HOW} (to a version still on the device)",
        [{"field": "model.created_at", "problem": f"older than {n['created_at']}"}],
    )


def raised(store: StateStore, manifest: dict[str, Any]) -> dict[str, str] | None:
    """The new mark if ``manifest`` is newer than the current one (None: the mark stays)."""
    newest = store.newest()
    if newest is not None and manifest_shape.created_at(manifest) <= newest[0]:
        return None
    return {"version": manifest["model"]["version"], "created_at": manifest["model"]["created_at"]}
