"""The one error type edgeops shows to people: what went wrong, where, and how to fix it."""

from __future__ import annotations


class EdgeopsError(Exception):
    """A problem a person can fix. The CLI and stage entry points print it without a traceback.

    >>> raise EdgeopsError("data/raw/x.csv is empty", fix="point ingest.csv.path at a file with rows")
    """

    def __init__(self, problem: str, fix: str | None = None, exit_code: int = 2) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.problem if not self.fix else f"{self.problem}\n  fix: {self.fix}"
