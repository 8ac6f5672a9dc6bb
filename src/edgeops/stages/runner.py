"""What every stage's ``main()`` shares: argument parsing, telemetry off, clean errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from edgeops import atomic, resources
from edgeops.errors import EdgeopsError
from edgeops.offline import telemetry_off


def parser(stage: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser for a stage, with the common ``--params`` option."""
    p = argparse.ArgumentParser(prog=f"python -m edgeops.stages.{stage}", description=doc)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(stage: str, body: Callable[[], None], params: str = "params.yaml") -> None:
    """Run a stage body; an :class:`EdgeopsError` prints one clear message and exits non-zero.

    Before the body: telemetry off and every thread pool sized by ``resources.threads``; after it,
    the stage's wall time, CPU time, peak memory and thread pools go to reports/resources.json.
    """
    telemetry_off()
    usage = resources.Usage()
    try:
        threads = resources.apply(params)
        with atomic.reported_when_full():  # a write the stage did not make atomic: one message too
            body()
            resources.record(stage, usage, threads)
    except EdgeopsError as exc:
        print(f"edgeops {stage}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    print(
        f"edgeops {stage}: done in {usage.figures()['wall_s']:.1f} s ({threads} threads)",
        file=sys.stderr,
    )


def log(stage: str, message: str) -> None:
    """Progress output of a stage, on stderr so stdout stays clean for data."""
    print(f"edgeops {stage}: {message}", file=sys.stderr, flush=True)
