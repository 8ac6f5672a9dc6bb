"""The retrain decision: thresholds from ``params.yaml`` (``monitor``), with guardrails.

Per target: ``not_enough_data`` when the window is below ``window.min_rows`` (never "no drift"),
else ``retrain`` when the share of drifted feature columns reaches ``drift.share`` (against every
regime of the reference: the one the window matched is named) or a judged metric on labelled
rows (the primary or a ``performance.guard_metrics``) fell by ``performance.max_drop``, else
``keep``. Overall: ``retrain``
if any target says so, unless a retrain was started within ``cooldown_hours`` (then
``cooldown``). A target whose agent does not answer (or not within its time limit) is
``unreachable``, one that answers what no edgeops agent answers (a redirect, an oversized or
malformed page, a cursor that does not advance) ``misbehaving``: either is named in the reasons
and the others are judged without it. The exit code of ``edgeops monitor`` says which.
"""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

KEEP, RETRAIN, NOT_ENOUGH, COOLDOWN = "keep", "retrain", "not_enough_data", "cooldown"
UNREACHABLE, MISBEHAVING = "unreachable", "misbehaving"
#: targets set aside, not judged
SET_ASIDE = (UNREACHABLE, MISBEHAVING)
EXIT_CODES = {KEEP: 0, RETRAIN: 5, NOT_ENOUGH: 6, COOLDOWN: 7}
#: keep or not enough data, but a target did not answer: its agent needs a look
EXIT_UNREACHABLE = 9
TRIGGER_EVENT = "retrain_triggered"


def target_decision(
    rows: int, min_rows: int, drift: dict[str, Any] | None, perf: dict[str, Any] | None
) -> tuple[str, list[str]]:
    """(decision, reasons) for one target's window."""
    if rows < min_rows:
        return NOT_ENOUGH, [f"not enough data (n={rows} < min {min_rows}): no verdict on drift"]
    reasons = []
    if drift and drift["dataset_drift"]:
        cols = ", ".join(
            f"{c} ({drift['columns'][c]['method']} {drift['columns'][c]['score']:.3g})"
            for c in drift["drifted_columns"]
        )
        reasons.append(
            f"drift: {len(drift['drifted_columns'])} of {len(drift['columns'])} feature columns "
            f"drifted (share {drift['share']:.2f} >= {drift['share_threshold']}){_against(drift)}"
            f": {cols}"
        )
    if perf and perf.get("verdict") == "degraded":
        reasons.append(f"performance: {perf['reason']}")
    if reasons:
        return RETRAIN, reasons
    return KEEP, [f"no drift above the thresholds{_against(drift, ' (the window matched ', ')')}"]


#: how the reasons name the regimes of the drift reference (monitor/reference.py)
REGIME_NAMES = {
    "all": "the whole training split",
    "source": "the source's rows",
    "production": "the production rows",
    "production new": "the production rows unlike the source's",
    "production like source": "the production rows like the source's",
}


def regime_name(regime: str) -> str:
    """A regime of the drift reference in words (:data:`REGIME_NAMES`)."""
    return REGIME_NAMES.get(regime, regime)


def _against(drift: dict[str, Any] | None, before: str = " against ", after: str = "") -> str:
    """The regime the window was judged against, when the reference held more than one: a
    window is drift only when it is drifted against each, and the closest is the one named."""
    if not drift or len(drift.get("regimes") or []) < 2:
        return ""
    name = regime_name(drift["regime"])
    if before == " against ":
        return f" against every regime of the training split, the closest {name}"
    return f"{before}{name} of the training split{after}"


def unreachable(error: Exception) -> dict[str, Any]:
    """The result of a target set aside: its agent did not answer (``unreachable``) or answered
    what no agent answers (``misbehaving``); nothing more collected, no verdict."""
    decision = MISBEHAVING if getattr(error, "kind", None) == MISBEHAVING else UNREACHABLE
    return {
        "decision": decision,
        "reasons": [str(error).split(": ", 1)[-1]],
        "collected": None,
        "reports": {},
    }


#: how far an entry's time may lie ahead of this host's clock (clocks of two hosts differ a little)
CLOCK_SKEW_SECONDS = 300


def entry_time(entry: dict[str, Any]) -> float | None:
    """An audit entry's ``at`` as epoch seconds (None when it is not a valid time)."""
    try:
        return float(calendar.timegm(time.strptime(str(entry.get("at")), "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def last_trigger(audit_path: Path, now: float | None = None) -> tuple[float | None, list[str]]:
    """When the last retrain was started (epoch seconds), from the audit log; and the entries
    that were ignored because they are dated in the future (a wrong clock, or an edit: one such
    entry would otherwise hold every automatic retrain back for as long)."""
    from edgeops.deploy.registry import AuditLog

    now = time.time() if now is None else now
    future = []
    for entry in reversed(AuditLog(audit_path).read()):
        if entry.get("event") != TRIGGER_EVENT:
            continue
        at = entry_time(entry)
        if at is None:
            future.append(
                f"ignored a {TRIGGER_EVENT} entry with no valid time ({entry.get('at')!r})"
            )
            continue
        if at > now + CLOCK_SKEW_SECONDS:
            future.append(
                f"ignored a {TRIGGER_EVENT} entry dated {entry['at']}, {(at - now) / 3600:.1f} h "
                "in the future (a wrong clock, or an edit): check the host's clock and the audit log"
            )
            continue
        return at, future
    return None, future


def overall(
    per_target: dict[str, dict[str, Any]],
    cooldown_hours: float,
    audit_path: Path,
    now: float | None = None,
) -> dict[str, Any]:
    """Combine the targets' decisions and apply the cooldown."""
    now = time.time() if now is None else now
    down = [t for t, r in per_target.items() if r["decision"] in SET_ASIDE]
    decisions = [r["decision"] for r in per_target.values() if r["decision"] not in SET_ASIDE]
    reasons = [f"{t}: {x}" for t, r in per_target.items() for x in r["reasons"]]
    if RETRAIN in decisions:
        decision = RETRAIN
        reasons = [
            f"{t}: {x}"
            for t, r in per_target.items()
            if r["decision"] in (RETRAIN, *SET_ASIDE)
            for x in r["reasons"]
        ]
        last, future = last_trigger(audit_path, now)
        reasons += future
        if last is not None and now - last < cooldown_hours * 3600:
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last + cooldown_hours * 3600))
            reasons.append(
                f"cooldown: a retrain was started {(now - last) / 3600:.1f} h ago; "
                f"the next may start after {until} (monitor.cooldown_hours {cooldown_hours:g})"
            )
            decision = COOLDOWN
    elif decisions and all(d == NOT_ENOUGH for d in decisions):
        decision = NOT_ENOUGH
    else:
        decision = KEEP
    code = EXIT_UNREACHABLE if down and decision in (KEEP, NOT_ENOUGH) else EXIT_CODES[decision]
    return {
        "decision": decision,
        "retrain": decision == RETRAIN,
        "reasons": reasons,
        "unreachable": down,
        "exit_code": code,
    }
