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
        out += ["", f"Performance: {p['verdict']}: {p['reason']}"]
        if p.get("production"):
            out += ["", "| metric | production | test | drop |", "| --- | --- | --- | --- |"]
            for k, v in p["production"].items():
                out.append(
                    f"| {k} | {v:.4f} | {p['test'].get(k, float('nan')):.4f} | {p['drop'].get(k, float('nan')):+.4f} |"
                )
    reports = t.get("reports") or {}
    if reports.get("drift_html"):
        out += ["", f"Drift report: {reports['drift_html']}"]
    return [*out, ""]


def _regime(drift: dict[str, Any]) -> str:
    """Which reference the figures are against: the regime of the training split the window
    matched (the closest; the window is drift only when it is drifted against every regime)."""
    ref = drift.get("reference") or {}
    if not drift.get("regime"):
        return ""
    rows = f"{ref['rows']:,} of {ref['of']:,} rows" if ref.get("rows") is not None else ""
    return f"; against the regime {drift['regime']}" + (f" ({rows})" if rows else "")
