"""The ``training`` flow: unfinished rollouts withdrawn, the DVC pipeline stage by stage, the
gate, push and lineage, then the rollout, the summary.

It reads like the table of contents of a run. Each DVC stage is a task named like the stage, and
DVC decides whether it re-runs (an unchanged stage is a no-op). The logic lives in
``edgeops.stages`` (what DVC runs), ``edgeops.deploy`` (gate and rollout) and
``edgeops.orchestration`` (workspace, lineage, summary); this file only chains them.

Only one run works in a workspace at a time: the whole run holds a slot of a Prefect global
concurrency limit (limit 1, named after the workspace path); a second run waits for it. So when
a run starts, no other one is waiting for an approval: a device running a version without a
production record is a rollout that never finished (a run that died in its approval pause), and
it goes back to the production version before anything else. The data, model and lineage are
pushed and recorded before any device changes: a failed push deploys nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, Failed, State

from edgeops.errors import EdgeopsError
from edgeops.orchestration.settings import Orchestration


def _agent_unreachable(task: Any, task_run: Any, state: State) -> bool:
    """Retry a device step only when an agent did not answer (nothing was changed yet then)."""
    from edgeops.deploy.targets import AgentError

    exc = state.result(raise_on_failure=False)
    return isinstance(exc, AgentError) and exc.kind == "unreachable"


@task(cache_policy=NO_CACHE)
def dvc_stage(ws: Any, stage: str) -> dict[str, Any]:
    """``dvc repro -s STAGE``: the stage's output goes to the run log, its error fails the task."""
    result = ws.reproduce(stage, on_line=get_run_logger().info)
    get_run_logger().info(
        f"{stage}: {'ran' if result.ran else 'up to date'} in {result.seconds:.1f} s"
    )
    return {"stage": stage, "ran": result.ran, "seconds": result.seconds}


@task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=_agent_unreachable,
)
def gate(ctx: Any, bundle_dir: Path) -> dict[str, Any]:
    """Champion (the registry's production version) vs challenger (this bundle), on the
    source's holdout, the held-out production rows and both."""
    from edgeops.deploy import operations

    report = operations.gate(ctx, bundle_dir, ctx.targets.select(None), by="prefect")
    get_run_logger().info(
        f"gate: {'promote' if report['promote'] else 'refuse'}: {report['reason']}"
    )
    return report


@task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=_agent_unreachable,
)
def rollout(ctx: Any, bundle_dir: Path, reason: str, report: dict[str, Any]) -> dict[str, Any]:
    """Canary first, every target checked; any failure rolls back every target that switched."""
    from edgeops.deploy import operations

    done = operations.deploy(
        ctx,
        bundle_dir,
        None,
        reason=reason,
        by="prefect",
        log=get_run_logger().info,
        gate_report=report,
    )
    return {"targets": done["targets"]}


@task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=_agent_unreachable,
)
def canary(ctx: Any, bundle_dir: Path, reason: str, report: dict[str, Any]) -> dict[str, Any]:
    """The first target only; the version waits in ``staging`` for a person's approval."""
    from edgeops.deploy import operations

    return operations.deploy_phase(
        ctx,
        bundle_dir,
        None,
        "canary",
        reason=reason,
        by="prefect",
        log=get_run_logger().info,
        gate_report=report,
    )


@task(cache_policy=NO_CACHE)
def fleet(
    ctx: Any, bundle_dir: Path, reason: str, before: dict[str, Any], by: str
) -> dict[str, Any]:
    """The rest of the targets, after the approval; a failure rolls back the canary too."""
    from edgeops.deploy import operations

    return operations.deploy_phase(
        ctx,
        bundle_dir,
        None,
        "fleet",
        reason=reason,
        by=by,
        log=get_run_logger().info,
        before=before,
    )


def _approved_rollout(
    ctx: Any,
    bundle_dir: Path,
    reason: str,
    report: dict[str, Any],
    facts: dict[str, Any],
    timeout_s: float,
) -> State | None:
    """Canary -> pause for a person's answer -> fleet, or the canary rolled back."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from edgeops.deploy.operations import withdraw_canary
    from edgeops.orchestration.approval import Approval, request_markdown

    first = canary(ctx, bundle_dir, reason, report)
    (name, check), version = next(iter(first["targets"].items())), report["challenger"]["version"]
    model = facts["model"]
    facts["deploy"] = {"targets": first["targets"], "approval": "waiting"}
    ask = request_markdown(version, report, name, check, timeout_s)
    create_markdown_artifact(
        key="approval-request", markdown=ask, description=f"approve {version}?"
    )
    log = get_run_logger()
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=ask),
            timeout=int(timeout_s),
            poll_interval=2,
        )
    except FlowPauseTimeout:
        why = f"no approval within {timeout_s / 60:g} min"
        ctx.audit.append(
            "approval_timeout", model=model, version=version, canary=name, by="prefect"
        )
        undone = withdraw_canary(ctx, bundle_dir, first["before"], why, "prefect", log.info)
        facts["deploy"] = {"approval": "timeout", "rolled_back": undone}
        return Failed(message=f"{why}: no fleet rollout, canary {name} rolled back")
    by = answer.approver.strip() or "unknown"
    event = "approval_granted" if answer.approve else "approval_rejected"
    ctx.audit.append(
        event, model=model, version=version, canary=name, approver=by, comment=answer.comment, by=by
    )
    facts["approval"] = {"approve": answer.approve, "approver": by, "comment": answer.comment}
    if not answer.approve:
        undone = withdraw_canary(
            ctx, bundle_dir, first["before"], f"rejected by {by}", by, log.info
        )
        facts["deploy"] = {"approval": "rejected", "rolled_back": undone}
        return Cancelled(
            message=f"rejected by {by}: {answer.comment or 'no comment'}; canary rolled back"
        )
    facts["deploy"] = fleet(ctx, bundle_dir, reason, first["before"], by)
    return None


@task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 30],
    retry_condition_fn=_agent_unreachable,
)
def unfinished(ctx: Any) -> list[str]:
    """Devices running a version without a production record (a run that died waiting for its
    approval) go back to the production version: never promoted by what a device runs."""
    from edgeops.deploy.operations import withdraw_unfinished

    return withdraw_unfinished(ctx, get_run_logger().warning)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def push(ws: Any) -> int:
    """``dvc push``: data, models and reports of this run to the DVC remote."""
    sent = ws.push()
    get_run_logger().info(f"dvc push: {sent} file(s) sent")
    return sent


@task(cache_policy=NO_CACHE)
def record(ws: Any, facts: dict[str, Any], lineage_cfg: dict[str, Any]) -> dict[str, Any]:
    """Commit and tag the lineage of a new model version (before any device gets it)."""
    from edgeops.orchestration import lineage

    if not facts.get("version"):
        return {}
    why = facts["reason"]
    review = facts.get("contract") or {}
    if review.get("state") == "approved":  # the commit that holds the new params.yaml says so
        cols = ", ".join(c["column"] for c in review.get("changes") or [])
        why += f"; data contract changed ({cols}), approved by {review.get('approver')}"
    result = lineage.record(ws.root, facts["model"], facts["version"], why, lineage_cfg)
    get_run_logger().info(f"lineage: {result.reason}")
    return vars(result)


@task(cache_policy=NO_CACHE)
def summarize(ws: Any, facts: dict[str, Any], lineage_cfg: dict[str, Any]) -> None:
    """Commit what the rollout recorded (registry, audit log); leave the summary and tables."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from edgeops.orchestration import lineage, summary

    if facts.get("version"):
        done = lineage.commit_records(ws.root, facts["model"], facts["version"], lineage_cfg)
        if done:
            get_run_logger().info(f"lineage: {done}")
    create_markdown_artifact(
        key="training-summary",
        markdown=summary.markdown(facts),
        description=f"training run ({facts['reason']})",
    )
    rows = summary.metrics_table(facts.get("metrics"), facts.get("gate"))
    if rows:
        create_table_artifact(
            key="training-metrics", table=rows, description="this run vs champion"
        )
    used = summary.resources_table(ws.read_json("reports/resources.json"), facts.get("stages"))
    if used:
        create_table_artifact(
            key="training-resources",
            table=used,
            description="wall, CPU, peak memory and threads per stage",
        )


def _contract_review(ws: Any, ctx: Any, facts: dict[str, Any], error: Exception) -> State | None:
    """``validate`` failed: when the devices' rows break the contract, show the proposed change
    and wait for a person's answer (:mod:`edgeops.orchestration.contract_review`). Approved: the
    contract is updated and recorded, None (go on). Rejected, timed out or faults: the State
    that ends the run. Any other failure of ``validate`` is raised again as it was."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from edgeops import contract
    from edgeops.deploy.operations import DeployContext
    from edgeops.orchestration import approval
    from edgeops.orchestration.contract_review import ARTIFACT_KEY, ContractApproval, audit_fields
    from edgeops.params import load_params
    from edgeops.schema import schema_from_params

    params_path = ws.root / "params.yaml"
    params = load_params(params_path)
    schema = schema_from_params(params)
    data, devices = contract.training_data(ws.root, schema)
    proposal = contract.propose(schema, data, devices)
    del data
    if not proposal.broken or not proposal.production_rows:
        raise error  # not the devices' rows: the company's own data to fix (schema infer)
    log = get_run_logger()
    for line in proposal.lines():
        log.warning(line)
    ask = proposal.markdown()
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=ask, description="data contract change")
    audit = (ctx or DeployContext.load(params_path)).audit
    facts["contract"] = {"state": "faults", **proposal.to_dict()}
    if not proposal.offered:
        audit.append("contract_faults", faults=proposal.to_dict()["faults"], by="prefect")
        names = ", ".join(sorted({f.column for f in proposal.faults}))
        return Failed(
            message=f"the devices' rows hold faults ({names}): no contract change offered, "
            f"nothing deployed. {contract.FAULT_FIX}"
        )
    timeout_s = approval.settings(params)[1]
    facts["contract"]["state"] = "waiting"
    try:
        answer = pause_flow_run(
            wait_for_input=ContractApproval.with_initial_data(description=ask),
            timeout=int(timeout_s),
            poll_interval=2,
        )
    except FlowPauseTimeout:
        why = f"no answer on the contract change within {timeout_s / 60:g} min"
        audit.append("contract_timeout", **audit_fields(proposal), by="prefect")
        facts["contract"]["state"] = "timeout"
        return Failed(message=f"{why}: nothing deployed")
    by = answer.approver.strip() or "unknown"
    facts["contract"].update(approver=by, comment=answer.comment)
    if not answer.approve:
        audit.append(
            "contract_rejected",
            **audit_fields(proposal),
            approver=by,
            comment=answer.comment,
            by=by,
        )
        facts["contract"]["state"] = "rejected"
        return Cancelled(
            message=f"contract change rejected by {by}: {answer.comment or 'no comment'}; "
            "nothing deployed"
        )
    changed = contract.apply(params_path, proposal)
    audit.append(
        "contract_changed", **audit_fields(proposal), approver=by, comment=answer.comment, by=by
    )
    facts["contract"]["state"] = "approved"
    log.info(f"contract: {', '.join(changed)} changed in params.yaml (approved by {by})")
    return None


def _stages(ws: Any, ctx: Any, facts: dict[str, Any]) -> State | None:
    """Each DVC stage in order; a contract the devices' rows break is put to a person."""
    facts["stages"] = []
    for stage in ws.stages():
        try:
            facts["stages"].append(dvc_stage.with_options(name=stage)(ws, stage))
        except Exception as exc:  # noqa: BLE001 (raised again unless it is a contract to review)
            if stage != "validate":
                raise
            ended = _contract_review(ws, ctx, facts, exc)
            if ended is not None:
                return ended
            facts["stages"].append(dvc_stage.with_options(name=stage)(ws, stage))
    return None


def _rollout_steps(ctx: Any, ws: Any, facts: dict[str, Any], reason: str) -> State | None:
    """The rollout of a promoted model: in approval mode canary, a person's answer, then the
    fleet; else everything at once. A failed rollout (rolled back) is returned as Failed."""
    from edgeops.orchestration import approval
    from edgeops.params import load_params

    report = facts["gate"]
    mode, timeout_s = approval.settings(load_params(ws.root / "params.yaml"))
    bundle_dir = ws.root / "models/bundle"
    try:
        if (
            mode == "fleet"
            and len(ctx.targets.select(None)) > 1
            and not report.get("already_deployed")
        ):
            return _approved_rollout(ctx, bundle_dir, reason, report, facts, timeout_s)
        facts["deploy"] = rollout(ctx, bundle_dir, reason, report)
    except EdgeopsError as exc:
        facts["deploy"] = {"error": str(exc).splitlines()[0]}
        return Failed(message=facts["deploy"]["error"])
    return None


@flow(name="training", description="DVC pipeline -> gate -> push, lineage -> rollout -> summary")
def training(reason: str = "manual", deploy: bool = True) -> Any:
    """Reproduce the pipeline, gate the model against the champion, push and record its lineage,
    roll it out, summarize the run.

    ``reason``: why the run happened (manual, scheduled, drift, ...), kept in the summary and the
    audit log. ``deploy=False``: stop after the pipeline (no device is contacted).
    """
    from edgeops import resources
    from edgeops.deploy.operations import DeployContext
    from edgeops.offline import telemetry_off
    from edgeops.orchestration.concurrency import workspace_slot
    from edgeops.orchestration.lateness import skip_if_late
    from edgeops.orchestration.workspace import Workspace

    telemetry_off()  # the run inherits the worker's environment: fill in any missing switch
    root = Path(os.environ.get("EDGEOPS_WORKSPACE") or Path.cwd())
    os.chdir(root)
    settings = Orchestration.load(root / "params.yaml")
    resources.apply(root / "params.yaml")  # the gate's scoring; each stage applies it again
    log = get_run_logger()
    skipped = skip_if_late(
        settings.max_lateness_hours,
        f"max_lateness_hours={settings.max_lateness_hours:g}",
        log.warning,
    )
    if skipped is not None:
        return skipped
    with workspace_slot(
        settings.concurrency_limit, log.info, lease_seconds=settings.crashed_after_seconds
    ):
        ws = Workspace(root)
        ctx = DeployContext.load(root / "params.yaml") if deploy else None
        facts: dict[str, Any] = {"reason": reason, "started": time.time()}
        if ctx is not None:  # deploy=False contacts no device
            facts["withdrawn"] = unfinished(ctx)
        ended = _stages(ws, ctx, facts)
        facts["ingest"] = ws.read_json("reports/ingest.json")
        facts["validation"] = ws.read_json("reports/validation/summary.json")
        if ended is not None:  # the contract's review ended the run: what ran is summarized
            summarize(ws, facts, settings.lineage or {})
            return ended
        facts["metrics"] = ws.read_json("reports/metrics.json")
        model = (ws.read_json("models/bundle/manifest.json") or {}).get("model") or {}
        facts["model"], facts["version"] = model.get("name"), model.get("version")
        if deploy:
            facts["gate"] = gate(ctx, ws.root / "models/bundle")
        else:
            facts["gate_skipped"] = "deploy=False: no device was contacted"
        facts["push"] = push(ws)  # a failed push ends the run here: no device changed
        facts["lineage"] = record(ws, facts, settings.lineage or {})
        failed = None
        if deploy and facts["gate"]["promote"]:
            failed = _rollout_steps(ctx, ws, facts, reason)
        elif deploy:
            facts["deploy"] = {"note": "the gate refused the model"}
        summarize(ws, facts, settings.lineage or {})
    return failed or {k: facts.get(k) for k in ("version", "stages", "deploy", "lineage")}
