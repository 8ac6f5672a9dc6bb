"""A person in the loop: with ``deploy.approval: fleet`` a retrained model reaches the canary by
itself, then the ``training`` run pauses until someone approves or rejects the fleet rollout in the
Prefect UI (or through the API: ``prefect.flow_runs.resume_flow_run(id, run_input={...})``).

The form asks for a decision, a name and a comment; all three go to the audit log. No answer
within ``deploy.approval_timeout_minutes``: no fleet rollout, and the canary is rolled back.
"""

from __future__ import annotations

from typing import Any

from prefect.input import RunInput
from pydantic import Field

APPROVAL_MODES = ("none", "fleet")


class Approval(RunInput):
    """The answer a person gives in the Prefect UI's resume form."""

    approve: bool = Field(
        default=False, description="Tick to roll out to the whole fleet; leave it to reject."
    )
    approver: str = Field(default="", description="Your name (kept in the audit log).")
    comment: str = Field(default="", description="Why (kept in the audit log).")


def settings(params: dict[str, Any]) -> tuple[str, float]:
    """(mode, timeout in seconds) from ``deploy.approval`` and ``deploy.approval_timeout_minutes``."""
    from edgeops.errors import EdgeopsError

    cfg = params.get("deploy") or {}
    mode = str(cfg.get("approval") or "none")
    if mode not in APPROVAL_MODES:
        raise EdgeopsError(
            f"deploy.approval is {mode!r}", fix=f"use one of {', '.join(APPROVAL_MODES)}"
        )
    try:
        minutes = float(cfg.get("approval_timeout_minutes", 60))
    except (TypeError, ValueError):
        raise EdgeopsError("deploy.approval_timeout_minutes must be a number") from None
    if minutes <= 0:
        raise EdgeopsError("deploy.approval_timeout_minutes must be > 0")
    return mode, minutes * 60


def request_markdown(
    version: str, gate: dict[str, Any], canary: str, check: dict[str, Any], timeout_s: float
) -> str:
    """What the approver sees: the gate's verdict and its figures (each set: the source's rows,
    the production rows, all; this run vs the champion), and the canary's health."""
    from edgeops.deploy.gate import figures_markdown

    lines = [
        f"# Approve {version} for the fleet?",
        "",
        f"The canary **{canary}** runs {version} and passed its checks.",
        f"Answer within {timeout_s / 60:.0f} min, or the canary is rolled back.",
        "",
        f"Gate: **{'promote' if gate.get('promote') else 'refuse'}**: {gate.get('reason', '')}",
        "",
    ]
    lines.append(figures_markdown(gate).rstrip("\n") or "(no figures: the gate was skipped)")
    p = check.get("probation") or {}
    lines += [
        "",
        f"Canary: golden predictions over HTTP |Δp| {check.get('golden_max_abs_diff', float('nan')):.1e}; "
        f"probation {p.get('requests', 0)} requests, {p.get('errors', 0)} errors.",
    ]
    return "\n".join(lines) + "\n"
