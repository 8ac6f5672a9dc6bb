"""The runtime: the active model, deploy and switch, probation, rollback and status.

The data plane under the HTTP routes. :class:`Runtime` holds the active bundle and its row
validator and swaps both under a lock; every switch is written to the state store first
(:mod:`edgeops.edge.store`), so a restart comes back to the committed version. A new version is
on probation while the previous one stays loaded: too many errors roll back automatically, enough
requests or time commit it. Deploys and rollbacks run in a worker thread (verification is CPU
work) and one at a time: an upload claims the deploy lock before its body is read.

Downgrade protection: the state records the newest ``model.created_at`` ever accepted; an upload
signed with an older one is refused (409 ``downgrade``). Going back is a rollback, on purpose.

    runtime = Runtime(cfg, Metrics())
    runtime.boot()                      # recover (or rebuild) the store, load the active version
    runtime.claim_deploy()              # 409 deploy_in_progress if another one runs
    runtime.deploy(archive, staged, reason="retrain", actor="ci", claimed=True)
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from edgeops.edge import downgrade
from edgeops.edge.bundle import (
    BundleError,
    VerifiedBundle,
    incompatibilities,
    load_public_key,
    model_signature,
    verify_bundle,
    verify_manifest,
)
from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ApiError
from edgeops.edge.header_text import printable
from edgeops.edge.inference_log import InferenceLog
from edgeops.edge.metrics import Metrics
from edgeops.edge.recovery import CHOOSE, newest_first, repair_state, with_newest
from edgeops.edge.store import StateStore, StoreError
from edgeops.edge.unpack import unpack_bundle
from edgeops.edge.validation import RowValidator

log = logging.getLogger("edgeops.agent")


class Runtime:
    """Holds the active bundle; every switch goes through the state store first."""

    def __init__(self, cfg: AgentConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.public_key = load_public_key(cfg.public_key)
        self.store = StateStore(cfg.state_dir, keep=cfg.keep_versions)
        self.log = InferenceLog(
            Path(cfg.state_dir) / "inference.db",
            retention_seconds=cfg.log_retention_days * 86400,
            max_rows=cfg.log_max_rows,
            drop_fields=cfg.log_drop_fields,
            hash_fields=cfg.log_hash_fields,
            hash_salt=cfg.log_hash_salt,
            purge_interval=cfg.log_purge_interval_seconds,
            max_bytes=cfg.log_max_bytes,
            queue_max_bytes=cfg.log_queue_max_bytes,
        )
        self.bundle: VerifiedBundle | None = None
        self.validator: RowValidator | None = None
        self.previous: VerifiedBundle | None = None  # kept loaded during probation
        self.probation: dict[str, Any] | None = None
        self.since: str | None = None
        #: why nothing is served although versions are on disk (shown in status and the log)
        self.problem: str | None = None
        self.started = time.time()
        self._switch = threading.Lock()
        self._deploying = threading.Lock()

    # start-up
    def boot(self) -> None:
        """Recover the store and load the committed active version (re-verified).

        A version that does not verify, or that the agent died loading during its probation,
        is rolled back to the previous one.
        """
        self.store.recover()
        self.problem = repair_state(self.store, self.public_key)
        state = with_newest(self.store, self.store.read())
        active = state["active"]
        if not active:
            held = self.store.versions()
            if held:
                self.problem = (
                    self.problem
                    or f"no active version although {held} are on this device: {CHOOSE}"
                )
                log.error("NOTHING IS SERVED: %s", self.problem)
            else:
                log.warning("no model deployed yet: upload a bundle to POST /v1/bundles")
            return
        died = self.store.mark_loading(active)
        probation = state.get("probation") or {}
        if died == active and probation.get("version") == active and state["previous"]:
            reason = f"the agent died while loading {active} during its probation"
            log.error("%s: rolling back to %s", reason, state["previous"])
            state = self.store.rollback(reason, actor="agent")
            self.metrics.rollbacks.labels("crash").inc()
            active = state["active"]
            self.store.mark_loading(active)
        try:
            bundle = self._load(active)
        except (BundleError, StoreError) as exc:
            self.store.record(
                {"event": "load_failed", "version": active, "reason": str(exc), "by": "agent"}
            )
            self.store.clear_loading()
            found = self._fall_back(active, state["previous"], exc.message)
            if found is None:
                return
            bundle, state = found
            active = state["active"]
        self.store.clear_loading()
        probation = state.get("probation")
        self._set_active(bundle, previous=None, since=state["since"])
        if probation and probation.get("version") == active:
            self._resume_probation(active, state["previous"])

    def _fall_back(
        self, failed: str, previous: str | None, why: str
    ) -> tuple[VerifiedBundle, dict[str, Any]] | None:
        """The active version does not verify: roll back to the previous one, else to the newest
        (by created_at) that verifies; None if none does."""
        for version in dict.fromkeys([previous, *newest_first(self.store)]):
            if not version or version == failed:
                continue
            try:
                bundle = self._load(version)
            except (BundleError, StoreError):
                continue
            reason = f"{failed} failed verification at start: {why}"
            return bundle, self.store.rollback(reason, to=version, actor="agent")
        log.error(
            "active version %s does not verify (%s) and no other version here does", failed, why
        )
        return None

    def _resume_probation(self, active: str, previous: str | None) -> None:
        self.probation = {
            "version": active,
            "since": time.monotonic(),
            "requests": 0,
            "errors": 0,
        }
        if previous:
            try:
                self.previous = self._load(previous)
            except BundleError:
                self.previous = None

    def _load(self, version: str) -> VerifiedBundle:
        return verify_bundle(self.store.path_of(version), self.public_key, threads=self.cfg.threads)

    def _set_active(
        self, bundle: VerifiedBundle, previous: VerifiedBundle | None, since: str | None
    ) -> None:
        validator = RowValidator.for_bundle(bundle, self.cfg.unknown_categories == "accept")
        with self._switch:
            self.bundle, self.validator, self.previous = bundle, validator, previous
            self.since = since
        self.metrics.set_version(bundle.version)

    # deploy / rollback (run in a worker thread: verification is CPU work)
    def claim_deploy(self) -> None:
        """Take the deploy lock for one upload, or 409 ``deploy_in_progress`` at once.

        The route claims it before reading the body (one upload on disk at a time);
        :meth:`deploy` (``claimed=True``) releases it, or :meth:`release_deploy` if the body
        never arrived.
        """
        if not self._deploying.acquire(blocking=False):
            raise ApiError(
                409, "deploy_in_progress", "another bundle is being deployed; retry when it is done"
            )

    def release_deploy(self) -> None:
        self._deploying.release()

    def deploy(
        self,
        archive: Path,
        staged: Path,
        reason: str,
        actor: str,
        replace_model: bool = False,
        claimed: bool = False,
        started: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Unpack, verify, install and switch to an uploaded bundle; the old one goes on probation.

        409 if another deploy runs, the bundle is older than the newest accepted (``downgrade``),
        the version is already active or it is another model (unless ``replace_model``); 4xx if
        it does not unpack or verify (within ``verify_timeout_seconds``). ``archive`` and
        ``staged`` are removed and the deploy lock released whatever happens. ``started`` is set
        once this owns them (the route cleans up itself if it never is).
        """
        if not claimed:
            self.claim_deploy()
        if started is not None:
            started.set()
        try:
            manifest = self._unpack(archive, staged)
            downgrade.refuse(self.store, manifest)
            bundle = self._verify(staged)
            version = bundle.version
            if self.bundle is not None and version == self.bundle.version:
                raise ApiError(409, "already_active", f"{version} is already the active version")
            if self.bundle is not None:
                reason = self._same_model_or_replace(bundle, reason, replace_model)
            try:
                installed = self.store.install(staged, version)
            except StoreError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
            bundle.path = installed
            old = self.bundle
            newest = downgrade.raised(self.store, bundle.manifest)
            state = self.store.activate(
                version, reason=reason, probation=old is not None, actor=actor, newest=newest
            )
            self._set_active(bundle, previous=old, since=state["since"])
            self.problem = None
            self.probation = (
                {"version": version, "since": time.monotonic(), "requests": 0, "errors": 0}
                if old
                else None
            )
            self.store.prune()
            log.warning(  # the journal's record of every switch (as of every rollback)
                "switched to %s %s (previous %s%s) by %s: %s",
                bundle.manifest["model"]["name"],
                version,
                old.version if old else None,
                ", on probation" if old else "",
                printable(actor),
                printable(reason),
            )
            return {
                "version": version,
                "previous": state["previous"],
                "probation": self.probation is not None,
                "golden_max_abs_diff": bundle.golden_max_abs_diff,
            }
        finally:
            for p in (archive, staged):
                if p.exists():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(
                        missing_ok=True
                    )
            self._deploying.release()

    def _unpack(self, archive: Path, staged: Path) -> dict[str, Any]:
        """The upload unpacked into ``staged``; its manifest verified before any other file is
        kept (see :mod:`edgeops.edge.unpack`)."""
        try:
            manifest = unpack_bundle(
                archive,
                staged,
                self.cfg.max_bundle_bytes,
                lambda raw, sig: verify_manifest(raw, sig, self.public_key),
            )
        except BundleError as exc:
            raise _bundle_error(exc) from None
        except StoreError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        finally:
            archive.unlink(missing_ok=True)
        return manifest

    def _verify(self, staged: Path) -> VerifiedBundle:
        try:
            return verify_bundle(
                staged,
                self.public_key,
                threads=self.cfg.threads,
                timeout=self.cfg.verify_timeout_seconds or None,
            )
        except BundleError as exc:
            raise _bundle_error(exc) from None

    def _same_model_or_replace(self, bundle: VerifiedBundle, reason: str, replace: bool) -> str:
        """The history reason; 409 if ``bundle`` is another model than the active one's and not
        ``replace`` (name, input columns or classes differ: its clients would break)."""
        differs = incompatibilities(
            model_signature(self.bundle.manifest), model_signature(bundle.manifest)
        )
        if differs and not replace:
            raise ApiError(
                409,
                "model_mismatch",
                f"{bundle.version} is another model than the active {self.bundle.version} "
                f"({'; '.join(differs)}); its clients would break. To replace the model "
                "on purpose, deploy with --replace-model (header X-Edgeops-Replace-Model: true)",
            )
        if differs:
            reason = f"{reason} (replaces model {self.bundle.manifest['model']['name']})"
        return reason

    def rollback(
        self, to: str | None, reason: str, actor: str, trigger: str = "manual"
    ) -> dict[str, Any]:
        """Switch back to ``to`` (default: the previous version); ``trigger`` labels the metric.

        A manual rollback waits for a running deploy; the automatic ones (probation) do not.
        """
        with self._deploying if trigger == "manual" else nullcontext():
            state = self.store.read()
            target = to or state["previous"]
            if not target:
                raise ApiError(
                    409, "no_previous_version", "there is no previous version to roll back to"
                )
            if self.bundle is not None and target == self.bundle.version:
                raise ApiError(409, "already_active", f"{target} is already the active version")
            if self.previous is not None and self.previous.version == target:
                bundle = self.previous
            else:
                try:
                    bundle = self._load(target)
                except StoreError as exc:
                    raise ApiError(exc.status, exc.code, exc.message) from None
                except BundleError as exc:
                    if exc.code == BundleError.MISSING_FILE:
                        raise ApiError(
                            404,
                            "unknown_version",
                            f"no version {target!r} on this device; known: {self.store.versions()}",
                        ) from None
                    raise ApiError(
                        422, exc.name, f"{target} no longer verifies: {exc.message}"
                    ) from None
            older = downgrade.is_older(self.store, bundle.manifest)
            try:
                state = self.store.rollback(reason, to=target, actor=actor, downgrade=older)
            except StoreError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
            old = self.bundle
            self._set_active(bundle, previous=None, since=state["since"])
            self.probation = None
            self.problem = None
            self.metrics.rollbacks.labels(trigger).inc()
            log.warning(
                "rolled back from %s to %s%s: %s",
                old.version if old else None,
                target,
                " (a downgrade: older than the newest accepted)" if older else "",
                printable(reason),
            )
            return {
                "version": target,
                "previous": state["previous"],
                "reason": reason,
                "downgrade": older,
            }

    # probation
    def outcome(self, version: str, ok: bool) -> None:
        """Count a prediction of ``version`` for its probation: roll back or commit when due."""
        p = self.probation
        if not p or p["version"] != version:
            return
        p["requests"] += 1
        p["errors"] += 0 if ok else 1
        rate = p["errors"] / p["requests"]
        if (
            p["requests"] >= self.cfg.probation_min_requests
            and rate > self.cfg.probation_max_error_rate
        ):
            self.probation = None
            reason = (
                f"automatic: error rate {rate:.0%} over {p['requests']} requests during probation "
                f"(limit {self.cfg.probation_max_error_rate:.0%})"
            )
            try:
                self.rollback(None, reason, actor="agent", trigger="probation")
            except ApiError as exc:
                log.error("automatic rollback failed: %s", exc.message)
        elif p["requests"] >= self.cfg.probation_requests:
            self._commit(p)

    def tick(self) -> None:
        """Commit a probation that has lasted ``probation_seconds`` (called every second)."""
        p = self.probation
        if p and time.monotonic() - p["since"] >= self.cfg.probation_seconds:
            self._commit(p)

    def _commit(self, p: dict[str, Any]) -> None:
        self.probation = None
        self.previous = None
        self.store.end_probation(p["version"])

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``: active and previous version, probation, counts, recent history."""
        state = self.store.read()
        b = self.bundle
        p = self.probation
        errors = sum(n for (_, s), n in self.metrics.counts.items() if s >= 500)
        return {
            "active": None
            if b is None
            else {
                "version": b.version,
                "name": b.manifest["model"]["name"],
                "since": self.since,
                "created_at": b.manifest["model"].get("created_at"),
                "signature": model_signature(b.manifest),
            },
            "previous": state["previous"],
            "probation": None
            if not p
            else {
                "version": p["version"],
                "requests": p["requests"],
                "errors": p["errors"],
                "seconds": round(time.monotonic() - p["since"], 1),
            },
            "versions": self.store.versions(),
            "requests": {f"{e} {s}": n for (e, s), n in sorted(self.metrics.counts.items())},
            "errors": errors,
            "history": state["history"][-20:],
            "newest_accepted": state.get("newest_accepted"),
            "problem": self.problem,
            "uptime_seconds": round(time.time() - self.started, 1),
        }


def _bundle_error(exc: BundleError) -> ApiError:
    """A bundle the agent refuses, as a 422 with the reason's code (409 nothing, 5xx never)."""
    message = exc.message + (f" (fix: {exc.fix})" if exc.fix else "")
    return ApiError(422, exc.name, message, exc.fields)
