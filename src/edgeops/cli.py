"""The ``edgeops`` command. Heavy libraries are imported inside the commands that need them,
so ``edgeops --help`` and the edge agent's start stay fast."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops import __version__
from edgeops.errors import EdgeopsError
from edgeops.offline import telemetry_off

app = typer.Typer(
    name="edgeops",
    help="On-prem MLOps: plant data -> validated model -> signed ONNX bundle on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.3 s per call
)
schema_app = typer.Typer(
    help="Propose and check the dataset schema (validate.schema).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(schema_app, name="schema")


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
            with friendly_errors():
                return fn(*args, **kwargs)

        return group.command(name)(inner)

    return wrap


@command(app, "version")
def version() -> None:
    """Print the edgeops version."""
    typer.echo(__version__)


@command(schema_app, "infer")
def schema_infer(
    path: Annotated[Path, typer.Argument(help="A CSV or Parquet file (or a folder of them).")],
    target: Annotated[str, typer.Option("--target", "-t", help="The label column.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the YAML here instead of stdout.")
    ] = None,
) -> None:
    """Propose a schema from data, for a person to review and paste under validate.schema.

    Example: edgeops schema infer data/external/plant.csv --target failure -o schema.yaml
    """
    import yaml

    from edgeops import atomic
    from edgeops.schema import infer_schema
    from edgeops.sources.csv import read_files

    df = read_files(path)
    schema = infer_schema(df, target)
    text = (
        f"# proposed from {path} ({len(df):,} rows): review ranges, categories and null shares,\n"
        "# then paste under `validate: schema:` in params.yaml\n"
        + yaml.safe_dump(schema.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic.write_text(out, text)
        typer.echo(f"wrote {out}: {len(schema.columns)} columns, target {target!r}", err=True)


@command(app, "simulate")
def simulate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="A .csv, .parquet or .db (SQLite) file.")
    ],
    rows: Annotated[int, typer.Option(help="Number of readings.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 42,
    scenario: Annotated[
        str, typer.Option(help="baseline | hot_summer | biased_sensor | new_product_mix")
    ] = "baseline",
    table: Annotated[str, typer.Option(help="Table name for a .db output.")] = "readings",
) -> None:
    """Write demo plant data from the built-in simulator to a file or an SQLite table.

    Example: edgeops simulate --rows 5000 --scenario hot_summer -o data/external/summer.csv
    """
    from edgeops import atomic
    from edgeops.sources.simulator import simulate as run_simulator

    df = run_simulator(rows=rows, seed=seed, scenario=scenario)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".db", ".sqlite"):
        raise EdgeopsError(
            f"cannot write {out}: unknown file type", fix="use .csv, .parquet or .db"
        )
    with atomic.atomic_path(out) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            import sqlite3

            with sqlite3.connect(tmp) as conn:
                df.to_sql(table, conn, index=False)
    typer.echo(f"wrote {len(df):,} rows ({scenario}) to {out}", err=True)


def main() -> None:
    """Entry point of the ``edgeops`` console script."""
    app()


if __name__ == "__main__":
    sys.exit(main())
