"""Staged rollout: gate -> canary -> the rest, each checked over HTTP; any failure undoes it all.

For each target, in order (canary first): upload -> the agent verifies and switches -> post-deploy
check (ready on the new version, the golden examples predicted over HTTP, a short error-rate
watch) -> next. If anything fails, every target that already switched is rolled back to what it
ran before, the registry keeps the version out of production, and the command exits non-zero
naming the target and the reason. Every decision goes to the audit log.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeops.deploy.registry import AuditLog, Registry
from edgeops.deploy.targets import AgentClient, AgentError, Target
from edgeops.edge.bundle import VerifiedBundle
from edgeops.edge.store import tar_bundle
from edgeops.errors import EdgeopsError

EXIT_ROLLOUT_FAILED = 4


def post_deploy_check(
    client: AgentClient, bundle: VerifiedBundle, watch_seconds: float, max_error_rate: float
) -> dict[str, Any]:
    """Health, golden predictions over HTTP, then a short watch of the agent's own counters."""
    version = bundle.version
    ready = client.ready()
    if not ready or ready.get("model_version") != version:
        raise AgentError(
            client.target.name, f"not ready on {version} after the switch (readyz: {ready})"
        )
    cats = {
        s.name: set(s.categories or ()) for s in bundle.model.inputs if s.categories is not None
    }
    # the agent may refuse unseen categories (its policy); send the golden rows it accepts
    examples = [
        ex
        for ex in bundle.manifest["golden"]["examples"]
        if all(
            ex["inputs"].get(k) is None or ex["inputs"][k] in allowed for k, allowed in cats.items()
        )
    ]
    tol = float(bundle.manifest["golden"].get("tolerance", 1e-5))
    # marked as a check: the agent answers it and does not log it (it is not traffic)
    answer = client.predict([ex["inputs"] for ex in examples], check=True)
    if answer.get("model_version") != version:
        raise AgentError(
            client.target.name, f"answered with model {answer.get('model_version')}, not {version}"
        )
    got = np.asarray(
        [list(p["probabilities"].values()) for p in answer["predictions"]], dtype=float
    )
    want = np.asarray([ex["probabilities"] for ex in examples], dtype=float)
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if diff > tol:
        raise AgentError(
            client.target.name,
            f"golden predictions over HTTP differ by {diff:.2e} (tolerance {tol:.0e})",
        )
    deadline = time.monotonic() + watch_seconds
    while True:
        status = client.status()
        active = (status.get("active") or {}).get("version")
        if active != version:
            raise AgentError(
                client.target.name,
                f"left {version} during the watch (now {active}): it rolled back by itself",
            )
        p = status.get("probation") or {}
        if p.get("requests") and p.get("errors", 0) / p["requests"] > max_error_rate:
            raise AgentError(
                client.target.name, f"error rate {p['errors']}/{p['requests']} during the watch"
            )
        if time.monotonic() >= deadline:
            return {"golden_max_abs_diff": diff, "probation": p}
        time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))


def rollout(
    bundle: VerifiedBundle,
    bundle_dir: Path,
    targets: list[Target],
    registry: Registry,
    audit: AuditLog,
    cfg: dict[str, Any],
    reason: str,
    by: str,
    before: dict[str, str | None],
    log: Any = print,
    *,
    switched_already: tuple[str, ...] = (),
    final: bool = True,
    replace_model: bool = False,
) -> dict[str, Any]:
    """Deploy ``bundle`` to ``targets`` in order; undo everything on the first failure.

    ``final=False`` stops after these targets with the version in ``staging`` (the canary phase
    of an approved rollout); ``switched_already`` names targets that phase switched: they are
    not deployed again, but a failure later rolls them back too.
    """
    name, version = bundle.manifest["model"]["name"], bundle.version
    archive = tar_bundle(bundle_dir)
    switched: list[Target] = [t for t in targets if t.name in switched_already]
    done: dict[str, Any] = {}
    for i, t in enumerate(targets):
        role = "canary" if i == 0 and (len(targets) > 1 or not final) else "target"
        client = AgentClient(t)
        try:
            if t.name in switched_already:
                log(f"  {t.name}: runs {version} since the canary phase")
                done[t.name] = {"skipped": "canary phase"}
                continue
            if before.get(t.name) == version:
                log(f"  {t.name}: already runs {version}")
                done[t.name] = {"skipped": "already active"}
                continue
            log(f"  {t.name} ({role}): uploading {version} ({len(archive) / 1e6:.2f} MB)")
            client.upload(archive, reason=reason, actor=by, replace_model=replace_model)
            switched.append(t)
            if i == 0:
                registry.set_stage(name, version, "staging", by, note=f"canary {t.name}")
                registry.save()
            check = post_deploy_check(
                client,
                bundle,
                float(cfg.get("watch_seconds", 3)),
                float(cfg.get("max_error_rate", 0.0)),
            )
            done[t.name] = check
            log(
                f"  {t.name}: healthy on {version} (golden |Δp| {check['golden_max_abs_diff']:.1e})"
            )
        except (AgentError, EdgeopsError) as exc:
            failure = str(exc)
            log(f"  {t.name}: FAILED: {failure}")
            undone = undo(switched, before, name, version, registry, audit, by, failure, log)
            registry.set_stage(name, version, "candidate", by, note=f"rollout failed at {t.name}")
            registry.save()
            audit.append(
                "rollout_failed",
                model=name,
                version=version,
                target=t.name,
                error=failure,
                rolled_back=undone,
                by=by,
            )
            raise EdgeopsError(
                f"rollout of {version} failed at target {t.name}: {failure}; rolled back {undone or 'nothing'}",
                fix="fix the target (is the agent running and reachable? the token right?) and deploy again",
                exit_code=EXIT_ROLLOUT_FAILED,
            ) from None
    for t in targets:
        if t.name in done and "skipped" not in done[t.name]:
            registry.record_deployment(
                name, version, t.name, "deploy", reason, by, previous=before.get(t.name)
            )
    if not final:
        registry.save()
        audit.append(
            "canary",
            model=name,
            version=version,
            targets=[t.name for t in targets],
            reason=reason,
            by=by,
        )
        return done
    registry.set_stage(name, version, "production", by, note=reason)
    registry.save()
    audit.append(
        "deploy",
        model=name,
        version=version,
        targets=[t.name for t in targets],
        reason=reason,
        by=by,
    )
    return done


def undo(
    switched: list[Target],
    before: dict[str, str | None],
    name: str,
    version: str,
    registry: Registry,
    audit: AuditLog,
    by: str,
    failure: str,
    log: Any,
) -> list[str]:
    """Roll every switched target back to what it ran before; return the ones that were."""
    undone = []
    for t in reversed(switched):
        prev = before.get(t.name)
        if not prev:
            log(f"  {t.name}: had no model before; {version} stays until the next deploy")
            continue
        try:
            AgentClient(t).rollback(
                prev, reason=f"rollout of {version} failed: {failure}"[:200], actor=by
            )
            registry.record_deployment(
                name, prev, t.name, "rollback", f"rollout of {version} failed", by, previous=version
            )
            audit.append(
                "rollback",
                model=name,
                version=prev,
                target=t.name,
                previous=version,
                reason="rollout failed",
                by=by,
            )
            undone.append(t.name)
            log(f"  {t.name}: rolled back to {prev}")
        except (AgentError, EdgeopsError) as exc:
            audit.append(
                "rollback_failed", model=name, target=t.name, version=prev, error=str(exc), by=by
            )
            log(f"  {t.name}: ROLLBACK FAILED: {exc}")
    return undone


def bundle_sha256(bundle_dir: Path) -> str:
    """A hash of the whole bundle (manifest + signature + model)."""
    h = hashlib.sha256()
    for f in sorted(Path(bundle_dir).iterdir()):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()
