"""A page of an agent's log is checked before it is stored: shape, cursor, types."""

from __future__ import annotations

import pytest

from edgeops.deploy.targets import AgentError
from edgeops.monitor.pages import check_head, check_items, feature_columns
from tests.bundles import plant_schema


def row(i: int, **features) -> dict:
    return {
        "id": i,
        "ts": 1.0,
        "request_id": "ab" * 16,
        "row": 0,
        "model_version": "1.0.0",
        "label": 1,
        "probabilities": [0.2, 0.8],
        "features": {"machine_type": "M", "torque_nm": 40.0, **features},
    }


def fb(i: int, seq: int) -> dict:
    return {
        "id": i,
        "request_id": "ab" * 16,
        "row": 0,
        "feedback": "1",
        "feedback_ts": 2.0,
        "seq": seq,
    }


def misbehaves(fn, *args, said: str) -> None:
    with pytest.raises(AgentError) as info:
        fn(*args)
    assert info.value.kind == "misbehaving" and said in str(info.value), str(info.value)


def test_a_page_of_an_agent_passes() -> None:
    items = [row(3), row(4), row(7)]
    assert check_items("t", "rows", items, 2, 5, 7) == items
    events = [fb(3, 5), fb(9, 5), fb(11, 5)]
    assert check_items("t", "feedback", events, 4, 2, 6) == events  # one whole event beyond
    assert check_items("t", "feedback", [fb(3, 5), fb(1, 6)], 4, 2, 6)


@pytest.mark.parametrize(
    ("resp", "said"),
    [
        ([], "must be a JSON object"),
        ({"items": {}, "last": 1, "log_id": "x"}, "'items' list"),
        ({"items": [], "last": "9", "log_id": "x"}, "'last' is '9'"),
        ({"items": [], "last": True, "log_id": "x"}, "'last' is True"),
        ({"items": [], "last": 1, "log_id": 5}, "'log_id' is 5"),
    ],
)
def test_a_page_of_another_shape_is_named(resp, said: str) -> None:
    misbehaves(check_head, "t", resp, said=said)


@pytest.mark.parametrize(
    ("kind", "items", "after", "limit", "last", "said"),
    [
        ("rows", [row(1), row(2)], 2, 10, 9, "do not advance: after id 2 it sent id 1"),
        ("rows", [row(5), row(4)], 2, 10, 9, "do not advance"),
        ("rows", [row(5), row(5)], 2, 10, 9, "do not advance"),
        ("rows", [row(3), row(12)], 2, 10, 9, "beyond its own last id 9"),
        ("rows", [row(i) for i in range(3, 9)], 2, 5, 9, "asked for 5 rows after id 2, it sent 6"),
        ("rows", [{**row(3), "id": True}], 2, 5, 9, "id is True"),
        ("rows", [{**row(3), "ts": float("nan")}], 2, 5, 9, "ts is nan"),
        ("rows", [{**row(3), "probabilities": {"0": 1}}], 2, 5, 9, "probabilities is"),
        ("rows", [{**row(3), "features": [1, 2]}], 2, 5, 9, "features is [1, 2]"),
        ("rows", ["row"], 2, 5, 9, "is not an object"),
        ("feedback", [fb(3, 4)], 4, 10, 9, "do not advance: after 4 it sent seq 4"),
        ("feedback", [fb(3, 6), fb(1, 5)], 4, 10, 9, "do not advance"),
        ("feedback", [fb(3, 6), fb(3, 6)], 4, 10, 9, "do not advance"),
        ("feedback", [fb(3, 12)], 4, 10, 9, "its last seq is 9"),
        ("feedback", [fb(1, 5), fb(2, 6), fb(3, 7)], 4, 2, 9, "of several events"),
        ("feedback", [{**fb(1, 5), "feedback": {"a": 1}}], 4, 2, 9, "feedback is {'a': 1}"),
    ],
)
def test_a_cursor_that_does_not_advance_or_a_wrong_meta_field_is_named(
    kind: str, items: list, after: int, limit: int, last: int, said: str
) -> None:
    misbehaves(check_items, "line-9", kind, items, after, limit, last, said=said)


def test_features_are_checked_against_the_training_contract() -> None:
    schema = plant_schema()
    cols = feature_columns("t", [row(1), row(2, torque_nm=None, note="a")], schema)
    assert cols["torque_nm"] == [40.0, None] and cols["note"] == [None, "a"]
    # a hashed numeric field (log_hash_fields) is the agent's own text
    hashed = feature_columns("t", [row(1, torque_nm="sha256:0123456789abcdef")], schema)
    assert hashed["torque_nm"] == ["sha256:0123456789abcdef"]
    # a passthrough column of several kinds becomes text: one Parquet type per column
    mixed = feature_columns(
        "t", [row(1, serial=17), row(2, serial="A-17"), row(3, serial=None)], schema
    )
    assert mixed["serial"] == ["17", "A-17", None]
    for bad, said in [
        (row(1, machine_type=3), "feature 'machine_type' is 3, not text"),
        (row(1, torque_nm="40"), "feature 'torque_nm' is '40', not a number"),
        (row(1, torque_nm=True), "feature 'torque_nm' is True, not a number"),
        (row(1, torque_nm={"v": 1}), "not a number"),
        (row(1, note=[1]), "feature 'note' is [1], not a single value"),
        (row(1, _id=5), "a feature named '_id'"),
    ]:
        misbehaves(feature_columns, "t", [bad], schema, said=said)
    misbehaves(
        feature_columns,
        "t",
        [row(1), row(2, torque_nm="sha256:0123456789abcdef")],
        schema,
        said="mixes numbers and text",
    )
