"""``edgeops monitor`` and ``edgeops monitor ui``: registered on the main app by :func:`register`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops.errors import EdgeopsError

HELP = """Collect the agents' inference logs, check quality, drift and performance, decide.

Thresholds, windows and the cooldown: the `monitor` section of params.yaml. Reports:
reports/monitoring/ (drift.html per target, decision.json, summary.md).

\b
Exit codes:
  0  keep (no drift above the thresholds)
  5  retrain
  6  not enough data (no verdict)
  7  retrain wanted but held back by the cooldown
  8  stored but not yet versioned by DVC
  9  keep or not enough data, but an agent did not answer (the others were
     judged; its rows are collected on the next run, none twice)
  2  an error (the message says how to fix it)

\b
Examples:
  edgeops monitor --all
  edgeops monitor --target line-1 --json
"""

ParamsOpt = Annotated[
    Path, typer.Option("--params", metavar="FILE", help="The workspace's params file.")
]

monitor_app = typer.Typer(help=HELP, rich_markup_mode=None, invoke_without_command=True)


def run_cmd(
    ctx: typer.Context,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", metavar="NAME", help="A target to monitor (repeatable)."),
    ] = None,
    all_targets: Annotated[
        bool, typer.Option("--all", help="Every target in the targets file.")
    ] = False,
    collect: Annotated[
        bool, typer.Option("--collect/--no-collect", help="Collect new log rows first.")
    ] = True,
    accept_reset: Annotated[
        bool,
        typer.Option(
            "--accept-reset",
            help="An agent's log was reset on purpose: collect its new log beside the old one.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print decision.json instead of the summary.")
    ] = False,
    params: ParamsOpt = Path("params.yaml"),
    targets: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Targets file [default: deploy.targets]."),
    ] = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    import json
    import sys

    from edgeops import resources
    from edgeops.monitor.run import Monitor, run_monitor
    from edgeops.monitor.summary import markdown
    from edgeops.monitor.versioning import version_store

    if bool(target) == all_targets:
        raise EdgeopsError(
            "name the targets to monitor", fix="pass --target NAME (repeatable) or --all"
        )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    resources.apply(params)  # thread pools sized by resources.threads (Evidently's worker too)
    m = Monitor.load(params, targets)
    names = None if all_targets else list(target or [])
    result = run_monitor(m, names, collect=collect, accept_reset=accept_reset, log=log)
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else markdown(result))
    if collect:
        try:
            written = version_store(m.workspace, m.settings.store, list(result["targets"]))
            if written:
                log(f"versioned with DVC: {', '.join(written)}")
        except EdgeopsError as exc:
            typer.echo(f"warning: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(result["exit_code"])


def ui_cmd(
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Start the Evidently UI (self-hosted, offline) on the monitoring workspace: drift over time.

    Exit codes: 2 no workspace yet (run `edgeops monitor --all` first) or another error;
    otherwise it serves until it is stopped.

    Example: edgeops monitor ui --port 8000   # then open http://127.0.0.1:8000
    """
    from edgeops.monitor.settings import MonitorSettings
    from edgeops.monitor.workspace import serve_ui
    from edgeops.params import load_params

    settings = MonitorSettings.from_params(load_params(params))
    workspace = Path(params).resolve().parent / settings.workspace
    if not workspace.is_dir():
        raise EdgeopsError(
            f"no Evidently workspace at {workspace} yet", fix="run `edgeops monitor --all` first"
        )
    serve_ui(workspace, host=host, port=port)


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add ``monitor`` (and ``monitor ui``) to the main app, with its error handling."""
    monitor_app.callback()(_wrapped(command, run_cmd))
    command(monitor_app, "ui")(ui_cmd)
    app.add_typer(monitor_app, name="monitor")


def _wrapped(command: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """The callback goes through the same telemetry-off + friendly-errors wrapper as commands."""
    return command(typer.Typer(), "monitor")(fn)
