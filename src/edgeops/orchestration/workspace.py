"""The DVC workspace a flow drives: reproduce one stage, push to the remote, read run facts.

DVC is used in-process (``dvc.repo.Repo``): one import per flow run instead of one CLI start per
stage (0.4-1.3 s once, warm or cold, then ~0.1 s per unchanged stage, against ~1.6 s per
``dvc repro -s`` call; bench/orchestration.py).
DVC runs each stage's command as a child process that writes to this process's stdout and stderr;
:func:`captured_output` reads those lines as they come, so a flow can show them in its run log
and fail with the stage's own error message instead of a subprocess dump.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError

#: Lines worth forwarding to a run log: the stages' own progress and DVC's stage decisions.
INTERESTING = re.compile(
    r"^(edgeops \w+:|Running stage|Stage '|Updating lock|ERROR:|WARNING:|  fix:| +- )"
)


class StageFailed(EdgeopsError):
    """A DVC stage failed; the message is the stage's own error, in one line."""


@dataclass
class StageResult:
    stage: str
    ran: bool
    seconds: float
    lines: list[str] = field(default_factory=list)


@contextmanager
def captured_output(on_line: Callable[[str], None]) -> Iterator[list[str]]:
    """Send everything written to file descriptors 1 and 2 (by us or by child processes) through a
    pipe: each line is echoed to the original stderr, collected, and given to ``on_line`` when it
    matches :data:`INTERESTING` (so a log handler writing to stderr cannot feed itself)."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    saved_out, saved_err = os.dup(1), os.dup(2)
    lines: list[str] = []

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                os.write(saved_err, raw)
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if INTERESTING.match(line):
                    on_line(line)

    reader = threading.Thread(target=pump, name="stage-output", daemon=True)
    reader.start()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield lines
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)  # the pipe's last writer is gone: the reader sees EOF
        reader.join(timeout=10)
        os.close(saved_out)
        os.close(saved_err)


def stage_error(stage: str, lines: list[str]) -> str | None:
    """The stage's own error message (``edgeops STAGE: error: ...`` and what follows), one line."""
    marker = f"edgeops {stage}: error: "
    for i, line in enumerate(lines):
        if line.startswith(marker):
            parts = [line[len(marker) :].strip()]
            for more in lines[i + 1 :]:
                if more.startswith(("ERROR:", "edgeops ")) or not more.strip():
                    break
                parts.append(more.strip())
            return " ".join(parts)
    return None


class Workspace:
    """A DVC repository on this machine (the folder holding dvc.yaml and params.yaml)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not (self.root / "dvc.yaml").is_file():
            raise EdgeopsError(
                f"{self.root} holds no dvc.yaml",
                fix="run the flow in the edgeops workspace (EDGEOPS_WORKSPACE, or the deployment's directory)",
            )
        self._repo: Any = None

    @property
    def repo(self) -> Any:
        if self._repo is None:
            from dvc.repo import Repo

            self._repo = Repo(str(self.root))
        return self._repo

    def stages(self) -> list[str]:
        """The pipeline's stage names, in dvc.yaml's order."""
        from edgeops.params import parse_yaml

        return list((parse_yaml((self.root / "dvc.yaml").read_text()) or {})["stages"])

    def reproduce(self, stage: str, on_line: Callable[[str], None] = print) -> StageResult:
        """``dvc repro -s STAGE``: DVC decides whether it must run. Raises :class:`StageFailed`."""
        from dvc.exceptions import DvcException

        start = time.perf_counter()
        with captured_output(on_line) as lines:
            try:
                ran = self.repo.reproduce(stage, single_item=True)
                error = None
            except DvcException as exc:
                ran, error = [], exc
        if error is not None:
            own = stage_error(stage, lines)
            cause = error.__cause__ or error
            raise StageFailed(f"{stage} failed: {own or cause}") from None
        return StageResult(stage, bool(ran), time.perf_counter() - start, lines)

    def push(self) -> int:
        """``dvc push`` to the default remote; the number of files sent."""
        from dvc.exceptions import DvcException

        try:
            return int(self.repo.push() or 0)
        except DvcException as exc:
            raise EdgeopsError(
                f"dvc push failed: {exc}",
                fix="check the DVC remote (`dvc remote list`; is it mounted and writable?)",
            ) from None

    def read_json(self, rel: str) -> dict[str, Any] | None:
        path = self.root / rel
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
