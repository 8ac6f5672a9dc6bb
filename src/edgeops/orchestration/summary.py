"""What a training run leaves in the Prefect UI: a markdown summary, tables of metrics and resources.

Pure functions of the run's facts (the reports DVC's stages wrote, the gate report, the rollout's
outcome), so they are tested without a server.
"""

from __future__ import annotations

from typing import Any

METRICS = ("roc_auc", "pr_auc", "f1", "balanced_accuracy", "accuracy")


def metrics_table(
    metrics: dict[str, Any] | None, gate: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One row per metric: this run's model (challenger) against the champion, when known."""
    champion = ((gate or {}).get("champion") or {}).get("metrics") or {}
    rows = []
    for name in METRICS:
        if not metrics or name not in metrics:
            continue
        row: dict[str, Any] = {"metric": name, "challenger": round(float(metrics[name]), 6)}
        if name in champion:
            row["champion"] = round(float(champion[name]), 6)
            row["delta"] = round(row["challenger"] - row["champion"], 6)
        rows.append(row)
    return rows


def resources_table(
    record: dict[str, Any] | None, stages: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """One row per stage of the run from reports/resources.json: wall, CPU, peak memory, threads.

    A stage DVC found up to date did not run in this run: its row says so and shows the figures
    of the run that last built it."""
    recorded = (record or {}).get("stages") or {}
    rows = []
    for step in stages or []:
        used = recorded.get(step["stage"])
        if not used:
            continue
        rows.append(
            {
                "stage": step["stage"],
                "ran": "yes" if step.get("ran") else "no (up to date)",
                "wall_s": used.get("wall_s"),
                "cpu_s": used.get("cpu_s"),
                "peak_rss_mb": used.get("peak_rss_mb"),
                "threads": used.get("threads"),
                "finished": used.get("finished"),
            }
        )
    return rows


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def contract_lines(review: dict[str, Any] | None) -> list[str]:
    """The data contract's review in this run, if the devices' rows broke it."""
    if not review:
        return []
    state = review.get("state")
    said = {
        "approved": f"changed, approved by {review.get('approver')}",
        "rejected": f"change REJECTED by {review.get('approver')}: nothing deployed",
        "timeout": "no answer in time: nothing deployed",
        "waiting": "waiting for a person's answer",
        "faults": "FAULTS in the devices' rows: no change offered, nothing deployed",
    }.get(str(state), str(state))
    out = [f"- data contract: {said}"]
    out += [
        f"  - {c['column']}: {c['old']} -> {c['new']} ({c['rows']:,} rows admitted)"
        for c in review.get("changes") or []
    ]
    out += [f"  - fault in {f['column']}: {f['detail']}" for f in review.get("faults") or []]
    return out


def markdown(facts: dict[str, Any]) -> str:
    """The run summary: why it ran, data, validation, stages, metrics vs champion, gate, targets,
    lineage. ``facts`` keys: reason, ingest, validation, stages, version, metrics, gate, deploy,
    push, lineage (any may be missing)."""
    from edgeops.deploy.gate import figures_markdown

    ingest = facts.get("ingest") or {}
    validation = facts.get("validation") or {}
    lines = [f"# Training run: {facts.get('version') or 'no model version'}", ""]
    lines.append(f"**Why:** {facts.get('reason', 'manual')}")
    lines += ["", "## Data"]
    lines.append(
        f"- snapshot: {ingest.get('rows', '?'):,} rows from `{ingest.get('source', '?')}`, "
        f"sha256 `{str(ingest.get('sha256', '?'))[:16]}…`"
        if isinstance(ingest.get("rows"), int)
        else "- snapshot: unknown (reports/ingest.json missing)"
    )
    checks = validation.get("expectations") or []
    failed = validation.get("failures") or []
    verdict = "passed" if validation.get("success") else "FAILED"
    lines.append(
        f"- validation (Great Expectations): {verdict}, {len(checks)} expectations, {len(failed)} failed"
    )
    for target, got in (ingest.get("production") or {}).items():
        joined = f"- labels of {target}: {got['joined']:,} of {got['labelled']:,} joined"
        if got.get("capped"):
            joined += f" ({got['capped']:,} older ones over the cap of {got['cap']:,})"
        lines.append(joined)
        if got.get("quarantined"):
            held = sum(q["rows"] for q in got["quarantined"])
            why = "; ".join(c["why"] for c in got.get("disagreeing") or [])
            lines.append(
                f"  - **QUARANTINED**: {held:,} rows held: {why}; after a review: "
                f"`edgeops labels release {target} --reason TEXT`"
            )
    lines += contract_lines(facts.get("contract"))
    lines += [
        "",
        "## Stages (DVC decides what re-runs)",
        "",
        "| stage | result | seconds |",
        "|---|---|---|",
    ]
    for st in facts.get("stages") or []:
        lines.append(
            f"| {st['stage']} | {'ran' if st['ran'] else 'up to date'} | {st['seconds']:.1f} |"
        )
    lines += ["", "## Metrics against the champion", ""]
    rows = metrics_table(facts.get("metrics"), facts.get("gate"))
    lines += ["| metric | this run | champion | Δ |", "|---|---|---|---|"]
    lines += [
        f"| {r['metric']} | {_fmt(r['challenger'])} | {_fmt(r.get('champion'))} | {_fmt(r.get('delta'))} |"
        for r in rows
    ]
    gate = facts.get("gate")
    lines += ["", "## Gate"]
    if gate is None:
        lines.append(f"- not run: {facts.get('gate_skipped', 'deploy=False')}")
    else:
        champion = (gate.get("champion") or {}).get("version") or "none (first deployment)"
        decision = "promote" if gate.get("promote") else "refuse"
        lines.append(f"- champion: `{champion}` (the registry's production version)")
        lines.append(f"- decision: **{decision}**: {gate.get('reason', '')}")
        figures = figures_markdown(gate)
        if figures:
            lines += ["", figures.rstrip("\n")]
        elif isinstance(gate.get("test_rows"), int):
            lines.append(f"- on the holdout of the source's rows: {gate['test_rows']:,} rows")
    lines += ["", "## Targets"]
    for name in facts.get("withdrawn") or []:
        lines.append(
            f"- {name}: a rollout that never finished (no approval recorded) was "
            "withdrawn first: back on the production version"
        )
    deploy = facts.get("deploy") or {}
    approval = facts.get("approval")
    if approval:
        verdict = "approved" if approval["approve"] else "rejected"
        lines.append(
            f"- fleet rollout {verdict} by {approval['approver']}: {approval['comment'] or '-'}"
        )
    if deploy.get("approval") in ("rejected", "timeout"):
        lines.append(
            f"- approval {deploy['approval']}: canary rolled back {deploy.get('rolled_back') or []}"
        )
    elif deploy.get("error"):
        lines.append(f"- rollout FAILED, rolled back: {deploy['error']}")
    elif deploy.get("targets"):
        for name, check in deploy["targets"].items():
            skipped = (check or {}).get("skipped")
            state = {None: "updated", "canary phase": "updated (canary)"}.get(
                skipped, "already on this version"
            )
            lines.append(f"- {name}: {state}")
    else:
        lines.append(f"- none updated{': ' + deploy['note'] if deploy.get('note') else ''}")
    lines += ["", "## Lineage"]
    push = facts.get("push")
    lines.append(f"- dvc push: {push} file(s) sent" if push is not None else "- dvc push: not run")
    lineage = facts.get("lineage") or {}
    if lineage.get("committed"):
        lines.append(
            f"- git: {lineage['reason']}; commit `{lineage['commit'][:12]}`, tag `{lineage['tag']}`"
        )
        lines.append(f"- reproduce: `git checkout {lineage['tag']} && dvc pull && dvc repro`")
    else:
        lines.append(f"- git: not committed: {lineage.get('reason', 'not run')}")
    return "\n".join(lines) + "\n"
