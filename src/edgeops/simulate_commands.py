"""``edgeops simulate``: registered on the main app by :func:`register`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops.deploy.commands import ParamsOpt, TargetsOpt
from edgeops.errors import EdgeopsError


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add ``simulate`` to the main app (``command`` adds friendly errors, telemetry off)."""
    command(app, "simulate")(simulate)


def simulate(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="FILE", help="Write to a .csv, .parquet or .db (SQLite) file."
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", metavar="NAME", help="... or send to this target's agent."),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Number of readings [default: 50000 to a file, 1000 to a target]."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Random seed: the same seed gives the same data [default: 42 to a file, "
            "a random one (printed) to a target].",
        ),
    ] = None,
    scenario: Annotated[
        str,
        typer.Option(
            metavar="NAME", help="baseline | hot_summer | biased_sensor | new_product_mix"
        ),
    ] = "baseline",
    table: Annotated[
        str, typer.Option(metavar="NAME", help="Table name for a .db output.")
    ] = "readings",
    rate: Annotated[
        float,
        typer.Option(metavar="N", help="Target: requests per second (0 = as fast as possible)."),
    ] = 0.0,
    batch: Annotated[int, typer.Option(metavar="N", help="Target: rows per request.")] = 1,
    feedback_share: Annotated[
        float,
        typer.Option(
            metavar="SHARE", help="Target: share of the requests whose true labels are sent back."
        ),
    ] = 0.2,
    feedback_delay: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Target: seconds between a prediction and its feedback."
        ),
    ] = 0.0,
    label_flip: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            help="Target: share of feedback labels replaced by another class (concept "
            "drift: the plant's failures no longer follow the model).",
        ),
    ] = 0.0,
    params: ParamsOpt = Path("params.yaml"),
    targets: TargetsOpt = None,
) -> None:
    """Demo plant data from the built-in simulator: to a file (--out) or to an agent (--target).

    To an agent, the readings go to /v1/predict and, for a share of the requests, the true label
    follows as feedback, --feedback-delay seconds later (a failure is known after the fact).

    Exit codes: 0 written or sent, 2 an error (the message says how to fix it).

    \b
    Examples:
      edgeops simulate --scenario hot_summer -o data/external/summer.csv
      edgeops simulate --target demo-local --scenario hot_summer --rows 2000 \\
          --feedback-share 0.3 --feedback-delay 5
    """
    if (out is None) == (target is None):
        raise EdgeopsError(
            "choose where the readings go: --out FILE or --target NAME (one of them)"
        )
    if target is not None:
        from edgeops.deploy.targets import AgentClient, load_targets
        from edgeops.monitor import simulate as traffic
        from edgeops.params import load_params

        p = load_params(params)
        targets_file = targets or (p.get("deploy") or {}).get("targets", "deploy/targets.yaml")
        (t,) = load_targets(targets_file).select([target])
        seed = traffic.random_seed() if seed is None else seed
        typer.echo(f"seed {seed} (repeat this traffic with --seed {seed})", err=True)
        records, labels, classes = traffic.build_rows(p, scenario, rows or 1000, seed)
        with traffic.progress_bar(len(records), f"{target} ({scenario})") as (progress, log):
            summary = traffic.send_traffic(
                AgentClient(t),
                records,
                labels,
                rate=rate,
                feedback_share=feedback_share,
                feedback_delay=feedback_delay,
                batch=batch,
                seed=seed,
                label_flip=label_flip,
                classes=classes,
                progress=progress,
                log=log,
            )
        typer.echo(traffic.format_summary(summary, target))
        return
    from edgeops import atomic
    from edgeops.sources.simulator import simulate as run_simulator

    assert out is not None
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".db", ".sqlite"):
        raise EdgeopsError(
            f"cannot write {out}: unknown file type", fix="use .csv, .parquet or .db"
        )
    df = run_simulator(rows=rows or 50_000, seed=42 if seed is None else seed, scenario=scenario)
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
