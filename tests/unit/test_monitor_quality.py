"""The monitoring data contract (edgeops.monitor.quality): the validate stage's expectations on
production rows, in pandas; and its agreement with Great Expectations on the same frames."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edgeops.monitor.quality import (
    BETWEEN,
    COLUMNS_MATCH,
    IN_SET,
    IN_TYPES,
    NOT_NULL,
    ROW_COUNT,
    check_contract,
    to_markdown,
)
from edgeops.params import load_params
from edgeops.schema import Schema, schema_from_params
from edgeops.sources.simulator import simulate
from tests.unit.conftest import PLANT_FEATURES, REPO, ROWS


@pytest.fixture(scope="module")
def schema() -> Schema:
    """The reviewed schema, read the way monitoring reads it."""
    return schema_from_params(load_params(REPO / "params.yaml"))


@pytest.fixture
def features(plant_df) -> pd.DataFrame:
    """What an edge device sees: the feature columns only (3,000 simulated readings)."""
    return plant_df[PLANT_FEATURES].copy()


def _check(report: dict[str, Any], expectation: str, column: str | None) -> dict[str, Any]:
    hits = [c for c in report["checks"] if (c["expectation"], c["column"]) == (expectation, column)]
    assert len(hits) == 1, report["checks"]
    return hits[0]


def _failed(report: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(c["expectation"], c["column"]) for c in report["checks"] if not c["success"]}


def _set_nulls(df: pd.DataFrame, column: str, count: int) -> None:
    """Exactly ``count`` nulls in ``column`` (the simulator's own sensor dropouts are filled)."""
    df[column] = df[column].fillna(df[column].median())
    df.loc[df.index[:count], column] = np.nan


# --- clean data ---------------------------------------------------------------------------------


def test_clean_production_rows_pass(features, schema) -> None:
    report = check_contract(features, schema)
    assert report["success"] is True, report["failures"]
    assert report["rows"] == ROWS
    assert report["failures"] == [] and report["missing_columns"] == []
    assert report["unexpected_columns"] == []
    # every feature is checked: not-null (all have max_null_share < 1), type + range / set
    columns = {c["column"] for c in report["checks"]}
    assert columns == {None, *PLANT_FEATURES}
    assert len(report["checks"]) == 1 + 2 * 2 + 3 * 6  # column set, 2 categorical, 6 numeric
    assert _check(report, NOT_NULL, "air_temp_k")["allowed_share"] == 0.02
    json.dumps(report, allow_nan=False)  # JSON-ready, no NaN


def test_target_timestamp_and_log_fields_are_optional(plant_df, schema) -> None:
    """The whole simulator frame plus log metadata: extra fields are listed, nothing fails."""
    plant_df["_id"] = range(len(plant_df))
    plant_df["_model_version"] = "v1"
    report = check_contract(plant_df, schema)
    assert report["success"] is True, report["failures"]
    assert report["unexpected_columns"] == ["_id", "_model_version"]
    assert _check(report, IN_TYPES, "timestamp")["success"]  # present, so checked
    assert all(c["column"] != "failure" for c in report["checks"])  # not without require_target
    with_target = check_contract(plant_df, schema, require_target=True)
    assert with_target["success"] is True
    assert _check(with_target, IN_SET, "failure")["success"]


def test_the_target_is_checked_only_when_required(features, plant_df, schema) -> None:
    plant_df.loc[plant_df.index[:4], "failure"] = 2
    assert check_contract(plant_df, schema)["success"] is True
    report = check_contract(plant_df, schema, require_target=True)
    assert _failed(report) == {(IN_SET, "failure")}
    assert _check(report, IN_SET, "failure")["unexpected_count"] == 4
    missing = check_contract(features, schema, require_target=True)
    assert missing["missing_columns"] == ["failure"]
    assert _failed(missing) == {(COLUMNS_MATCH, None)}


# --- what is wrong, and how much ----------------------------------------------------------------


def test_nulls_over_the_allowed_share_fail(features, schema) -> None:
    _set_nulls(features, "air_temp_k", 360)  # 12 % of 3,000; 2 % allowed
    _set_nulls(features, "vibration_mm_s", 60)  # 2 %; 3 % allowed
    report = check_contract(features, schema)
    assert report["success"] is False
    assert _failed(report) == {(NOT_NULL, "air_temp_k")}
    check = _check(report, NOT_NULL, "air_temp_k")
    assert check["unexpected_count"] == 360
    assert check["unexpected_share"] == pytest.approx(0.12)
    assert check["allowed_share"] == 0.02
    assert report["failures"] == [
        "air_temp_k: 12.0 % nulls (360 of 3,000 rows), at most 2.0 % allowed"
    ]
    # nulls are not range or type problems
    assert _check(report, BETWEEN, "air_temp_k")["success"]
    assert _check(report, BETWEEN, "air_temp_k")["nonnull_count"] == 3000 - 360


def test_null_share_boundary_is_inclusive_like_mostly(features, schema) -> None:
    _set_nulls(features, "air_temp_k", 60)  # exactly 2 %
    assert check_contract(features, schema)["success"] is True
    _set_nulls(features, "air_temp_k", 61)
    report = check_contract(features, schema)
    assert _failed(report) == {(NOT_NULL, "air_temp_k")}
    assert report["failures"] == [
        "air_temp_k: 2.033 % nulls (61 of 3,000 rows), at most 2.000 % allowed"
    ]


def test_a_column_without_allowed_nulls_fails_on_one(features, schema) -> None:
    features.loc[features.index[5], "torque_nm"] = np.nan
    report = check_contract(features, schema)
    assert _failed(report) == {(NOT_NULL, "torque_nm")}
    assert report["failures"] == ["torque_nm: 0.033 % nulls (1 of 3,000 rows), none allowed"]


def test_out_of_range_values_fail_with_their_count(features, schema) -> None:
    features.loc[features.index[:7], "torque_nm"] = 150.0
    features.loc[features.index[7:9], "torque_nm"] = [0.0, 100.0]  # bounds are inclusive
    features.loc[features.index[20:22], "tool_wear_min"] = [-1.0, np.inf]
    report = check_contract(features, schema)
    assert _failed(report) == {(BETWEEN, "torque_nm"), (BETWEEN, "tool_wear_min")}
    torque = _check(report, BETWEEN, "torque_nm")
    assert (torque["unexpected_count"], torque["examples"]) == (7, [150.0])
    assert torque["unexpected_share"] == pytest.approx(7 / 3000)
    wear = _check(report, BETWEEN, "tool_wear_min")
    assert (wear["unexpected_count"], wear["examples"]) == (2, [-1.0, "inf"])
    assert (
        "torque_nm: 7 of 3,000 non-null values outside [0.0, 100.0] (e.g. [150.0])"
        in (report["failures"])
    )
    json.dumps(report, allow_nan=False)


def test_range_share_is_relative_to_non_null_rows(features, schema) -> None:
    _set_nulls(features, "vibration_mm_s", 50)
    features.loc[features.index[50:60], "vibration_mm_s"] = 25.0
    check = _check(check_contract(features, schema), BETWEEN, "vibration_mm_s")
    assert check["unexpected_count"] == 10
    assert check["unexpected_share"] == pytest.approx(10 / 2950)


def test_unknown_category_fails_and_nulls_are_ignored(features, schema) -> None:
    features.loc[features.index[10:14], "machine_type"] = "XL"
    features.loc[features.index[14], "machine_type"] = ""  # the device's "missing": a value
    features.loc[features.index[15:18], "machine_type"] = None
    report = check_contract(features, schema)
    assert _failed(report) == {(IN_SET, "machine_type"), (NOT_NULL, "machine_type")}
    check = _check(report, IN_SET, "machine_type")
    assert (check["unexpected_count"], check["examples"]) == (5, ["XL", ""])
    assert check["nonnull_count"] == 3000 - 3
    assert _check(report, NOT_NULL, "machine_type")["unexpected_count"] == 3


def test_categories_that_came_over_json_match_as_text(plant_df, schema) -> None:
    """The schema says failure is 0 or 1; "0"/"1" (JSON text) and 0.0/1.0 match, "2" does not."""
    for values in (plant_df["failure"].astype(str), plant_df["failure"].astype(float)):
        plant_df["failure"] = values
        assert check_contract(plant_df, schema, require_target=True)["success"] is True
    plant_df["failure"] = plant_df["failure"].astype(int).astype(object)
    plant_df.loc[plant_df.index[:3], "failure"] = ["0", "1", "2"]  # mixed, as JSON may give
    check = _check(check_contract(plant_df, schema, require_target=True), IN_SET, "failure")
    assert (check["unexpected_count"], check["examples"]) == (1, ["2"])


def test_missing_column_fails_once(features, schema) -> None:
    report = check_contract(features.drop(columns=["torque_nm"]), schema)
    assert report["success"] is False
    assert report["missing_columns"] == ["torque_nm"]
    assert _failed(report) == {(COLUMNS_MATCH, None)}
    assert _check(report, COLUMNS_MATCH, None)["unexpected_count"] == 1
    assert all(c["column"] != "torque_nm" for c in report["checks"])
    assert report["failures"] == ["missing columns ['torque_nm']"]


def test_text_in_a_numeric_column(features, schema) -> None:
    features["spindle_speed_rpm"] = features["spindle_speed_rpm"].astype(object)
    features.loc[features.index[:4], "spindle_speed_rpm"] = "fast"
    report = check_contract(features, schema)
    assert _failed(report) == {(IN_TYPES, "spindle_speed_rpm"), (BETWEEN, "spindle_speed_rpm")}
    between = _check(report, BETWEEN, "spindle_speed_rpm")
    assert (between["unexpected_count"], between["examples"]) == (4, ["fast"])
    types = _check(report, IN_TYPES, "spindle_speed_rpm")
    assert types["not_numbers"] == 4 and types["examples"][0] == "fast"
    assert (
        "spindle_speed_rpm: holds object values, expected a numeric type; "
        "4 of 3,000 values are not numbers (e.g. ['fast'" in "\n".join(report["failures"])
    )


def test_row_count_only_when_asked(features, schema) -> None:
    assert all(c["expectation"] != ROW_COUNT for c in check_contract(features, schema)["checks"])
    report = check_contract(features, schema, min_rows=5000)
    assert _failed(report) == {(ROW_COUNT, None)}
    assert report["failures"] == ["3,000 rows, at least 5,000 expected"]
    assert check_contract(features, schema, min_rows=3000)["success"] is True


def test_an_empty_window(features, schema) -> None:
    """Like GX, column expectations hold vacuously on no rows; the row count catches it."""
    empty = features.iloc[:0]
    assert check_contract(empty, schema)["success"] is True
    assert _failed(check_contract(empty, schema, min_rows=1)) == {(ROW_COUNT, None)}


def test_markdown_table(features, schema) -> None:
    ok = to_markdown(check_contract(features, schema))
    assert ok.startswith("**Data contract: passed**: 3,000 rows, 23 checks, 0 failed\n\n| status")
    features.loc[features.index[:7], "torque_nm"] = 150.0
    features["_id"] = 1
    md = to_markdown(check_contract(features.drop(columns=["vibration_mm_s"]), schema))
    assert md.startswith("**Data contract: FAILED**: 3,000 rows, 20 checks, 2 failed")
    assert "- missing columns: vibration_mm_s" in md
    assert "- extra columns (not checked): _id" in md
    assert "| status | expectation | column | bad rows |" in md
    assert "| **FAIL** | column_values_to_be_between | torque_nm | 7 (0.2 %) |" in md
    assert "| **FAIL** | table_columns_to_match_set | (table) | vibration_mm_s |" in md
    assert "| pass | column_values_to_be_in_set | machine_type | 0 |" in md


# --- cheap and fast -----------------------------------------------------------------------------


def test_importing_the_module_does_not_import_pandas() -> None:
    code = "import sys, edgeops.monitor.quality; print('pandas' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_100k_rows_in_well_under_half_a_second(schema) -> None:
    df = simulate(rows=100_000, seed=3)[PLANT_FEATURES]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        report = check_contract(df, schema, min_rows=1000)
        best = min(best, time.perf_counter() - start)
    assert report["success"] is True
    assert best < 0.25, f"{best:.3f} s"


# --- agreement with Great Expectations ----------------------------------------------------------


def _clean(df):
    pass


def _nulls(df):
    _set_nulls(df, "air_temp_k", 150)  # 5 %, 2 % allowed
    _set_nulls(df, "vibration_mm_s", 75)  # 2.5 %, 3 % allowed
    df.loc[df.index[3], "torque_nm"] = np.nan  # none allowed


def _nulls_at_the_boundary(df):
    _set_nulls(df, "air_temp_k", 60)  # exactly 2 %: passes
    _set_nulls(df, "vibration_mm_s", 91)  # 3.03 %: fails


def _out_of_range(df):
    df.loc[df.index[:7], "torque_nm"] = 150.0
    df.loc[df.index[7:9], "spindle_speed_rpm"] = [1000.0, 3000.0]  # the bounds themselves
    df.loc[df.index[9], "tool_wear_min"] = -1.0
    df.loc[df.index[10], "process_temp_k"] = np.inf


def _unknown_categories(df):
    df.loc[df.index[10:15], "machine_type"] = "XL"
    df.loc[df.index[15], "product_line"] = ""
    df.loc[df.index[16:19], "product_line"] = None  # nulls: a not-null failure, not a set one
    df.loc[df.index[19:21], "failure"] = 2


def _text_in_numeric(df):
    df["spindle_speed_rpm"] = df["spindle_speed_rpm"].astype(object)
    df.loc[df.index[:4], "spindle_speed_rpm"] = "fast"


def _python_numbers_in_an_object_column(df):
    df["torque_nm"] = pd.Series(df["torque_nm"].tolist(), index=df.index, dtype=object)
    df.loc[df.index[0], "torque_nm"] = 150.0


def _a_dead_sensor(df):
    df["vibration_mm_s"] = np.nan


def _labels(df):
    df["failure"] = df["failure"].astype(float)
    df.loc[df.index[:3], "failure"] = np.nan


def _missing_column(df):
    df.drop(columns=["torque_nm"], inplace=True)
    df.loc[df.index[:7], "air_temp_k"] = 400.0


def _too_few_rows(df):
    df.drop(index=df.index[500:], inplace=True)


def _timestamp_as_text(df):
    df["timestamp"] = df["timestamp"].astype(str)


def _nullable_integers(df):
    df["tool_wear_min"] = df["tool_wear_min"].astype("Int64")


def _labels_as_text(df):
    df["failure"] = df["failure"].astype(str)


#: (damage, the checks where this module deliberately differs from GX 1.24: see its docstring)
DAMAGES: list[tuple[Callable[[pd.DataFrame], None], set[tuple[str, str]]]] = [
    (_clean, set()),
    (_nulls, set()),
    (_nulls_at_the_boundary, set()),
    (_out_of_range, set()),
    (_unknown_categories, set()),
    (_text_in_numeric, set()),
    (_python_numbers_in_an_object_column, set()),
    (_a_dead_sensor, set()),
    (_labels, set()),
    (_missing_column, set()),
    (_too_few_rows, set()),
    (_timestamp_as_text, set()),
    (_nullable_integers, {(IN_TYPES, "tool_wear_min")}),  # GX cannot resolve "Int64"
    (_labels_as_text, {(IN_SET, "failure")}),  # "0" matches 0 here, not in GX
]


@pytest.mark.parametrize(
    ("damage", "differs"), DAMAGES, ids=[d.__name__.lstrip("_") for d, _ in DAMAGES]
)
def test_agrees_with_great_expectations(plant_df, schema, damage, differs) -> None:
    """Per expectation and column, the same verdict as the validate stage's GX suite."""
    from edgeops.stages.validate import validate

    damage(plant_df)
    ours = check_contract(plant_df, schema, require_target=True, min_rows=schema.min_rows)
    gx = validate(plant_df, schema)
    gx_success = {(e["expectation"], e["column"]): e["success"] for e in gx["expectations"]}
    our_success = {(c["expectation"], c["column"]): c["success"] for c in ours["checks"]}

    # we run everything GX runs, except: the target's class count, and the checks of a column
    # that is missing (GX fails each; we report the column once, in the column-set check)
    missing = set(ours["missing_columns"])
    not_ours = {
        key
        for key in gx_success
        if key[0] == "expect_column_unique_value_count_to_be_between" or key[1] in missing
    }
    assert set(our_success) == set(gx_success) - not_ours
    disagree = {key for key in our_success if our_success[key] != gx_success[key]}
    assert disagree == differs, {k: (our_success[k], gx_success[k]) for k in disagree}
    if not differs:
        assert ours["success"] == gx["success"]
    # each failed GX check with a count has the same count here (GX's share is of all rows)
    for f in gx["failures"]:
        key = (f["expectation"], f["column"])
        if key in our_success and key not in differs and f["unexpected_count"] is not None:
            if f["expectation"] == IN_TYPES:
                continue  # validate.py reports its own count of non-numbers there
            ours_check = _check(ours, *key)
            assert ours_check["unexpected_count"] == f["unexpected_count"], key
