"""What ``edgeops gate | deploy | rollback | status`` do, as functions tests can call directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeops import atomic
from edgeops.deploy.gate import (
    EXIT_REJECTED,
    active_versions,
    figures_text,
    run_gate,
    verify_local,
)
from edgeops.deploy.records import Seal, State
from edgeops.deploy.registry import AuditLog, Registry, whoami
from edgeops.deploy.rollout import bundle_sha256, rollout
from edgeops.deploy.targets import AgentClient, AgentError, Target, Targets, load_targets
from edgeops.edge.bundle import (
    BundleError,
    VerifiedBundle,
    incompatibilities,
    load_public_key,
    model_signature,
)
from edgeops.errors import EdgeopsError
from edgeops.params import load_params, section


@dataclass
class DeployContext:
    """Everything a deploy command needs, resolved from params.yaml and the options."""

    targets: Targets
    registry: Registry
    audit: AuditLog
    public_key: Any
    cfg: dict[str, Any]
    primary_metric: str
    test_data: Path
    gate_report: Path
    target_column: str
    production_test_data: Path | None = None

    @classmethod
    def load(
        cls,
        params_path: str | Path = "params.yaml",
        targets: str | Path | None = None,
        registry: str | Path | None = None,
        audit: str | Path | None = None,
        public_key: str | Path | None = None,
        test_data: str | Path | None = None,
    ) -> DeployContext:
        from edgeops.keys import PUBLIC_NAME, default_key_dir

        params = load_params(params_path)
        cfg = section(params, "deploy")
        root = Path(params_path).resolve().parent  # params' paths are the project's, wherever from

        def project_path(value: str | Path) -> Path:
            return Path(value) if Path(value).is_absolute() else root / value

        tg = load_targets(targets or project_path(cfg.get("targets", "deploy/targets.yaml")))
        pub_path = Path(public_key or tg.public_key or default_key_dir() / PUBLIC_NAME).expanduser()
        try:
            pub = load_public_key(pub_path)
        except BundleError as exc:
            raise EdgeopsError(
                exc.message, fix="set public_key in the targets file or pass --public-key"
            ) from None
        registry = registry or project_path(cfg.get("registry", "deploy/registry.json"))
        audit = audit or project_path(cfg.get("audit_log", "deploy/audit.jsonl"))
        # the records are signed with the key that signs the bundles (the same trust)
        seal = Seal(audit, registry, pub, (params.get("bundle") or {}).get("signing_key"))
        return cls(
            targets=tg,
            registry=Registry(registry, seal),
            audit=AuditLog(audit, seal),
            public_key=pub,
            cfg={
                **(cfg.get("gate") or {}),
                "primary_metric": section(params, "evaluate").get("primary_metric", "roc_auc"),
                "watch_seconds": cfg.get("watch_seconds", 3),
                "max_error_rate": cfg.get("max_error_rate", 0.0),
            },
            primary_metric=section(params, "evaluate").get("primary_metric", "roc_auc"),
            test_data=Path(test_data or cfg.get("test_data", "data/prepared/test.parquet")),
            production_test_data=Path(
                cfg.get("production_test_data", "data/prepared/test_production.parquet")
            ),
            gate_report=Path(cfg.get("gate_report", "reports/gate.json")),
            target_column=section(params, "validate")["schema"]["target"],
        )

    def verify_records(self) -> State:
        """The registry and audit log as edgeops last signed them, else :class:`RecordsBroken`
        naming what differs: every command that acts on them calls this before anything else."""
        if self.audit.seal is None:
            raise EdgeopsError("these deploy records have no seal to verify them with")
        return self.audit.seal.verify()

    def test_frame(self) -> Any:
        import pandas as pd

        if not self.test_data.is_file():
            raise EdgeopsError(f"test data {self.test_data} not found", fix="run `dvc repro` first")
        return pd.read_parquet(self.test_data)

    def production_frame(self) -> Any:
        """The held-out labelled production rows (a set the gate judges), or None."""
        import pandas as pd

        path = self.production_test_data
        return pd.read_parquet(path) if path is not None and path.is_file() else None


def gate(
    ctx: DeployContext, bundle_dir: Path, targets: list[Target], by: str | None = None
) -> dict[str, Any]:
    """Run the gate, write reports/gate.json, log the decision; return the report."""
    by = by or whoami()
    ctx.verify_records()
    ctx.registry.reload()  # the production version as of now, not of when the context was made
    bundle = verify_local(bundle_dir, ctx.public_key)
    name = bundle.manifest["model"]["name"]
    return _gate(ctx, bundle, targets, name, by)


def _gate(
    ctx: DeployContext,
    bundle: VerifiedBundle,
    targets: list[Target],
    name: str,
    by: str,
    replace_model: bool = False,
) -> dict[str, Any]:
    """The gate on the source's holdout, the production rows and both: reports/gate.json, an
    entry."""
    report = run_gate(
        bundle,
        targets,
        ctx.registry.production(name),
        ctx.test_frame(),
        ctx.target_column,
        ctx.cfg,
        ctx.public_key,
        replace_model=replace_model,
        production_df=ctx.production_frame(),
        registered=ctx.registry.data["models"].get(name, {}).get("versions", {}),
    )
    atomic.write_json(ctx.gate_report, report)
    ctx.audit.append(
        "gate",
        model=name,
        version=bundle.version,
        champion=report["champion"]["version"],
        promote=report["promote"],
        reason=report["reason"],
        by=by,
    )
    return report


def deploy(
    ctx: DeployContext,
    bundle_dir: Path,
    names: list[str] | None,
    force: bool = False,
    reason: str = "manual",
    by: str | None = None,
    log: Any = print,
    gate_report: dict[str, Any] | None = None,
    replace_model: bool = False,
) -> dict[str, Any]:
    """Gate (unless forced), then the staged rollout. Raises EdgeopsError (exit 3 or 4) on refusal/failure.

    ``gate_report``: the report :func:`gate` just wrote for this bundle and these targets (the
    training flow runs the gate as a step of its own); the gate is then not run a second time."""
    return deploy_phase(
        ctx,
        bundle_dir,
        names,
        "all",
        force=force,
        reason=reason,
        by=by,
        log=log,
        gate_report=gate_report,
        replace_model=replace_model,
    )


def deploy_phase(
    ctx: DeployContext,
    bundle_dir: Path,
    names: list[str] | None,
    phase: str,
    force: bool = False,
    reason: str = "manual",
    by: str | None = None,
    log: Any = print,
    gate_report: dict[str, Any] | None = None,
    before: dict[str, str | None] | None = None,
    replace_model: bool = False,
) -> dict[str, Any]:
    """:func:`deploy` in one go (``all``) or in two phases for a person's approval in between:
    ``canary`` (gate, then the first target only; the version stays in ``staging``) and
    ``fleet`` (the rest, with ``before`` = what every target ran before the canary phase).

    A bundle of another model than a target runs (name, input columns or classes differ) is
    refused unless ``replace_model`` (recorded in the audit log; the gate then has no champion).
    Holds the registry's lock throughout: a second deploy waits for this one (and says so)."""
    with ctx.registry.locked(log=log):
        return _deploy_phase(
            ctx,
            bundle_dir,
            names,
            phase,
            force=force,
            reason=reason,
            by=by,
            log=log,
            gate_report=gate_report,
            before=before,
            replace_model=replace_model,
        )


def _deploy_phase(
    ctx: DeployContext,
    bundle_dir: Path,
    names: list[str] | None,
    phase: str,
    force: bool,
    reason: str,
    by: str | None,
    log: Any,
    gate_report: dict[str, Any] | None,
    before: dict[str, str | None] | None,
    replace_model: bool,
) -> dict[str, Any]:
    """:func:`deploy_phase` with the registry's lock held."""
    by = by or whoami()
    ctx.verify_records()  # nothing on a device changes on records that do not verify

    def roll(these: list[Target], **kw: Any) -> dict[str, Any]:
        """The staged rollout of this bundle to ``these`` (``before``: as it is when called)."""
        return rollout(
            bundle,
            bundle_dir,
            these,
            ctx.registry,
            ctx.audit,
            ctx.cfg,
            reason,
            by,
            before,
            log,
            **kw,
        )

    targets = ctx.targets.select(names)
    bundle = verify_local(bundle_dir, ctx.public_key)
    name, version = bundle.manifest["model"]["name"], bundle.version
    if phase == "fleet":
        if before is None:
            raise EdgeopsError("the fleet phase needs what the targets ran before the canary phase")
        approval = approval_of(ctx, name, version)
        if approval is None:
            raise EdgeopsError(
                f"no approval of {name} {version} is recorded after its canary: no fleet rollout",
                fix="approve it in the Prefect UI (the training run's pause), or deploy it "
                "yourself (edgeops deploy --all: the person who runs it decides)",
                exit_code=EXIT_REJECTED,
            )
        log(
            f"deploying {name} {version} to the fleet: {', '.join(t.name for t in targets[1:])} "
            f"(approved by {approval.get('approver')})"
        )
        done = roll(targets, switched_already=(targets[0].name,))
        return {"targets": done, "before": before}
    first = targets[:1] if phase == "canary" else targets
    log(f"deploying {name} {version} to {', '.join(t.name for t in first)}")
    before = active_versions(targets)  # every target must answer before anything changes
    replaced = other_models(targets, bundle, replace_model)
    if replaced:
        log(f"replacing another model on {', '.join(replaced)} (--replace-model)")
        ctx.audit.append(
            "replace_model", model=name, version=version, targets=replaced, reason=reason, by=by
        )
    ctx.registry.register(bundle.manifest, bundle_sha256(bundle_dir), by)
    ctx.registry.save()
    if force:
        report = {
            "promote": True,
            "forced": True,
            "reason": "--force: the gate was skipped",
            "challenger": {"version": version},
            "targets": before,
        }
        atomic.write_json(ctx.gate_report, report)
        ctx.audit.append("gate_skipped", model=name, version=version, reason=reason, by=by)
    else:
        report = gate_report
        if report is None or report["challenger"]["version"] != version:
            report = _gate(ctx, bundle, targets, name, by, replace_model=bool(replaced))
        if report.get("already_deployed") and all(v == version for v in before.values()):
            log(f"every target already runs {version}: nothing to do")
            return {"gate": report, "targets": {}}
        if figures := figures_text(report):
            log("gate figures (this run / champion):\n" + figures.rstrip("\n"))
        log(f"gate: {'promote' if report['promote'] else 'refuse'}: {report['reason']}")
        if not report["promote"]:
            raise EdgeopsError(
                f"the gate refused {version}: {report['reason']} (details in {ctx.gate_report})",
                fix="improve the model, or deploy with --force (recorded in the audit log)",
                exit_code=EXIT_REJECTED,
            )
    if phase == "canary":
        done = roll(targets[:1], final=False)
        log(f"{name} {version} runs on the canary {targets[0].name}; the fleet waits for approval")
        return {"gate": report, "targets": done, "before": before}
    done = roll(targets, replace_model=bool(replaced))
    log(f"{name} {version} is in production on {len(targets)} target(s)")
    return {"gate": report, "targets": done, "before": before}


def other_models(
    targets: list[Target], bundle: VerifiedBundle, replace_model: bool
) -> dict[str, list[str]]:
    """Targets that run another model than ``bundle`` and how it differs; raises unless
    ``replace_model``. Nothing on a device has changed when it raises."""
    new = model_signature(bundle.manifest)
    found: dict[str, list[str]] = {}
    for t in targets:
        active = AgentClient(t).status().get("active") or {}
        if not active:
            continue
        # an agent older than the signature in its status: compare the name only
        sig = active.get("signature") or {**new, "name": active.get("name")}
        differs = incompatibilities(sig, new)
        if differs:
            found[t.name] = differs
    if found and not replace_model:
        lines = "; ".join(f"{t}: {', '.join(d)}" for t, d in found.items())
        raise EdgeopsError(
            f"{new['name']} {bundle.version} is another model than the targets run ({lines}): "
            "the clients of those devices would break",
            fix="deploy it to devices meant for it, or replace the model on purpose with "
            "--replace-model (recorded in the audit log)",
            exit_code=EXIT_REJECTED,
        )
    return found


def approval_of(ctx: DeployContext, name: str, version: str) -> dict[str, Any] | None:
    """The ``approval_granted`` entry of ``version`` recorded after its latest canary, if that
    canary is still open (not rejected, timed out or withdrawn) and the version in staging."""
    granted, open_canary = None, False
    for entry in ctx.audit.read():
        if entry.get("version") != version or entry.get("model", name) != name:
            continue
        event = entry.get("event")
        if event == "canary":
            granted, open_canary = None, True
        elif event == "approval_granted" and open_canary:
            granted = entry
        elif event in ("approval_rejected", "approval_timeout", "canary_withdrawn"):
            granted, open_canary = None, False
    stage = (ctx.registry.version(name, version) or {}).get("stage")
    return granted if stage == "staging" else None


def withdraw_unfinished(ctx: DeployContext, log: Any = print, by: str = "prefect") -> list[str]:
    """Targets running a version with no production record go back to the production version.

    Such a version is a half-finished rollout: a training run that died while it waited for a
    person's approval (its canary stays on the unapproved version), a rollout whose rollback
    failed. The training flow calls this first, holding the workspace slot (so no run is
    waiting for an answer then). Unreachable targets are left for the next run."""
    withdrawn: list[str] = []
    with ctx.registry.locked(log=log):
        ctx.verify_records()
        for t in ctx.targets.select(None):
            try:
                status = AgentClient(t).status()
            except EdgeopsError as exc:  # unreachable, or its token is not at hand
                log(f"{t.name}: not checked for a half-finished rollout: {exc.problem}")
                continue
            active = (status.get("active") or {}).get("version")
            name = _model_name(ctx, active)
            entry = ctx.registry.version(name, active) if name and active else None
            if entry is None or entry["stage"] not in ("candidate", "staging"):
                continue
            production = ctx.registry.production(name)
            why = (
                f"{active} ({entry['stage']}) runs without a production record: a rollout "
                "that never finished (a run that died waiting for approval?)"
            )
            if not production or production not in (status.get("versions") or []):
                log(f"{t.name}: {why}; no production version on the device to return to")
                said = [e for e in ctx.audit.read() if e.get("target") == t.name]
                if said and said[-1].get("event") == "unfinished_rollout":
                    continue  # recorded by an earlier run already
                ctx.audit.append(
                    "unfinished_rollout",
                    model=name,
                    version=active,
                    target=t.name,
                    reason=why,
                    by=by,
                )
                continue
            AgentClient(t).rollback(production, reason=f"withdrawn: {why}"[:200], actor=by)
            ctx.registry.record_deployment(
                name, production, t.name, "rollback", why, by, previous=active
            )
            ctx.registry.set_stage(name, active, "candidate", by, note="withdrawn: never approved")
            ctx.registry.save()
            ctx.audit.append(
                "canary_withdrawn",
                model=name,
                version=active,
                target=t.name,
                to=production,
                reason=why,
                by=by,
            )
            log(f"{t.name}: {why}: rolled back to {production}")
            withdrawn.append(t.name)
    return withdrawn


def withdraw_canary(
    ctx: DeployContext,
    bundle_dir: Path,
    before: dict[str, str | None],
    why: str,
    by: str,
    log: Any = print,
) -> list[str]:
    """Roll the canary back to what it ran before (approval refused or not given in time)."""
    targets = ctx.targets.select(None)
    bundle = verify_local(bundle_dir, ctx.public_key)
    name, version = bundle.manifest["model"]["name"], bundle.version
    with ctx.registry.locked(log=log):
        ctx.verify_records()
        return _withdraw(ctx, targets, before, name, version, why, by, log)


def _withdraw(
    ctx: DeployContext,
    targets: list[Target],
    before: dict[str, str | None],
    name: str,
    version: str,
    why: str,
    by: str,
    log: Any,
) -> list[str]:
    from edgeops.deploy.rollout import undo

    undone = undo(targets[:1], before, name, version, ctx.registry, ctx.audit, by, why, log)
    ctx.registry.set_stage(name, version, "candidate", by, note=why)
    ctx.registry.save()
    return undone


def rollback(
    ctx: DeployContext,
    target_name: str,
    to: str | None,
    reason: str = "manual rollback",
    by: str | None = None,
) -> dict[str, Any]:
    """Roll one target back (to its previous version, or ``to``) and record it (after any deploy
    in progress: the registry's lock)."""
    with ctx.registry.locked():
        return _rollback(ctx, target_name, to, reason, by)


def _rollback(
    ctx: DeployContext, target_name: str, to: str | None, reason: str, by: str | None
) -> dict[str, Any]:
    by = by or whoami()
    ctx.verify_records()
    (target,) = ctx.targets.select([target_name])
    client = AgentClient(target)
    current = ((client.status().get("active")) or {}).get("version")
    result = client.rollback(to, reason=reason, actor=by)
    name = _model_name(ctx, result["version"]) or _model_name(ctx, current) or "model"
    ctx.registry.record_deployment(
        name, result["version"], target.name, "rollback", reason, by, previous=current
    )
    ctx.registry.save()
    # downgrade: back below the newest version the agent accepted (its downgrade protection
    # refuses such an upload; a rollback is the deliberate way back)
    extra = {"downgrade": True} if result.get("downgrade") else {}
    ctx.audit.append(
        "rollback",
        model=name,
        version=result["version"],
        target=target.name,
        previous=current,
        reason=reason,
        by=by,
        **extra,
    )
    return {"target": target.name, "from": current, "to": result["version"], **extra}


def _model_name(ctx: DeployContext, version: str | None) -> str | None:
    for name, model in ctx.registry.data["models"].items():
        if version in model["versions"]:
            return name
    return None


#: ``edgeops status``: a selected target is unreachable or unhealthy (the table is printed first)
EXIT_UNHEALTHY = 9


def status(ctx: DeployContext, names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per target: active, previous, health, last seen, registry stage.

    ``ok`` is whether ``health`` is ``ready``; otherwise ``problem`` says what is wrong, in a
    sentence that names the target. A target that cannot be asked is a row, never an exception."""
    import time

    rows = []
    for t in ctx.targets.select(names):
        row: dict[str, Any] = {
            "target": t.name,
            "url": t.url,
            "active": None,
            "previous": None,
            "health": "unreachable",
            "last_seen": None,
            "stage": None,
            "probation": None,
            "ok": False,
            "problem": None,
        }
        client = AgentClient(t, timeout=5)
        try:
            st = client.status()
            ready = client.ready()
        except AgentError as exc:
            row["health"] = "unauthorized" if exc.status in (401, 403) else "unreachable"
            row["problem"] = str(exc)
            row["last_seen"] = _last_contact(ctx, t.name)
        except EdgeopsError as exc:  # its token is not where the targets file says
            row["health"], row["problem"] = "no token", str(exc)
        except ValueError as exc:  # JSON that does not parse: something else answers there
            row["health"] = "not an agent"
            row["problem"] = (
                f"target {t.name}: {t.url} answers, but not as an edgeops agent ({exc})"
            )
        else:
            row["active"] = (st.get("active") or {}).get("version")
            row["previous"] = st.get("previous")
            row["last_seen"] = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
            row["probation"] = bool(st.get("probation"))
            row["health"], problem = _health(st, ready is not None)
            row["problem"] = problem and f"target {t.name}: {problem}"
        row["ok"] = row["health"] == "ready"
        if row["active"]:
            name = _model_name(ctx, row["active"])
            entry = ctx.registry.version(name, row["active"]) if name else None
            row["stage"] = entry["stage"] if entry else "unregistered"
        rows.append(row)
    return rows


def _health(st: dict[str, Any], ready: bool) -> tuple[str, str | None]:
    """(health, what is wrong or None) of an agent that answered ``/v1/status``."""
    active = (st.get("active") or {}).get("version")
    if not active:
        return "no model", "serves no model yet: deploy one (edgeops deploy)"
    if not ready:
        return "not ready", f"has {active} but /readyz says it is not serving"
    probation = st.get("probation")
    if isinstance(probation, dict) and probation.get("errors"):
        return "probation errors", (
            f"{probation['errors']} model error(s) in {probation.get('requests')} requests on "
            f"probation of {probation.get('version')}: the agent rolls back by itself past its limit"
        )
    return "ready", None


def _last_contact(ctx: DeployContext, target: str) -> str | None:
    times = [
        d["at"]
        for m in ctx.registry.data["models"].values()
        for d in m["deployments"]
        if d["target"] == target
    ]
    return max(times) if times else None


def format_table(rows: list[dict[str, Any]]) -> str:
    """The ``edgeops status`` table."""
    cols = ["target", "active", "previous", "health", "last_seen", "stage"]
    shown = [
        {
            **r,
            "active": r.get("active")
            and r["active"] + (" (probation)" if r.get("probation") else ""),
        }
        for r in rows
    ]
    return format_rows(shown, cols)


def format_rows(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A plain aligned text table of ``cols`` (None shows as ``-``)."""
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
