"""Talking to the Prefect server: the work pool, workers, starting a run and following it.

Every call goes through :func:`prefect_errors`, which turns the client's exceptions into one
:class:`EdgeopsError` that says what to start or fix (no server, wrong auth string, ...).
Import this module only after :meth:`Orchestration.apply_client_env` (Prefect reads its settings
from the environment when it is imported).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edgeops.errors import EdgeopsError
from edgeops.orchestration.settings import Orchestration

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@contextmanager
def prefect_errors(s: Orchestration) -> Iterator[None]:
    """Map the Prefect client's errors to one clear EdgeopsError."""
    import httpx
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise EdgeopsError(
            f"no Prefect server answers at {s.api_url} ({exc.__class__.__name__})",
            fix="start it with `edgeops up` (or set PREFECT_API_URL to where it runs)",
        ) from None
    except PrefectHTTPStatusError as exc:
        status = exc.response.status_code
        if status == 401:
            raise EdgeopsError(
                f"the Prefect server at {s.api_url} refused the credentials (401 Unauthorized)",
                fix="set PREFECT_API_AUTH_STRING to the server's user:password",
            ) from None
        raise EdgeopsError(f"the Prefect server answered {status}: {_detail(exc)}") from None
    except ObjectNotFound:
        raise EdgeopsError(
            f"project {s.project}'s deployments are not on the server at {s.api_url}",
            fix="apply them with `edgeops up` in the project's folder",
        ) from None


def _detail(exc: Any) -> str:
    try:
        return str(exc.response.json().get("detail") or exc.response.text)[:500]
    except ValueError:
        return exc.response.text[:500]


def ensure_work_pool(name: str) -> bool:
    """Create a process work pool unless it exists; True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", base_job_template=template)
            )
        except ObjectAlreadyExists:
            return False
    return True


def online_workers(pool: str) -> list[str]:
    """Names of the workers polling ``pool`` now (Prefect marks them online by heartbeat)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            workers = client.read_workers_for_work_pool(pool)
        except ObjectNotFound:
            return []
    return [w.name for w in workers if str(w.status.value if w.status else "") == "ONLINE"]


def start_run(
    s: Orchestration, parameters: dict[str, Any], deployment_name: str
) -> tuple[Any, str]:
    """Create a run of a deployment through the server; (flow run, UI link). Needs a live worker."""
    from prefect.client.orchestration import get_client

    with prefect_errors(s), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        pool = deployment.work_pool_name or s.work_pool
        if not online_workers(pool):
            raise EdgeopsError(
                f"no worker is polling work pool {pool!r}: the run would wait forever",
                fix=f"start one with `edgeops up` (or `prefect worker start --pool {pool}`)",
            )
        run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    return run, f"{s.ui_url}/runs/flow-run/{run.id}"


def follow(
    s: Orchestration, run_id: Any, echo: Callable[[str], None], timeout: float, poll: float = 1.0
) -> Any:
    """Print the run's state changes and logs until it ends or pauses for a person's answer
    (an approval, a contract review); return the flow run in that state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    seen, last_state, names, quiet = 0, None, {}, 0
    deadline = time.monotonic() + timeout
    with prefect_errors(s), get_client(sync_client=True) as client:

        def print_new_logs() -> int:
            nonlocal seen, names
            logs = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                offset=seen,
                sort=LogSort.TIMESTAMP_ASC,
            )
            for entry in logs:
                if entry.task_run_id and entry.task_run_id not in names:
                    flt = FlowRunFilter(id={"any_": [run_id]})
                    names |= {t.id: t.name for t in client.read_task_runs(flow_run_filter=flt)}
                who = names.get(entry.task_run_id, "flow") if entry.task_run_id else "flow"
                echo(f"{entry.timestamp:%H:%M:%S} {who:>14} | {entry.message}")
            seen += len(logs)
            return len(logs)

        while True:
            run = client.read_flow_run(run_id)
            new = print_new_logs()
            final = bool(run.state and run.state.type.value in FINAL)
            paused = bool(run.state and run.state.type.value == "PAUSED")
            state = run.state.name if run.state else "?"
            if state != last_state and not final and not paused:
                echo(f"state: {state}")
                last_state = state
            if final or paused:  # the last log lines come in batches: drain until two quiet polls
                quiet = 0 if new else quiet + 1
                if quiet >= 2:
                    return run
                time.sleep(poll)
                continue
            quiet = 0  # resumed after a pause: follow on
            if time.monotonic() > deadline:
                raise EdgeopsError(
                    f"run {run.name} is still {state} after {timeout:.0f} s (it goes on on the server)",
                    fix=f"watch it in the UI: {s.ui_url}/runs/flow-run/{run_id}",
                )
            time.sleep(poll)


def recent_runs(s: Orchestration, limit: int) -> list[dict[str, Any]]:
    """The newest runs of every edgeops deployment, newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    rows = []
    with prefect_errors(s), get_client(sync_client=True) as client:
        for run in client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit):
            rows.append(
                {
                    "run": run.name,
                    "state": run.state.name if run.state else "?",
                    "reason": str((run.parameters or {}).get("reason", "-")),
                    "due": f"{run.expected_start_time:%Y-%m-%d %H:%M}"
                    if run.expected_start_time
                    else "-",
                    "took": f"{run.total_run_time.total_seconds():.0f} s"
                    if run.total_run_time
                    else "-",
                    "message": ((run.state.message or "") if run.state else "")[:80],
                    "id": str(run.id),
                }
            )
    return rows


#: The automation that marks a flow run Crashed when its process stops sending heartbeats.
CRASH_AUTOMATION = "edgeops: a run whose heartbeat stops is Crashed"


def ensure_crash_automation(seconds: float) -> str:
    """Create (or bring up to date) the automation that marks a flow run Crashed when no
    heartbeat came for ``seconds``: its worker was killed or its machine went down, and nobody
    else would ever end it (it would stay Running, holding its slot). Returns what was done."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    final = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    wanted = Automation(
        name=CRASH_AUTOMATION,
        description="The process running a flow run died (worker killed, machine down): "
        "mark it Crashed so that it does not stay Running forever (edgeops up keeps this).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *final},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {seconds:g} s: the process running it died "
                "(its worker was killed or its machine went down); run it again",
            )
        ],
    )
    try:
        current = Automation.read(name=CRASH_AUTOMATION)
    except ValueError:  # Automation.read's "not found"
        current = None
    if current is None:
        wanted.create()
        return "created"
    if current.trigger.within == wanted.trigger.within and current.enabled:
        return "exists"
    wanted.id = current.id
    wanted.update()
    return "updated"
