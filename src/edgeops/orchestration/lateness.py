"""Missed runs are skipped, not caught up: a box that was off does not work off a backlog.

A scheduled run that starts long after it was due (the machine or the server was down, no worker
polled) ends Cancelled with the reason instead of running: for ``training`` after
``orchestration.max_lateness_hours``, for the hourly ``monitoring`` after
``orchestration.monitoring_max_lateness_minutes`` (the next regular run is due by then anyway).
A run started by hand is due when it is started, so it is never late.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def hours_late() -> float:
    """How long after its scheduled time this flow run started, in hours (0 outside a run)."""
    from prefect.runtime import flow_run

    due = flow_run.scheduled_start_time
    return max(0.0, (datetime.now(UTC) - due).total_seconds() / 3600) if due else 0.0


def skip_if_late(max_hours: float, setting: str, log: Callable[[str], None]) -> Any:
    """A Cancelled state naming the lateness and ``setting`` when the run is too late, else None."""
    from prefect.states import Cancelled

    late = hours_late()
    if late <= max_hours:
        return None
    message = f"skipped: started {late:.1f} h after it was due, more than orchestration.{setting}"
    log(message)
    return Cancelled(message=message)
