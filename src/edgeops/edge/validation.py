"""Request validation: the rows of ``POST /v1/predict`` against the active bundle's inputs.

A :class:`RowValidator` is built once per switch from the bundle's input specs and manifest
(``passthrough`` columns: sent by clients, logged, not fed to the model); ``check`` raises an
:class:`~edgeops.edge.errors.ApiError` listing every problem by row and field. :func:`row_schema`
is the JSON Schema of what ``check`` accepts, published in the OpenAPI document (the check itself
stays hand-written: it runs for every row of every prediction).

    rows = RowValidator.for_bundle(bundle, accept_unknown=False).check(payload["rows"], 1000)
    schema = row_schema(bundle, accept_unknown=False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgeops.edge.bundle import VerifiedBundle
from edgeops.edge.errors import ApiError
from edgeops.edge.inference import FLOAT

#: the largest magnitude a numeric value may have (float32's is 3.4028e38)
FLOAT32_LIMIT = 3.4e38


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
                        problems.append(
                            {
                                "row": i,
                                "field": name,
                                "problem": "not a column of this model's data",
                            }
                        )
                    elif isinstance(row[name], dict | list):
                        problems.append(
                            {"row": i, "field": name, "problem": "expected a single value"}
                        )
                    elif isinstance(row[name], str) and (bad := not_utf8(row[name])):
                        problems.append({"row": i, "field": name, "problem": bad})
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
                elif abs(v) > FLOAT32_LIMIT:
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
                elif v not in allowed:
                    if not self.accept_unknown:
                        problems.append(
                            {
                                "row": i,
                                "field": name,
                                "problem": f"unknown category {v[:64]!r}; allowed: {sorted(allowed)}",
                            }
                        )
                    # an unknown category goes on to the model: it must be text onnxruntime can
                    # take (a lone surrogate, JSON "\ud800", is not UTF-8; known ones all are)
                    elif bad := not_utf8(v):
                        problems.append({"row": i, "field": name, "problem": bad})
            if len(problems) > 50:
                break
        if problems:
            raise ApiError(
                422, "invalid_rows", f"{len(problems)} problem(s) in the rows", problems[:50]
            )
        return rows


def not_utf8(text: str) -> str | None:
    """The problem with ``text`` if it cannot be encoded as UTF-8 (a lone UTF-16 surrogate, as
    JSON's ``"\\ud800"`` gives), else None."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return f"not valid text: a lone UTF-16 surrogate at position {exc.start} (send UTF-8 text)"
    return None


def row_schema(bundle: VerifiedBundle, accept_unknown: bool) -> dict[str, Any]:
    """The JSON Schema of one row that :meth:`RowValidator.check` accepts for ``bundle``.

    Every input column is required: a number (float32 range) or a string (one of the known
    categories, or any text with ``accept_unknown``), or null where the column is nullable.
    Passthrough columns may be sent, as single values. No other key is allowed.
    """
    props: dict[str, Any] = {}
    for spec in bundle.model.inputs:
        cats = list(spec.categories or ())
        if spec.dtype == FLOAT:
            prop: dict[str, Any] = {
                "type": "number",
                "minimum": -FLOAT32_LIMIT,
                "maximum": FLOAT32_LIMIT,
            }
            if spec.min is not None and spec.max is not None:
                prop["description"] = f"seen in training: {spec.min:g} to {spec.max:g}"
        elif accept_unknown:
            prop = {
                "type": "string",
                "description": f"known categories: {', '.join(cats)}; "
                "any other text is taken as an unseen category",
                "examples": cats[:3],
            }
        else:
            prop = {"type": "string", "enum": cats}
        if spec.nullable:
            prop["type"] = [prop["type"], "null"]
            if "enum" in prop:
                prop["enum"] = [*prop["enum"], None]
            prop["description"] = "; ".join(
                filter(None, ["null: missing", prop.get("description")])
            )
        props[spec.name] = prop
    for name in bundle.manifest.get("passthrough") or ():
        props.setdefault(
            str(name),
            {
                "type": ["string", "number", "boolean", "null"],
                "description": "passed through: logged, not fed to the model",
            },
        )
    model = bundle.manifest["model"]
    return {
        "type": "object",
        "description": f"one row of raw features for {model['name']} {model['version']}",
        "properties": props,
        "required": [spec.name for spec in bundle.model.inputs],
        "additionalProperties": False,
    }


def _check_shape(rows: Any, max_rows: int) -> None:
    if not isinstance(rows, list):
        raise ApiError(
            422,
            "invalid_rows",
            "'rows' must be a list of objects",
            [{"field": "rows", "problem": "not a list"}],
        )
    if not rows:
        raise ApiError(
            422,
            "invalid_rows",
            "'rows' is empty: send at least one row",
            [{"field": "rows", "problem": "empty"}],
        )
    if len(rows) > max_rows:
        raise ApiError(
            413, "too_many_rows", f"{len(rows)} rows in one request; the limit is {max_rows}"
        )
