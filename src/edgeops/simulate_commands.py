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
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="Replay your own rows instead: a .csv or .parquet file (or a folder of them), "
            "or 'sql' for the SQL source of params.yaml (ingest.sql). Needs --target.",
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMN",
            help="--from: the column of true labels sent as feedback [default: the schema's "
            "target, validate.schema.target].",
        ),
    ] = None,
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
            metavar="N",
            help="Number of readings [default: 50000 to a file, 1000 to a target; with --from: "
            "every row, or the first N].",
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
        typer.Option(
            metavar="N",
            help="Target: requests per second; with --from, rows per second (0 = as fast as "
            "possible).",
        ),
    ] = 0.0,
    batch: Annotated[
        int | None,
        typer.Option(metavar="N", help="Target: rows per request [default: 1; 50 with --from]."),
    ] = None,
    feedback_share: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            help="Target: share of the requests whose true labels are sent back; with --from, "
            "of the labelled rows, in batched feedback requests.",
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
    """Traffic: the built-in plant simulator's to a file or an agent, or your own rows (--from).

    To an agent, the readings go to /v1/predict and, for a share of the requests, the true label
    follows as feedback, --feedback-delay seconds later (a failure is known after the fact).

    With --from, your own rows are replayed instead (the model's feature columns, in file
    order), in requests of --batch rows at --rate rows a second, and the label column's value
    of a --feedback-share of them is sent as feedback, many labels per request. A missing file,
    a missing label column or feature column is an error before anything is sent.

    Exit codes: 0 written or sent, 2 an error (the message says how to fix it).

    \b
    Examples:
      edgeops simulate --scenario hot_summer -o data/external/summer.csv
      edgeops simulate --target demo-local --scenario hot_summer --rows 2000 \\
          --feedback-share 0.3 --feedback-delay 5
      edgeops simulate --target line-1 --from data/external/summer.csv \\
          --label-column weather --rate 100 --feedback-share 0.5
    """
    if source is not None:
        _replay(
            source,
            target,
            out,
            label_column,
            rows,
            seed,
            rate,
            batch,
            feedback_share,
            feedback_delay,
            label_flip,
            params,
            targets,
        )
        return
    if label_column is not None:
        raise EdgeopsError(
            "--label-column names the labels of --from FILE", fix="add --from FILE, or drop it"
        )
    batch = 1 if batch is None else batch
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


def _replay(
    source: str,
    target: str | None,
    out: Path | None,
    label_column: str | None,
    rows: int | None,
    seed: int | None,
    rate: float,
    batch: int | None,
    feedback_share: float,
    feedback_delay: float,
    label_flip: float,
    params: Path,
    targets: Path | None,
) -> None:
    """``simulate --from``: every check before the first request, then the replay."""
    from edgeops.deploy.targets import AgentClient, load_targets
    from edgeops.monitor import simulate as traffic
    from edgeops.params import load_params

    if target is None or out is not None:
        raise EdgeopsError(
            "--from replays rows to an agent: give --target NAME (and no --out)",
            fix="edgeops simulate --target NAME --from FILE",
        )
    if feedback_delay or label_flip:
        raise EdgeopsError(
            "--feedback-delay and --label-flip are for the simulator's traffic, not --from",
            fix="drop them (--from sends each label once its row is answered)",
        )
    if rows is not None and rows < 1:
        raise EdgeopsError("--rows must be >= 1")
    batch = 50 if batch is None else batch
    traffic.check_options(
        rate=rate,
        feedback_share=feedback_share,
        feedback_delay=0.0,
        batch=batch,
        label_flip=0.0,
        classes=(),
    )
    p = load_params(params)
    targets_file = targets or (p.get("deploy") or {}).get("targets", "deploy/targets.yaml")
    (t,) = load_targets(targets_file).select([target])
    replay = traffic.load_replay(p, source, label_column, rows)
    if feedback_share > 0 and replay.labels is None:
        raise EdgeopsError(
            f"{replay.source} has no column {traffic.target_name(p)!r} (the schema's target) to "
            "send as feedback",
            fix="name the label column with --label-column COLUMN, or pass --feedback-share 0",
        )
    if not replay.records:
        raise EdgeopsError(f"{replay.source} has no rows to replay")
    seed = traffic.random_seed() if seed is None else seed
    how = f", read as {replay.dialect}" if replay.dialect else ""
    labels = f", labels from {replay.label_column!r}" if replay.label_column else ""
    typer.echo(
        f"replaying {len(replay.records):,} row(s) of {replay.source}{how}{labels}; "
        f"seed {seed} (the same feedback rows again with --seed {seed})",
        err=True,
    )
    with traffic.progress_bar(len(replay.records), f"{target} (--from)") as (progress, log):
        summary = traffic.replay_traffic(
            AgentClient(t),
            replay.records,
            replay.labels,
            rate=rate,
            batch=batch,
            feedback_share=feedback_share,
            seed=seed,
            progress=progress,
            log=log,
        )
    typer.echo(traffic.format_summary(summary, target))
