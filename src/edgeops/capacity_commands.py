"""``edgeops capacity``: registered on the main app by :func:`register`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops.errors import EdgeopsError


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add ``capacity`` to the main app (``command`` adds friendly errors, telemetry off)."""
    command(app, "capacity")(capacity)


def capacity(
    rows: Annotated[int, typer.Option(metavar="N", help="Rows of one training snapshot.")],
    features: Annotated[
        int | None,
        typer.Option(metavar="N", help="Feature columns [default: the profile's]."),
    ] = None,
    retrain_every: Annotated[
        float, typer.Option(metavar="DAYS", help="Days between retrains (schedule or drift).")
    ] = 7.0,
    devices: Annotated[int, typer.Option(metavar="N", help="Edge devices logging inferences.")] = 0,
    requests_per_day: Annotated[
        float, typer.Option(metavar="N", help="Rows each device predicts per day.")
    ] = 0.0,
    cores: Annotated[
        int | None, typer.Option(metavar="N", help="Check a machine with this many cores.")
    ] = None,
    memory_gb: Annotated[
        float | None, typer.Option(metavar="GB", help="... with this much memory.")
    ] = None,
    disk_gb: Annotated[
        float | None, typer.Option(metavar="GB", help="... with this much disk for edgeops.")
    ] = None,
    window_hours: Annotated[
        float, typer.Option(metavar="HOURS", help="A retrain must finish within this.")
    ] = 6.0,
    profile: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Measured profile [default: reports/bench/profile.json (make bench), "
            "else the reference machine's, shipped with edgeops].",
        ),
    ] = None,
    params: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="Your params.yaml: the stages that sample or stream (its source, "
            "validate.sample_rows, train.max_rows) [used when it exists].",
        ),
    ] = Path("params.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Plan the server for your data: time and memory per stage, cores, RAM and disk.

    Predicted from a measured profile (the pipeline at several sizes: make bench), not from
    constants: time per stage fitted as fixed cost + a * rows^b, memory as m0 + m1 * rows.

    Exit codes: 0 a plan, 3 the machine given by --cores/--memory-gb/--disk-gb will not do
    (the plan is printed all the same), 2 an error (the message says how to fix it).

    \b
    Examples:
      edgeops capacity --rows 5000000
      edgeops capacity --rows 20000000 --features 30 --retrain-every 7 \\
          --devices 12 --requests-per-day 86400 --cores 4 --memory-gb 8
    """
    from edgeops.capacity import Need, Profile, plan, stage_caps

    if devices < 0 or requests_per_day < 0 or retrain_every <= 0:
        raise EdgeopsError(
            "--devices and --requests-per-day must be 0 or more, --retrain-every above 0",
            fix="e.g. --devices 12 --requests-per-day 86400 --retrain-every 7",
        )
    need = Need(
        rows=rows,
        features=features,
        retrain_every_days=retrain_every,
        devices=devices,
        requests_per_day=requests_per_day,
        cores=cores,
        memory_gb=memory_gb,
        disk_gb=disk_gb,
        window_hours=window_hours,
    )
    caps = None
    if params.is_file():
        from edgeops.params import load_params

        caps = stage_caps(load_params(params))
    result = plan(Profile.load(profile), need, caps)
    typer.echo(json.dumps(result, indent=2) if as_json else render(result, need))
    if any(w.startswith("will not do") for w in result["warnings"]):
        raise typer.Exit(3)


def render(result: dict[str, Any], need: Any) -> str:
    """The plan in words and a table."""
    prof, p, d = result["profile"], result["plan"], result["disk"]
    m = prof["machine"]
    lines = [
        f"Capacity plan: {result['rows']:,} rows x {result['features']} features, "
        f"a retrain every {need.retrain_every_days:g} days",
        f"from {prof['source']}: measured at {', '.join(f'{n:,}' for n in prof['rows_measured'])} "
        f"rows on {m.get('cores')} cores / {m.get('memory_gb')} GB ({m.get('cpu', '?')}), "
        f"{prof['threads']} threads",
        "",
        f"{'stage':<10} {'time':>10} {'peak memory':>12} {'growth':>7}",
    ]
    for stage, s in result["stages"].items():
        lines.append(
            f"{stage:<10} {_dur(s['wall_s']):>10} {s['peak_rss_mb'] / 1024:>9.2f} GB "
            f"{'n^' + format(s['growth_exponent'], 'g'):>7}"
        )
    lines += [
        f"{'pipeline':<10} {_dur(result['pipeline_s']):>10} "
        f"{result['peak_stage_mb'] / 1024:>9.2f} GB   (stages run one after another)",
        "",
        "Plan:",
        f"  cores   {p['cores']}  (the pipeline's {prof['threads']} threads + agent, "
        "Prefect server and monitoring)",
        f"  RAM     {p['ram_gb']:g} GB  (largest stage + the services beside it, +25 %)",
        f"  disk    {p['disk_first_year_gb']:g} GB in the first year:",
        f"          DVC cache {d['dvc_cache_per_retrain_gb']:.3f} GB per retrain, "
        f"{d['dvc_cache_per_year_gb']:.1f} GB a year; the DVC remote as much again",
        f"          collected production rows {d['production_rows_per_year_gb']:.1f} GB a year",
        f"          inference log {d['inference_log_per_device_per_day_mb']:.1f} MB per device "
        f"per day (the agent caps it: log_max_rows, log_max_bytes)",
    ]
    if d["prefect_db_per_year_mb"]:
        lines.append(
            f"          Prefect database {d['prefect_db_per_year_mb']:.0f} MB a year, kept "
            "unless its vacuum deletes old runs (docs/data-protection.md)"
        )
    else:
        lines.append("          Prefect database: not in this profile (bench/orchestration.py)")
    lines += [
        "",
        "Assumes: time and memory per row grow with the feature count; a retrain "
        "stores new versions of every output (DVC keeps the old).",
    ]
    if capped := result.get("capped"):
        lines.append(
            "Capped as measured (the stage samples or streams beyond): "
            + ", ".join(f"{stage} {kind} at {rows:,} rows" for stage, kind, rows in capped)
            + "."
        )
    if result["warnings"]:
        lines += ["", *[f"WARNING: {w}" for w in result["warnings"]]]
    return "\n".join(lines)


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
