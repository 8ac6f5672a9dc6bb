"""`make help`: every target with its description (the Makefile includes the telemetry file, so
grep must not prefix file names)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_help_lists_every_target_with_its_description() -> None:
    out = subprocess.run(
        ["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    listed = dict(re.findall(r"^  make (\S+)\s+(.+)$", out, re.M))
    targets = re.findall(r"^([a-zA-Z_-]+):.*?## ", (REPO / "Makefile").read_text(), re.M)
    assert sorted(listed) == sorted(targets)
    assert {"demo", "test", "up", "bench-scaling"} <= set(listed)
    assert listed["test"].startswith("run the test suite")
