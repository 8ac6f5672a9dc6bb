"""Request validation: the rows of ``POST /v1/predict`` against the active bundle's inputs.

A :class:`RowValidator` is built once per switch from the bundle's input specs and manifest
(``passthrough`` columns: sent by clients, logged, not fed to the model); ``check`` raises an
:class:`~edgeops.edge.errors.ApiError` listing every problem by row and field.

    rows = RowValidator.for_bundle(bundle, accept_unknown=False).check(payload["rows"], 1000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgeops.edge.bundle import VerifiedBundle
from edgeops.edge.errors import ApiError
from edgeops.edge.inference import FLOAT


@dataclass(frozen=True)
class RowValidator:
    """What a row must hold for the active bundle: its input columns, types, categories, nulls."""

    numeric: frozenset[str]
    categorical: dict[str, frozenset[str]]
    nullable: frozenset[str]
    names: frozenset[str]
    accept_unknown: bool
    #: columns the bundle lists as sent by clients but not features (timestamp, target, dropped):
    #: accepted, logged, not fed to the model
    passthrough: frozenset[str] = frozenset()

    @classmethod
    def for_bundle(cls, bundle: VerifiedBundle, accept_unknown: bool) -> RowValidator:
        """The validator of ``bundle``'s inputs (``accept_unknown``: unknown categories pass)."""
        specs = bundle.model.inputs
        return cls(
            numeric=frozenset(s.name for s in specs if s.dtype == FLOAT),
            categorical={s.name: frozenset(s.categories or ()) for s in specs if s.dtype != FLOAT},
            nullable=frozenset(s.name for s in specs if s.nullable),
            names=frozenset(s.name for s in specs),
            accept_unknown=accept_unknown,
            passthrough=frozenset(str(n) for n in bundle.manifest.get("passthrough") or ()),
        )

    def check(self, rows: Any, max_rows: int) -> list[dict[str, Any]]:
        """``rows`` if every row fits the model's inputs, else 422 naming the problems (first 50);
        413 for more than ``max_rows``.

        One flat loop on purpose: it runs for every row of every prediction.
        """
        _check_shape(rows, max_rows)
        problems: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append({"row": i, "field": None, "problem": "a row must be a JSON object"})
                continue
            keys = row.keys()
            if keys != self.names:
                for name in sorted(self.names - keys):
                    problems.append({"row": i, "field": name, "problem": "missing"})
                for name in sorted(str(k) for k in keys - self.names):
                    if name not in self.passthrough:
                        problems.append({"row": i, "field": name, "problem": "not a column of this model's data"})  # fmt: skip
                    elif isinstance(row[name], dict | list):
                        problems.append({"row": i, "field": name, "problem": "expected a single value"})  # fmt: skip
            for name in self.numeric:
                v = row.get(name)
                if v is None:
                    if name in row and name not in self.nullable:
                        problems.append({"row": i, "field": name, "problem": "null is not allowed"})
                elif isinstance(v, bool) or not isinstance(v, int | float):
                    problems.append(
                        {
                            "row": i,
                            "field": name,
                            "problem": f"expected a number, got {type(v).__name__}",
                        }
                    )
                elif isinstance(v, float) and not math.isfinite(v):
                    problems.append({"row": i, "field": name, "problem": "must be a finite number"})
                elif abs(v) > 3.4e38:
                    problems.append({"row": i, "field": name, "problem": "out of float32 range"})
            for name, allowed in self.categorical.items():
                v = row.get(name)
                if v is None:
                    if name in row and name not in self.nullable:
                        problems.append({"row": i, "field": name, "problem": "null is not allowed"})
                elif not isinstance(v, str):
                    problems.append(
                        {
                            "row": i,
                            "field": name,
                            "problem": f"expected a string, got {type(v).__name__}",
                        }
                    )
                elif v not in allowed and not self.accept_unknown:
                    problems.append({"row": i, "field": name,
                                     "problem": f"unknown category {v[:64]!r}; allowed: {sorted(allowed)}"})  # fmt: skip
            if len(problems) > 50:
                break
        if problems:
            raise ApiError(
                422, "invalid_rows", f"{len(problems)} problem(s) in the rows", problems[:50]
            )
        return rows


def _check_shape(rows: Any, max_rows: int) -> None:
    if not isinstance(rows, list):
        raise ApiError(422, "invalid_rows", "'rows' must be a list of objects",
                       [{"field": "rows", "problem": "not a list"}])  # fmt: skip
    if not rows:
        raise ApiError(422, "invalid_rows", "'rows' is empty: send at least one row",
                       [{"field": "rows", "problem": "empty"}])  # fmt: skip
    if len(rows) > max_rows:
        raise ApiError(
            413, "too_many_rows", f"{len(rows)} rows in one request; the limit is {max_rows}"
        )
