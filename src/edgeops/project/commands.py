"""The project commands of the ``edgeops`` CLI: init, upgrade, stage, examples.

Registered on the main app by :func:`register`; DVC and Jinja2 are imported inside the commands.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops.errors import EdgeopsError

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def init(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="The new project's folder (new or empty).")
    ],
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The project's name on the Prefect server (training/NAME) [default: the "
            "folder's name; with --example plant: plant].",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="The model's name in the registry and on devices [default: NAME]."
        ),
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            metavar="SOURCE",
            help="Where the data comes from: simulator (the demo plant), csv (files in "
            "data/external) or sql (a database).",
        ),
    ] = "simulator",
    example: Annotated[
        str | None,
        typer.Option(
            metavar="EXAMPLE",
            help="A complete example project: plant (the demo plant, as `make demo` runs it).",
        ),
    ] = None,
    agent_port: Annotated[
        int,
        typer.Option(
            metavar="PORT",
            help="The port of this project's local agent (written to deploy/targets.yaml, "
            "the one place it is set).",
        ),
    ] = 8710,
) -> None:
    """Create a project: a git + DVC repository with params.yaml, dvc.yaml, prefect.yaml, thin
    flows/, deploy/targets.yaml, data/ and a README, from the template in this edgeops.

    The stages run the installed edgeops (`edgeops stage NAME`); upgrade the project with
    `edgeops upgrade` after installing a newer edgeops.

    \b
    Exit codes:
      0  created
      2  an error (a folder not empty, an unknown source); nothing is written

    \b
    Examples:
      edgeops init failure && cd failure && dvc repro
      edgeops init scrap --source csv --model scrap-rate --agent-port 8711
      edgeops init plant --example plant
    """
    import edgeops
    from edgeops.project.create import create
    from edgeops.project.template import NAME, Answers, slug

    default = "plant" if example == "plant" else slug(directory.resolve().name)
    chosen = name or default
    if name is None and not NAME.match(chosen):
        raise EdgeopsError(
            f"the folder name {directory.resolve().name!r} is no usable project name",
            fix="pass --name with 1 to 63 lower-case letters, digits, '-' or '_'",
        )
    answers = Answers.make(chosen, model, source, example, agent_port)
    root = create(directory, answers, edgeops.__version__, log=lambda m: typer.echo(m, err=True))
    cd = directory if directory.is_absolute() else Path(directory)
    typer.echo(
        f"next: cd {cd}\n"
        + (
            "      put your data in data/external, then edgeops schema infer data/external "
            "--target COLUMN --apply\n"
            if source != "simulator"
            else ""
        )
        + "      dvc repro      # the pipeline: a signed bundle in models/bundle\n"
        f"      edgeops up     # the Prefect server, this project's deployments, a worker\n"
        f"      (README.md in {root.name} says how to start an agent and deploy)",
        err=True,
    )


def upgrade(
    project: Annotated[Path, typer.Option(metavar="DIR", help="The project's folder.")] = Path("."),
    conflict_markers: Annotated[
        bool,
        typer.Option(
            "--conflict-markers",
            help="Where your edits and the template's overlap, write both (git-style markers) "
            "to resolve by hand, instead of changing nothing.",
        ),
    ] = False,
) -> None:
    """Bring a project up to the installed edgeops: its template's changes merged into the
    project's files, the company's edits (params, schema, targets, thresholds) kept.

    Needs a clean git tree (commit or stash first); the result is one diff to review. Prints
    which stages' versions changed: `dvc repro` re-runs those and what follows, nothing else.

    \b
    Exit codes:
      0  upgraded
      2  an error (uncommitted changes, overlapping edits); nothing is written

    Example: pip install -U 'edgeops[pipeline]' && edgeops upgrade && git diff && dvc repro
    """
    import edgeops
    from edgeops.project.upgrade import upgrade as run

    run(project, edgeops.__version__, conflict_markers, log=lambda m: typer.echo(m, err=True))


def examples(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="An example file to print [default: list them]."),
    ] = None,
) -> None:
    """List (or print) the configuration examples that ship with edgeops: the systemd units of
    the agent, the Prefect server and worker, the agent's settings, Prometheus rules.

    Exit codes: 0 listed or printed, 2 no example of that name.

    \b
    Examples:
      edgeops examples
      edgeops examples edgeops-agent.service > edgeops-agent.service
    """
    files = sorted(p for p in EXAMPLES_DIR.rglob("*") if p.is_file() and p.suffix != ".pyc")
    if name is None:
        for p in files:
            typer.echo(f"{str(p.relative_to(EXAMPLES_DIR)):40} {p}")
        return
    for p in files:
        if name in (p.name, str(p.relative_to(EXAMPLES_DIR))):
            sys.stdout.write(p.read_text())
            return
    raise EdgeopsError(f"no example named {name!r}", fix="`edgeops examples` lists them")


def stage_main(argv: list[str]) -> None:
    """``edgeops stage NAME ARGS...``: run one pipeline stage (what dvc.yaml calls)."""
    from edgeops.stages import STAGE_VERSIONS

    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: edgeops stage NAME [ARGS...]\n\nRun one pipeline stage, as dvc.yaml does "
            f"(`dvc repro` runs them all).\nStages: {', '.join(STAGE_VERSIONS)}\n"
            "Each stage's options: edgeops stage NAME --help\n\n"
            "Exit codes: 0 done, 1 the stage failed, 2 an error (the message says the fix)\n\n"
            "Example: edgeops stage train --data data/prepared/train.parquet"
        )
        return
    stage, rest = argv[0], argv[1:]
    if stage not in STAGE_VERSIONS:
        print(
            f"error: unknown stage {stage!r}\n  fix: one of {', '.join(STAGE_VERSIONS)}",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.argv = [f"edgeops stage {stage}", *rest]
    importlib.import_module(f"edgeops.stages.{stage}").main()


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add these commands to the ``edgeops`` app (``command`` adds telemetry-off + clean errors)."""
    for fn in (init, upgrade, examples):
        command(app, fn.__name__)(fn)

    @app.command(
        "stage",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def stage(ctx: typer.Context) -> None:
        """Run one pipeline stage, as dvc.yaml does: edgeops stage NAME [ARGS...].

        Example: edgeops stage train --help
        """
        stage_main(list(ctx.args))
