"""One DVC operation per workspace at a time: a Prefect global concurrency limit of 1.

DVC's repository lock is not made for concurrency (a second ``dvc repro`` fails at once), so the
flows serialize before they touch the workspace. A Prefect global concurrency limit is used rather
than a file lock because the server sees it: the UI lists the slot and who holds it, a waiting run
shows it is waiting, a crashed holder's lease expires by itself, and workers on other machines
sharing a workspace on a network drive serialize too. ``strict=True``: a limit that does not
exist is an error, never a silent no-op (Prefect's default skips it with a warning).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress


def ensure_limit(name: str) -> None:
    """Create the limit (limit 1) unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:  # read first: a create that collides logs an IntegrityError traceback on the server
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )


@contextmanager
def workspace_slot(
    name: str,
    log: Callable[[str], None] = print,
    timeout: float | None = None,
    lease_seconds: float = 120,
) -> Iterator[float]:
    """Hold the workspace's slot for the block; yields the wait in s.

    ``timeout=None`` waits as long as it takes; else ``TimeoutError`` after that many seconds.
    The slot is a lease this process renews: if the process dies, the slot is free again
    ``lease_seconds`` later (``orchestration.crashed_after_seconds``). A renewal that fails while
    the server restarts does not stop the run (DVC's own lock still guards the workspace)."""
    from prefect.concurrency.sync import concurrency

    ensure_limit(name)
    start = time.monotonic()
    log(f"taking the workspace slot {name!r} (one DVC operation at a time; waits if taken)")
    with concurrency(
        name,
        occupy=1,
        strict=True,
        timeout_seconds=timeout,
        lease_duration=max(60.0, lease_seconds),
        raise_on_lease_renewal_failure=False,
    ):
        waited = time.monotonic() - start
        log(f"workspace slot {name!r} acquired after {waited:.1f} s")
        yield waited
