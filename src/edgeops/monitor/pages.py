"""What a page of an agent's log must be before it is stored: an agent can lie.

``edgeops monitor`` stores what agents send, and what it stores becomes training data and
drift verdicts. A device that is broken, tampered with or not an edgeops agent at all must not
loop the collector, fill the disk, blow up its memory or crash it for every other target. So
every page is checked before it is stored, and the first problem names the agent and ends its
collection (:func:`~edgeops.deploy.targets.misbehaving`); the other targets are collected:

- the answer's shape: ``items`` (a list), ``last`` and ``log_id``;
- the cursor advances: row ids strictly increasing and after the cursor, feedback sequence
  numbers after it and in order, none beyond the agent's own ``last``; no more rows than asked
  for (a feedback page may hold one whole event beyond it);
- every value has the type the training contract (``validate.schema``) gives its column:
  numbers for numeric features (or the agent's salted hash text, ``log_hash_fields``), text for
  categorical ones, single values (no objects or lists) everywhere; meta fields as the agent
  writes them.

The byte limit of one answer (``monitor.max_page_mb``) is enforced while it is read
(:class:`~edgeops.deploy.targets.AgentClient`); the time limit per agent too.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from edgeops.deploy.targets import TOO_LARGE, misbehaving

if TYPE_CHECKING:
    from edgeops.schema import Schema

__all__ = [
    "MAX_PAGE_BYTES",
    "TOO_LARGE",
    "check_head",
    "check_items",
    "check_predictions",
    "feature_columns",
]

#: the largest answer read for one page (monitor.collect.max_page_mb's default, 64 MiB)
MAX_PAGE_BYTES = 64 << 20
#: what the agent's salted hash of a logged field looks like (edgeops.edge.log_records)
HASHED = re.compile(r"^sha256:[0-9a-f]{16}$")
#: the store's own columns: a feature may not be named like one
RESERVED = frozenset(
    (
        "_id",
        "_ts",
        "_request_id",
        "_row",
        "_model_version",
        "_label",
        "_probabilities",
        "_feedback",
        "_feedback_ts",
        "_seq",
        "_log",
        "_target",
    )
)
SCALARS = (str, int, float, bool, type(None))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_head(target: str, resp: Any) -> dict[str, Any]:
    """``resp`` if it has the shape of a log page (``items``, ``last``, ``log_id``)."""
    if not isinstance(resp, dict):
        raise misbehaving(target, f"a log page must be a JSON object, not {type(resp).__name__}")
    items, last, log_id = resp.get("items"), resp.get("last"), resp.get("log_id")
    if not isinstance(items, list):
        raise misbehaving(target, "a log page without an 'items' list")
    if not _int(last) or last < 0:
        raise misbehaving(target, f"a log page whose 'last' is {last!r}, not a count")
    if not isinstance(log_id, str):
        raise misbehaving(target, f"a log page whose 'log_id' is {log_id!r}, not text")
    return resp


def check_items(
    target: str, kind: str, items: list[Any], after: int, limit: int, last: int
) -> list[dict[str, Any]]:
    """``items`` of a ``rows`` or ``feedback`` page asked for after ``after`` (at most ``limit``),
    if the cursor advances and the meta fields have their types; else a misbehaving error."""
    if kind == "rows":
        if len(items) > limit:
            raise misbehaving(
                target, f"asked for {limit:,} rows after id {after}, it sent {len(items):,}"
            )
        prev = after
        for i, it in enumerate(items):
            _row_meta(target, it, i, after)
            if it["id"] <= prev:
                raise misbehaving(
                    target,
                    f"row ids do not advance: after id {after} it sent id {it['id']} "
                    f"(item {i}, after {prev}); the agent ignores the cursor or counts backwards",
                )
            if it["id"] > last:
                raise misbehaving(target, f"row id {it['id']} beyond its own last id {last}")
            prev = it["id"]
        return items
    prev_seq, prev_id = after, -1
    for i, it in enumerate(items):
        _feedback_meta(target, it, i, after)
        seq = it["seq"]
        if seq <= after or (seq, it["id"]) <= (prev_seq, prev_id) or seq > last:
            raise misbehaving(
                target,
                f"feedback sequence numbers do not advance: after {after} it sent seq "
                f"{seq} for id {it['id']} (item {i}; its last seq is {last}); the agent ignores "
                "the cursor or counts backwards",
            )
        prev_seq, prev_id = seq, it["id"]
    if len(items) > limit and items[0]["seq"] != items[-1]["seq"]:
        raise misbehaving(
            target,
            f"asked for {limit:,} feedback rows after seq {after}, it "
            f"sent {len(items):,} of several events",
        )
    return items


def _where(i: int, it: Any) -> str:
    ident = it.get("id") if isinstance(it, dict) else None
    return f"item {i}" + (f" (id {ident!r})" if ident is not None else "")


def _row_meta(target: str, it: Any, i: int, after: int) -> None:
    if not isinstance(it, dict):
        raise misbehaving(target, f"{_where(i, it)} of the rows after id {after} is not an object")
    checks = (
        ("id", _int(it.get("id"))),
        ("ts", _number(it.get("ts"))),
        ("request_id", isinstance(it.get("request_id"), str) and 0 < len(it["request_id"]) <= 128),
        ("row", _int(it.get("row")) and it["row"] >= 0),
        (
            "model_version",
            isinstance(it.get("model_version"), str) and 0 < len(it["model_version"]) <= 128,
        ),
        ("label", isinstance(it.get("label"), SCALARS)),
        (
            "probabilities",
            isinstance(it.get("probabilities"), list)
            and all(_number(p) for p in it["probabilities"]),
        ),
        ("features", isinstance(it.get("features"), dict)),
    )
    for name, ok in checks:
        if not ok:
            raise misbehaving(
                target,
                f"{_where(i, it)} of the rows after id {after}: {name} is "
                f"{_shown(it.get(name))}, not what the agent logs",
            )


def _feedback_meta(target: str, it: Any, i: int, after: int) -> None:
    if not isinstance(it, dict):
        raise misbehaving(
            target, f"{_where(i, it)} of the feedback after seq {after} is not an object"
        )
    checks = (
        ("id", _int(it.get("id"))),
        ("seq", _int(it.get("seq"))),
        ("request_id", isinstance(it.get("request_id"), str) and 0 < len(it["request_id"]) <= 128),
        ("row", _int(it.get("row")) and it["row"] >= 0),
        (
            "feedback",
            isinstance(it.get("feedback"), str | int) and not isinstance(it.get("feedback"), bool),
        ),
        ("feedback_ts", it.get("feedback_ts") is None or _number(it.get("feedback_ts"))),
    )
    for name, ok in checks:
        if not ok:
            raise misbehaving(
                target,
                f"{_where(i, it)} of the feedback after seq {after}: {name} is "
                f"{_shown(it.get(name))}, not what the agent logs",
            )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_predictions(target: str, items: list[dict[str, Any]], schema: Schema | None) -> None:
    """Each row's prediction is one of the contract's classes, with one probability per class
    (from 0 to 1): a device's logged predictions are what its labels are judged against."""
    if schema is None:
        return
    classes = {str(c) for c in schema.classes}
    for i, it in enumerate(items):
        proba = it["probabilities"]
        if str(it["label"]) not in classes:
            raise misbehaving(
                target,
                f"{_where(i, it)}: label {_shown(it['label'])} is not a class "
                f"of the model ({sorted(classes)})",
            )
        if len(proba) != len(classes) or not all(0.0 <= p <= 1.0 for p in proba):
            raise misbehaving(
                target,
                f"{_where(i, it)}: probabilities {_shown(proba)} are not one "
                f"probability per class ({len(classes)})",
            )


def feature_columns(
    target: str, items: list[dict[str, Any]], schema: Schema | None
) -> dict[str, list[Any]]:
    """The features of a page's rows as columns, each value checked against the type ``schema``
    gives its column; a column the schema does not name (a passthrough) holds single values,
    as text if they are of several kinds (a Parquet column has one type)."""
    from edgeops.schema import CATEGORICAL, NUMERIC

    # the model's inputs have the contract's types; other columns (passthrough) single values
    types = {} if schema is None else {c.name: c.type for c in schema.features}
    columns: dict[str, list[Any]] = {}
    for i, it in enumerate(items):
        for key in it["features"]:
            if key not in columns:
                if key in RESERVED:
                    raise misbehaving(target, f"{_where(i, it)}: a feature named {key!r}")
                columns[key] = [None] * len(items)
        for key, value in it["features"].items():
            kind = types.get(key)
            if kind == NUMERIC:
                ok = (
                    value is None
                    or _number(value)
                    or (isinstance(value, str) and HASHED.match(value))
                )
            elif kind == CATEGORICAL:
                ok = (
                    value is None
                    or isinstance(value, str)
                    or (key == (schema.target if schema else None) and isinstance(value, SCALARS))
                )
            else:
                ok = isinstance(value, SCALARS) and not (
                    isinstance(value, float) and not math.isfinite(value)
                )
            if not ok:
                want = {NUMERIC: "a number", CATEGORICAL: "text"}.get(kind, "a single value")
                raise misbehaving(
                    target,
                    f"{_where(i, it)}: feature {key!r} is {_shown(value)}, not {want} "
                    f"({'the training contract says ' + kind if kind else 'as logged'})",
                )
            columns[key][i] = value
    for key, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if types.get(key) == NUMERIC and str in kinds and len(kinds) > 1:
            raise misbehaving(target, f"feature {key!r} mixes numbers and text in one page")
        if len(kinds - {int, float}) and len(kinds) > 1:  # several kinds: text, one type
            columns[key] = [None if v is None else str(v) for v in values]
    return columns
