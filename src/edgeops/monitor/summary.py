"""The monitoring run in words: a markdown summary for people (summary.md, the Prefect artifact)."""

from __future__ import annotations

from typing import Any


def markdown(result: dict[str, Any], link: str | None = None) -> str:
    """Decision and reasons first, then one section per target with its figures."""
    lines = [
        f"# Monitoring {result.get('model', '')}: **{result['decision']}**",
        "",
        *[f"- {r}" for r in result["reasons"]],
        "",
    ]
    for name, t in result["targets"].items():
        lines += _target(name, t)
    if link:
        lines += ["", f"Reports: {link}"]
    return "\n".join(lines) + "\n"


def _target(name: str, t: dict[str, Any]) -> list[str]:
    w = t.get("window") or {}
    out = [f"## {name}: {t['decision']}", ""]
    if t["decision"] in ("unreachable", "misbehaving"):  # nothing collected, nothing judged
        return [*out, f"Not judged: {'; '.join(t['reasons'])}", ""]
    out.append(
        f"Window: {w.get('rows', 0):,} rows of {t.get('version') or 'no model'}"
        + (
            f" ({w['by']}, {w.get('from')} .. {w.get('to')}, {w.get('labelled', 0):,} labelled)"
            if w.get("rows")
            else ""
        )
        + (
            f"; drift on a sample of {w['sample']['rows']:,} (seed {w['sample']['seed']})"
            if w.get("sample") and w["sample"]["rows"] < w["sample"]["of"]
            else ""
        )
    )
    drift = t.get("drift")
    if drift:
        out += [
            "",
            f"Drift: {len(drift['drifted_columns'])} of {len(drift['columns'])} feature "
            f"columns (share {drift['share']:.2f}, retrain at >= {drift['share_threshold']})"
            + _regime(drift),
            "",
            "| column | method | score | threshold | drifted |",
            "| --- | --- | --- | --- | --- |",
        ]
        cols = dict(drift["columns"])
        if drift.get("prediction"):
            cols["prediction (model output)"] = drift["prediction"]
        for c, v in cols.items():
            out.append(
                f"| {c} | {v['method']} | {v['score']:.4g} | {v['threshold']} | "
                f"{'**yes**' if v['drifted'] else 'no'} |"
            )
    if drift and len(drift.get("regimes") or []) > 1:
        out += [
            "",
            "| regime of the training split | rows | share | drifted |",
            "| --- | --- | --- | --- |",
        ]
        for r in drift["regimes"]:
            mark = " (matched)" if r["regime"] == drift["regime"] else ""
            out.append(
                f"| {r['regime']}{mark} | {r['rows']:,} of {r['of']:,} | {r['share']:.2f} | "
                f"{', '.join(r['drifted_columns']) or '-'} |"
            )
    q = t.get("quality")
    if q:
        out += [
            "",
            f"Data quality (the training contract): {'passed' if q['success'] else 'FAILED'}",
        ]
        out += [f"- {f}" for f in q.get("failures", [])[:10]]
    p = t.get("performance")
    if p:
        out += ["", f"Performance: {p['verdict']}: {p['reason']}", *_performance_table(p)]
    reports = t.get("reports") or {}
    if reports.get("drift_html"):
        out += ["", f"Drift report: {reports['drift_html']}"]
    return [*out, ""]


def _performance_table(p: dict[str, Any]) -> list[str]:
    """Every metric shown: judged (primary or guard, its fall against max_drop) or shown, not
    judged, with the reason; the test figures are over the same classes as production's."""
    rows = p.get("metrics") or {}
    if not rows:
        return []
    out = [
        "",
        f"Test figures: {p.get('test_source', 'the manifest')}.",
        "",
        "| metric | production | test | fell by | judged |",
        "| --- | --- | --- | --- | --- |",
    ]

    def fig(v: float | None, fmt: str = ".4f") -> str:
        return "-" if v is None else format(v, fmt)

    for k, r in rows.items():
        if r.get("judged"):
            worse = "**degraded**" if r["degraded"] else "ok"
            rule = "a rise is no drop" if r["drop"] <= 0 else f"max drop {p['max_drop']:g}"
            judged = f"{r['role']}: {worse} ({rule})"
        else:
            judged = (f"{r['role']}: " if r.get("role") else "") + r["note"]
        out.append(
            f"| {k} | {fig(r['production'])} | {fig(r['test'])} | {fig(r['drop'], '+.4f')} "
            f"| {judged} |"
        )
    return out


def _regime(drift: dict[str, Any]) -> str:
    """Which reference the figures are against: the regime of the training split the window
    matched (the closest; the window is drift only when it is drifted against every regime)."""
    ref = drift.get("reference") or {}
    if not drift.get("regime"):
        return ""
    rows = f"{ref['rows']:,} of {ref['of']:,} rows" if ref.get("rows") is not None else ""
    return f"; against the regime {drift['regime']}" + (f" ({rows})" if rows else "")
