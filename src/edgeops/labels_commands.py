"""``edgeops labels status | release``: the devices' labels, their quarantine and its release.

Registered on the main app by :func:`register`; pandas and the store are imported inside the
commands only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgeops.deploy.commands import ParamsOpt
from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    from edgeops.sources.field_labels import LabelTrust

labels_app = typer.Typer(
    help="The devices' ground-truth labels: which join training, which are quarantined.\n\n"
    "Exit codes: 0 ok, 2 an error.\n\nExample: edgeops labels status",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer, command: Callable[..., Any]) -> None:
    """Add the ``labels`` group (status, release) to the main app."""
    command(labels_app, "status")(labels_status)
    command(labels_app, "release")(labels_release)
    app.add_typer(labels_app, name="labels")


def _judged(params: Path) -> tuple[dict[str, Any], Path]:
    """(the per-target report, the store) of the stored labels, as ingest judges them."""
    from edgeops.params import load_params, section
    from edgeops.schema import schema_from_params
    from edgeops.sources.field_labels import LabelTrust, judge
    from edgeops.sources.production import stored_labels

    params_data = load_params(params)
    cfg = section(params_data, "ingest").get("production") or {}
    trust = LabelTrust.from_params(cfg)
    store = params.resolve().parent / cfg.get("path", "data/production")
    stored = stored_labels(store, schema_from_params(params_data))
    if stored.empty:
        return {}, store
    source_rows = _source_rows(params.resolve().parent)
    share = trust.max_target_share if source_rows else 1.0
    _, report = judge(stored, _with_share(trust, share), source_rows or 1)
    return report, store


def _with_share(trust: LabelTrust, share: float) -> LabelTrust:
    import dataclasses

    return dataclasses.replace(trust, max_target_share=share)


def _source_rows(root: Path) -> int:
    """The source's rows of the last ingest (what the cap is a share of), 0 if unknown."""
    import json

    path = root / "reports/ingest.json"
    try:
        return int(json.loads(path.read_text())["source_rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def labels_status(params: ParamsOpt = Path("params.yaml")) -> None:
    """Per device: labelled rows, how often its labels agree with the model, what is quarantined.

    A device whose labels (a chunk of them) disagree with the model's predictions far more than
    the model expects and than the other devices' labels do is quarantined
    (ingest.production.quarantine): its rows stay stored and join training only when a person
    releases them.

    Exit codes: 0 listed (quarantined rows are listed, not an error), 2 an error.

    Example: edgeops labels status
    """
    from edgeops.deploy.operations import format_rows

    report, store = _judged(params)
    if not report:
        typer.echo(f"no labelled rows stored under {store} yet")
        return
    rows = [
        {
            "target": t,
            "labelled": r["labelled"],
            "agreement": f"{r['agreement']:.0%}",
            "others": "-" if r["others_agreement"] is None else f"{r['others_agreement']:.0%}",
            "quarantined": sum(q["rows"] for q in r["quarantined"]),
            "joins": r["joined"],
        }
        for t, r in report.items()
    ]
    typer.echo(format_rows(rows, list(rows[0])))
    for target, r in report.items():
        for q in r["quarantined"]:
            typer.echo(
                f"{target}: QUARANTINED: rows {q['first']}..{q['last']} of log "
                f"{q['log'][:8]} ({q['rows']:,} labelled) are held",
                err=True,
            )
        for c in r["disagreeing"]:
            typer.echo(f"  because {c['why']}", err=True)
        if r["quarantined"]:
            typer.echo(
                f"  after a review: edgeops labels release {target} --reason TEXT "
                "[--through ID: the last row id to trust]",
                err=True,
            )


def labels_release(
    target: Annotated[
        str, typer.Argument(metavar="TARGET", help="The device whose rows to release.")
    ],
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why they can be trusted (recorded).")
    ],
    through: Annotated[
        int | None,
        typer.Option(
            metavar="ID", help="Release the rows up to this row id [default: all quarantined]."
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Let a device's quarantined labelled rows join the next training run, after a review.

    Writes the release into params.yaml (ingest.production.released: the device, its log, the
    last row id released) and an audit entry `labels_released` with the reason and who released
    it. Rows the device labels later are judged again.

    Exit codes: 0 released, 2 an error (nothing quarantined, no reason).

    \b
    Example:
      edgeops labels release line-2 --reason "MES export fixed, checked by hand"
    """
    from edgeops.deploy.operations import DeployContext

    if not reason.strip():
        raise EdgeopsError("say why: --reason TEXT (it is recorded)")
    ctx = DeployContext.load(params)
    ctx.verify_records()  # the release is recorded: nothing is released on broken records
    report, _ = _judged(params)
    quarantined = (report.get(target) or {}).get("quarantined") or []
    if not quarantined:
        known = ", ".join(sorted(report)) or "none"
        raise EdgeopsError(
            f"no labelled rows of {target} are quarantined (devices with labels: {known})",
            fix="see `edgeops labels status`",
        )
    releases: dict[str, int] = {}
    for q in quarantined:
        last = q["last"] if through is None else min(q["last"], through)
        if last >= q["first"]:
            releases[q["log"]] = max(releases.get(q["log"], 0), last)
    if not releases:
        raise EdgeopsError(f"--through {through} is before every quarantined row of {target}")
    rows = sum(q["rows"] for q in quarantined if q["first"] <= releases.get(q["log"], -1))
    changed = [{"target": target, "log": log, "through": last} for log, last in releases.items()]
    # recorded first: a release that did not take effect is released again, never unrecorded
    ctx.audit.append("labels_released", target=target, releases=changed, reason=reason)
    write_releases(params, changed)
    typer.echo(
        f"released {target}: rows up to {', '.join(f'id {v} of log {k[:8]}' for k, v in releases.items())} "
        f"(about {rows:,} quarantined rows): they join the next training run"
    )


def write_releases(params: Path, releases: list[dict[str, Any]]) -> None:
    """Append ``releases`` to ``ingest.production.released`` in the params file, keeping its
    comments and layout."""
    import io

    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from edgeops import atomic
    from edgeops.schema_commands import round_trip

    rt = round_trip()
    data = rt.load(params.read_text(encoding="utf-8"))
    ingest = data.setdefault("ingest", CommentedMap())
    production = ingest.setdefault("production", CommentedMap())
    released = production.get("released")
    if not isinstance(released, list):
        released = production["released"] = CommentedSeq()
    for r in releases:
        item = CommentedMap(r)
        item.fa.set_flow_style()
        released.append(item)
    buf = io.StringIO()
    rt.dump(data, buf)
    atomic.write_text(params, buf.getvalue())
