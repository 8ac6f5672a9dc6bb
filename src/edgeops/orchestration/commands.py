"""The orchestration commands of the ``edgeops`` CLI: up, down, run, runs, doctor.

Registered on the main app by :func:`register`; Prefect is imported inside each command only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops.errors import EdgeopsError

ParamsOpt = Annotated[
    Path, typer.Option("--params", metavar="FILE", help="The workspace's params file.")
]


def _settings(params: Path) -> Any:
    from edgeops.orchestration.settings import Orchestration

    return Orchestration.load(params)


def up(
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Local process workers to start [default: orchestration.workers]; 0 = none.",
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Start the self-hosted Prefect server, apply the deployments, start local workers.

    Idempotent: what runs already is kept. State, logs and pid files live in
    orchestration.home (default .prefect/). Basic auth: export PREFECT_API_AUTH_STRING=user:pass
    first (the server requires it, the workers and CLI send it).

    Exit codes: 0 running, 2 an error (e.g. the port is taken; the message says how to fix it).

    Example: edgeops up && edgeops run training --reason "new sensor data"
    """
    from edgeops.orchestration import services

    services.up(_settings(params), workers, log=lambda m: typer.echo(m, err=True))


def down(
    server: Annotated[
        bool,
        typer.Option(
            "--server",
            help="Stop the server this project started even while other projects use it.",
        ),
    ] = False,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Stop the workers and the server that this project's `edgeops up` started (nothing else).

    A server that other projects' deployments use keeps running (they are named) unless
    --server is given.

    Exit codes: 0 stopped (or nothing was running), 2 an error.

    \b
    Examples:
      edgeops down
      edgeops down --server      # the shared server too
    """
    from edgeops.orchestration import services

    services.down(_settings(params), log=lambda m: typer.echo(m, err=True), server=server)


def run(
    flow: Annotated[
        str, typer.Argument(metavar="FLOW", help="The flow to run: training or monitoring.")
    ] = "training",
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why (kept in the summary and audit log).")
    ] = "manual",
    deploy: Annotated[
        bool,
        typer.Option("--deploy/--no-deploy", help="training: gate and roll out to the targets."),
    ] = True,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain/--no-retrain", help="monitoring: start training on a retrain decision."
        ),
    ] = True,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Print state and logs until it ends.")
    ] = True,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Stop following after this many seconds.")
    ] = 7200,
    project: Annotated[
        str | None,
        typer.Option(
            metavar="PROJECT",
            help="Another project: its folder or its name on the server [default: the project "
            "this is typed in].",
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Start a run of this project's deployment (training/PROJECT) through the Prefect server
    (a worker executes it) and follow it here.

    A monitoring run that starts a training run (drift) is followed into it.
    Following ends when a run pauses for a person's answer (exit 3).

    \b
    Exit codes:
      0  completed (with --no-follow: started)
      1  failed, crashed or cancelled (the reason is printed)
      2  an error before it started (e.g. no server: edgeops up)
      3  paused: it waits for a person's answer in the UI (an approval,
         a data contract review) and goes on on the server

    \b
    Examples:
      edgeops run training --reason "sensor recalibrated"
      edgeops run monitoring --no-retrain
      edgeops run training --project scrap
    """
    parameters = {
        "training": {"reason": reason, "deploy": deploy},
        "monitoring": {"retrain": retrain},
    }
    if flow not in parameters:
        raise EdgeopsError(
            f"unknown flow {flow!r}", fix="edgeops run training | edgeops run monitoring"
        )
    if project is not None:
        params = _project_params(project, params)
    settings = _settings(params)
    settings.apply_client_env()
    from edgeops.orchestration import client

    flow_run, link = client.start_run(settings, parameters[flow], settings.deployment(flow))
    typer.echo(f"started {flow_run.name}: {link}", err=True)
    if not follow:
        return
    final = _follow(settings, flow_run.id, link, timeout)
    started = _started_training(params, str(flow_run.id)) if flow == "monitoring" else None
    _exit_if_paused(final, link)
    if started and final.state.type.value == "COMPLETED":
        link = f"{settings.ui_url}/runs/flow-run/{started}"
        typer.echo(f"the monitoring run started a training run: {link}", err=True)
        final = _follow(settings, started, link, timeout)
        _exit_if_paused(final, link)
    if final.state.type.value != "COMPLETED":
        raise typer.Exit(1)


def _project_params(project: str, here: Path) -> Path:
    """The params file of ``--project``: a folder's, or that of the project of this name the
    server knows (asked at this folder's server, or PREFECT_API_URL, or 127.0.0.1:4200)."""
    folder = Path(project).expanduser()
    if (folder / "params.yaml").is_file():
        return folder / "params.yaml"
    from edgeops.orchestration.settings import Orchestration

    s = _settings(here) if here.is_file() else Orchestration(Path.cwd(), Path.cwd() / ".prefect")
    s.apply_client_env()
    from edgeops.orchestration.client import prefect_errors
    from edgeops.orchestration.projects import known_projects

    with prefect_errors(s):
        known = {p.name: p for p in known_projects()}
    if project not in known:
        raise EdgeopsError(
            f"no project {project!r}: not a project folder, and the server at {s.api_url} knows "
            f"{', '.join(sorted(known)) or 'no project'}",
            fix="pass a project's folder or one of those names (edgeops doctor lists them)",
        )
    found = known[project]
    if found.folder_gone:
        raise EdgeopsError(
            f"project {project}'s folder {found.folder} holds no project any more",
            fix="run `edgeops up` in its new folder, or remove its deployments (edgeops doctor)",
        )
    return found.folder / "params.yaml"


#: ``edgeops run``: the run waits for a person's answer (it goes on on the server)
EXIT_PAUSED = 3


def _exit_if_paused(run: Any, link: str) -> None:
    if run.state.type.value == "PAUSED":
        typer.echo(f"{run.name} waits for a person's answer: {link}", err=True)
        raise typer.Exit(EXIT_PAUSED)


def _follow(settings: Any, run_id: Any, link: str, timeout: float) -> Any:
    from edgeops.orchestration import client

    final = client.follow(settings, run_id, lambda m: typer.echo(m), timeout)
    message = final.state.message or ""
    typer.echo(f"{final.name}: {final.state.name}{': ' + message if message else ''}", err=True)
    typer.echo(f"summary and artifacts: {link}", err=True)
    return final


def _started_training(params: Path, monitoring_run: str) -> str | None:
    """The training run a monitoring run started (from the audit log), if any."""
    from edgeops.deploy.registry import AuditLog
    from edgeops.monitor.decision import TRIGGER_EVENT
    from edgeops.params import load_params

    path = (load_params(params).get("deploy") or {}).get("audit_log", "deploy/audit.jsonl")
    for entry in reversed(AuditLog(Path(params).resolve().parent / path).read()):
        if entry.get("event") == TRIGGER_EVENT and entry.get("monitoring_run") == monitoring_run:
            return entry.get("training_run")
    return None


def runs(
    limit: Annotated[int, typer.Option(metavar="N", help="How many.")] = 10,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """List the recent runs: name, state, reason, when due, how long, the state's message.

    Exit codes: 0 listed (or none yet), 2 an error (e.g. no server: edgeops up).

    Example: edgeops runs --limit 20
    """
    from edgeops.deploy.operations import format_rows

    settings = _settings(params)
    settings.apply_client_env()
    from edgeops.orchestration import client

    rows = client.recent_runs(settings, limit)
    if not rows:
        typer.echo("no runs yet: edgeops run training", err=True)
        return
    typer.echo(format_rows(rows, ["run", "state", "reason", "due", "took", "message"]))


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Check this host before planning runs: Python, CPU, memory, disk, the server port, git, DVC
    and its remote, the signing key, the edge targets, the Prefect server, work pool, worker and
    deployment, telemetry and lineage. One line per check (OK, WARN or FAIL), with the fix.

    Exit codes: 0 no FAIL (warnings allowed), 1 at least one FAIL, 2 an error (e.g. a
    params file that does not parse). Takes a few seconds.

    Example: edgeops doctor --params /srv/edgeops/params.yaml
    """
    import dataclasses
    import json
    import time

    from edgeops.orchestration.doctor import run_checks

    start = time.monotonic()
    checks = run_checks(_settings(params), params)
    took = time.monotonic() - start
    counts = {s: sum(c.status == s for c in checks) for s in ("OK", "WARN", "FAIL")}
    if as_json:
        result = {
            "ok": not counts["FAIL"],
            "counts": counts,
            "seconds": round(took, 2),
            "checks": [dataclasses.asdict(c) for c in checks],
        }
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo("\n".join(c.lines() for c in checks))
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        typer.echo(f"doctor: {summary} in {took:.1f} s", err=True)
    if counts["FAIL"]:
        raise typer.Exit(1)


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add these commands to the ``edgeops`` app (``command`` adds telemetry-off + clean errors)."""
    for fn in (up, down, run, runs, doctor):
        command(app, fn.__name__)(fn)
