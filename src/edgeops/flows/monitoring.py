"""The ``monitoring`` flow: collect -> quality -> drift -> performance -> decision -> retrain.

Per target: collect its new log rows and feedback (exactly once, by cursor), then judge the
deployed version's window. The DVC versioning of the collected rows is the only step that needs
the workspace's slot; it waits a minute at most (a training run may hold the slot for long) and
otherwise leaves it to the next run: the rows are durably stored either way.

On "retrain" the flow starts the project's ``training`` deployment with ``run_deployment`` (reason
``drift``, or ``performance`` when only the labels say so). Chosen over a Prefect automation on an
emitted event: the guardrails (minimum rows, thresholds, cooldown) are decided here in one place
with the reasons at hand, the training run's id lands in this run's summary and the audit log,
and there is no second object (an automation) to keep in step with prefect.yaml. The deployment's
concurrency limit of 1 keeps two monitoring runs from both passing the cooldown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from edgeops.orchestration.settings import Orchestration


def _unreachable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only an agent that could not be reached: one that answered too slowly or what no
    agent answers is named at once (a retry would only wait out its time limit again)."""
    from edgeops.deploy.targets import AgentError

    exc = state.result(raise_on_failure=False)
    return isinstance(exc, AgentError) and exc.kind == "unreachable"


@task(
    cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_unreachable
)
def collect(m: Any, target: Any) -> dict[str, Any]:
    """New log rows and feedback of one agent, each page stored before the next is read."""
    return vars(m.collect(target, log=get_run_logger().info))


@task(cache_policy=NO_CACHE)
def version_store(m: Any, targets: list[str], settings: Orchestration) -> list[str]:
    """``dvc add data/production/<target>``, holding the workspace slot (a minute at most)."""
    from edgeops.errors import EdgeopsError
    from edgeops.monitor.versioning import version_store as add
    from edgeops.orchestration.concurrency import workspace_slot

    log = get_run_logger()
    try:
        with workspace_slot(
            settings.concurrency_limit,
            log.info,
            timeout=60,
            lease_seconds=settings.crashed_after_seconds,
        ):
            return add(m.workspace, m.settings.store, targets)
    except (TimeoutError, EdgeopsError) as exc:
        log.warning(f"collected rows stored, not yet versioned (the next run does it): {exc}")
        return []


@task(cache_policy=NO_CACHE)
def window(m: Any, target: Any) -> Any:
    """The deployed version and its window of rows (newest N, or the last H hours)."""
    from edgeops.monitor.run import prepare

    w = prepare(m, target, get_run_logger().info)
    get_run_logger().info(f"{target.name}: window {w.info}")
    return w


@task(cache_policy=NO_CACHE)
def quality(m: Any, w: Any) -> dict[str, Any]:
    from edgeops.monitor.run import quality_step

    return quality_step(m, w)


@task(cache_policy=NO_CACHE)
def drift(m: Any, w: Any) -> tuple[Any, dict[str, Any]]:
    from edgeops.monitor.run import drift_step

    return drift_step(m, w, get_run_logger().info)


@task(cache_policy=NO_CACHE)
def performance(m: Any, w: Any) -> dict[str, Any]:
    from edgeops.monitor.run import performance_step

    return performance_step(m, w)


@task(cache_policy=NO_CACHE)
def decision(m: Any, per_target: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Overall decision with the cooldown; decision.json, summary.md and the run's artifacts."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    from edgeops.monitor.run import finish
    from edgeops.monitor.summary import markdown

    result = finish(m, per_target)
    create_markdown_artifact(
        key="monitoring-summary",
        markdown=markdown(result),
        description=f"monitoring: {result['decision']}",
    )
    for name, t in per_target.items():
        html = (t.get("reports") or {}).get("drift_html")
        if html:
            key = "drift-report-" + re.sub(r"[^a-z0-9-]+", "-", name.lower())
            create_link_artifact(
                key=key,
                link=Path(html).resolve().as_uri(),
                link_text=f"Evidently drift report: {name}",
            )
    get_run_logger().info(f"decision: {result['decision']}: {'; '.join(result['reasons'])}")
    return result


@task(cache_policy=NO_CACHE)
def start_training(m: Any, result: dict[str, Any]) -> str:
    """Start the ``training`` deployment; record it in the audit log (the cooldown reads it)."""
    from prefect.deployments import run_deployment
    from prefect.runtime import flow_run

    from edgeops.monitor.decision import TRIGGER_EVENT

    reason = "drift" if any("drift:" in r for r in result["reasons"]) else "performance"
    deployment = Orchestration.load("params.yaml").deployment("training")  # this project's
    run = run_deployment(
        name=deployment, parameters={"reason": reason}, timeout=0, as_subflow=False
    )
    m.ctx.audit.append(
        TRIGGER_EVENT,
        model=m.model_name,
        reason=reason,
        reasons=result["reasons"],
        training_run=str(run.id),
        monitoring_run=str(flow_run.id),
        by="prefect",
    )
    get_run_logger().info(f"started {deployment} (reason {reason}): flow run {run.id}")
    return str(run.id)


def _judge(m: Any, t: Any) -> dict[str, Any]:
    from edgeops.monitor import decision as dec
    from edgeops.monitor.run import write_reports

    w = window(m, t)
    result, outputs = w.result(), None
    if w.bundle is not None:
        result["quality"] = quality(m, w)
        outputs, result["drift"] = drift(m, w)
        result["performance"] = performance(m, w)
    result["decision"], result["reasons"] = dec.target_decision(
        len(w.rows), m.settings.min_rows, result.get("drift"), result.get("performance")
    )
    result["reports"] = write_reports(m.reports, t.name, result, outputs)
    return result


@flow(name="monitoring", description="collect -> quality -> drift -> performance -> decision")
def monitoring(targets: list[str] | None = None, retrain: bool = True) -> Any:
    """Judge what the devices saw; on "retrain", start a ``training`` run (unless ``retrain`` is
    false or ``monitor.retrain`` is off). ``targets``: names, or all in the targets file."""
    from edgeops import resources
    from edgeops.monitor.run import Monitor, each_answering, per_target, warm_evidently
    from edgeops.offline import telemetry_off
    from edgeops.orchestration.lateness import skip_if_late

    telemetry_off()  # the run inherits the worker's environment: fill in any missing switch
    root = Path(os.environ.get("EDGEOPS_WORKSPACE") or Path.cwd())
    os.chdir(root)
    settings = Orchestration.load(root / "params.yaml")
    late = settings.monitoring_max_lateness_minutes
    skipped = skip_if_late(
        late / 60, f"monitoring_max_lateness_minutes={late:g}", get_run_logger().warning
    )
    if skipped is not None:
        return skipped
    resources.apply(root / "params.yaml")  # before Evidently's worker starts: it inherits it
    warm_evidently()
    m = Monitor.load(root / "params.yaml")
    chosen = m.targets(targets)
    # an agent that does not answer (after the task's retries) is named; the others go on
    collected, down = each_answering(chosen, lambda t: collect(m, t), get_run_logger().warning)
    if collected:
        version_store(m, list(collected), settings)
    judged, down = each_answering(
        chosen,
        lambda t: {**_judge(m, t), "collected": collected[t.name]},
        get_run_logger().warning,
        down,
    )
    results = per_target(chosen, judged, down)
    result = decision(m, results)
    if result["retrain"] and retrain and m.settings.retrain:
        result["training_run"] = start_training(m, result)
    summary = {k: result.get(k) for k in ("decision", "reasons", "training_run", "unreachable")}
    if result["unreachable"]:  # the run is Failed so that it shows; the others were judged
        from prefect.states import Failed

        return Failed(
            message=f"unreachable: {', '.join(result['unreachable'])}; the others: "
            f"{result['decision']}",
            data=summary,
        )
    return summary
