"""The ``edgeops`` command. Heavy libraries are imported inside the commands that need them,
so ``edgeops --help`` and the edge agent's start stay fast.

This module holds the app, the error handling every command shares (:func:`friendly_errors`,
:func:`command`), ``version`` and ``completion``. The other commands live beside what they
drive, each module with a ``register(app_or_group, command)`` called at the end of this file:

  project/commands.py         init, upgrade, examples, stage
  simulate_commands.py        simulate
  capacity_commands.py        capacity
  deploy/commands.py          gate, deploy, rollback, status, predict
  orchestration/commands.py   up, down, run, runs, doctor
  schema_commands.py          schema infer
  edge/commands.py            keys init, bundle verify, edge serve
  monitor/commands.py         monitor, monitor ui
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

import edgeops
from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.offline import telemetry_off

HELP = """On-prem MLOps: plant data -> validated model -> signed ONNX bundle on edge devices.

\b
Examples:
  edgeops init failure      # a new project (then: cd failure && dvc repro)
  edgeops doctor            # is this host ready?
  edgeops deploy --all      # gate, then canary first, then the rest
  edgeops status            # every target: version, health, stage
  edgeops deploy --help     # each command: options, examples, exit codes

Exit codes: 0 ok, 1 a run or check failed or a library is missing, 2 an error (the message
says how to fix it) or a wrong option; commands with more list them in their --help.

Shell completion: edgeops --install-completion, or edgeops completion bash|zsh|fish.
"""

app = typer.Typer(
    name="edgeops",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.3 s per call
)
schema_app = typer.Typer(
    help="Propose and check the dataset schema (validate.schema).\n\n"
    "Example: edgeops schema infer data/external/ --target failure",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(schema_app, name="schema")


class Command(TyperCommand):
    """Typer's command, with each argument shown by its metavar alone: ``BUNDLE_DIR`` in the
    usage line and the Arguments list (Typer shows ``{bundle_dir}`` and ``bundle_dir <path>``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or str(param.name).upper(), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn an EdgeopsError (or a missing optional dependency) into one message and an exit code."""
    try:
        yield
    except EdgeopsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except ImportError as exc:
        typer.echo(
            f"error: this command needs the pipeline libraries ({exc.name or exc} is missing)\n"
            "  fix: pip install 'edgeops[pipeline]'  (or `make demo`, which installs everything)",
            err=True,
        )
        raise typer.Exit(1) from None


def command(group: typer.Typer, name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """Register a command that runs with telemetry off and friendly errors."""

    def wrap(fn: Callable[..., Any]) -> Any:
        import functools

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            telemetry_off()
            with friendly_errors(), atomic.reported_when_full():
                return fn(*args, **kwargs)

        return group.command(name, cls=Command)(inner)

    return wrap


def _print_version(value: bool) -> None:
    if value:
        typer.echo(edgeops.__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the edgeops version and exit.",
        ),
    ] = False,
) -> None:
    pass


@command(app, "version")
def version() -> None:
    """Print the edgeops version (the same as `edgeops --version`).

    Example: edgeops version
    """
    typer.echo(edgeops.__version__)


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@command(app, "completion")
def completion(
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="bash, zsh or fish.")],
) -> None:
    """Print the shell completion script (commands and options complete with TAB).

    `edgeops --install-completion` installs it for the shell you run instead. zsh reads
    completion files from the folders on $fpath (add ~/.zfunc before compinit).

    \b
    Examples:
      edgeops completion bash > ~/.local/share/bash-completion/completions/edgeops
      edgeops completion zsh > ~/.zfunc/_edgeops
      edgeops completion fish > ~/.config/fish/completions/edgeops.fish
    """
    from typer.completion import get_completion_script

    script = get_completion_script(
        prog_name="edgeops", complete_var="_EDGEOPS_COMPLETE", shell=shell.value
    )
    typer.echo(script)


def _register_schema() -> None:
    from edgeops.schema_commands import register

    register(schema_app, command)


def _register_edge() -> None:
    from edgeops.edge.commands import register

    register(app, command)


def _register_simulate() -> None:
    from edgeops.simulate_commands import register

    register(app, command)


def _register_capacity() -> None:
    from edgeops.capacity_commands import register

    register(app, command)


def _register_deploy() -> None:
    from edgeops.deploy.commands import register

    register(app, command)


def _register_orchestration() -> None:
    from edgeops.orchestration.commands import register

    register(app, command)


def _register_monitor() -> None:
    from edgeops.monitor.commands import register

    register(app, command)


def _register_project() -> None:
    from edgeops.project.commands import register

    register(app, command)


def _register_labels() -> None:
    from edgeops.labels_commands import register

    register(app, command)


# `edgeops --help` lists the commands (version, completion, simulate, gate ... predict, up ...
# doctor), then the groups (schema, keys, bundle, edge, monitor), each in the order registered:
# keep the order of these calls.
_register_project()
_register_schema()
_register_edge()
_register_simulate()
_register_capacity()
_register_deploy()
_register_orchestration()
_register_monitor()
_register_labels()


def main() -> None:
    """Entry point of the ``edgeops`` console script."""
    if sys.argv[1:2] == ["stage"]:  # DVC's stage commands: straight to the stage, no Typer
        from edgeops.project.commands import stage_main

        stage_main(sys.argv[2:])
        return
    app()


if __name__ == "__main__":
    sys.exit(main())
