"""What every stage's ``main()`` shares: argument parsing, telemetry off, clean errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from edgeops import atomic, resources
from edgeops.errors import EdgeopsError
from edgeops.offline import telemetry_off


def parser(stage: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser for a stage, with the common ``--params`` option."""
    p = argparse.ArgumentParser(prog=f"edgeops stage {stage}", description=doc)
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
        check_stage_version(stage, Path(params).resolve().parent)
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


def check_stage_version(stage: str, root: Path) -> None:
    """Refuse to run a stage whose version differs from the one its project records: the
    installed edgeops was upgraded without ``edgeops upgrade``, so DVC's lineage would claim the
    old code made the new outputs. A folder without the record (not made by edgeops init) runs."""
    from edgeops.stages import STAGE_VERSIONS

    record = root / ".edgeops" / "project.yaml"
    if stage not in STAGE_VERSIONS or not record.is_file():
        return
    from edgeops.project.template import ProjectState

    state = ProjectState.read(root)
    recorded, ours = state.stage_versions.get(stage), STAGE_VERSIONS[stage]
    if recorded != ours:
        import edgeops

        raise EdgeopsError(
            f"this project records {stage} version {recorded} (edgeops {state.edgeops_version}); "
            f"the installed edgeops {edgeops.__version__} runs version {ours}",
            fix="run `edgeops upgrade` in the project (it records the new versions, and "
            "`dvc repro` then re-runs the stages that changed)",
        )


def log(stage: str, message: str) -> None:
    """Progress output of a stage, on stderr so stdout stays clean for data."""
    print(f"edgeops {stage}: {message}", file=sys.stderr, flush=True)
