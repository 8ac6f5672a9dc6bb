"""The dataset contract: reading it from params.yaml, and proposing one from data."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import yaml

from edgeops.errors import EdgeopsError
from edgeops.schema import CATEGORICAL, NUMERIC, TIMESTAMP, infer_schema, schema_from_dict
from tests.unit.conftest import PLANT_FEATURES

# --- schema_from_dict on the reviewed demo schema -----------------------------------------------


def test_demo_schema_features_exclude_target_and_timestamp(plant_schema) -> None:
    assert plant_schema.target == "failure"
    assert plant_schema.classes == [0, 1]
    assert plant_schema.min_rows == 1000
    assert [c.name for c in plant_schema.features] == PLANT_FEATURES
    assert "failure" not in plant_schema.numeric_features + plant_schema.categorical_features
    assert "timestamp" not in plant_schema.numeric_features + plant_schema.categorical_features
    assert plant_schema.categorical_features == ["machine_type", "product_line"]
    assert plant_schema.numeric_features == PLANT_FEATURES[2:]


def test_demo_schema_column_details(plant_schema) -> None:
    air = plant_schema.column("air_temp_k")
    assert (air.type, air.min, air.max, air.max_null_share) == (NUMERIC, 285.0, 320.0, 0.02)
    assert plant_schema.column("machine_type").categories == ("L", "M", "H")
    assert plant_schema.column("timestamp").type == TIMESTAMP
    assert plant_schema.column("torque_nm").max_null_share == 0.0  # not given: no nulls allowed
    with pytest.raises(KeyError):
        plant_schema.column("nope")


def test_drop_removes_a_column_from_the_features(params) -> None:
    raw = copy.deepcopy(params["validate"]["schema"])
    raw["drop"] = ["vibration_mm_s", "product_line"]
    schema = schema_from_dict(raw)
    assert [c.name for c in schema.features] == [
        n for n in PLANT_FEATURES if n not in ("vibration_mm_s", "product_line")
    ]
    assert "vibration_mm_s" in schema.names  # still part of the contract
    assert schema.drop == ("vibration_mm_s", "product_line")


def test_min_rows_defaults_to_100_and_to_dict_round_trips(params) -> None:
    raw = copy.deepcopy(params["validate"]["schema"])
    del raw["min_rows"]
    schema = schema_from_dict(raw)
    assert schema.min_rows == 100
    again = schema_from_dict(yaml.safe_load(yaml.safe_dump(schema.to_dict())))
    assert again == schema


def _raw(params: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(params["validate"]["schema"])


def _col(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in raw["columns"] if c["name"] == name)


def _no_columns(raw):
    del raw["columns"]


def _empty_columns(raw):
    raw["columns"] = []


def _no_name(raw):
    del raw["columns"][2]["name"]


def _bad_type(raw):
    _col(raw, "air_temp_k")["type"] = "float"


def _no_categories(raw):
    del _col(raw, "machine_type")["categories"]


def _empty_categories(raw):
    _col(raw, "product_line")["categories"] = []


def _null_share_too_big(raw):
    _col(raw, "vibration_mm_s")["max_null_share"] = 1.5


def _null_share_text(raw):
    _col(raw, "vibration_mm_s")["max_null_share"] = "a few"


def _max_not_a_number(raw):
    _col(raw, "torque_nm")["max"] = "1OO"  # letter O


def _min_rows_text(raw):
    raw["min_rows"] = "many"


def _duplicate(raw):
    raw["columns"].append({"name": "torque_nm", "type": "numeric"})


def _unknown_target(raw):
    raw["target"] = "broken"


def _no_target(raw):
    del raw["target"]


def _numeric_target(raw):
    raw["target"] = "torque_nm"


def _one_class(raw):
    _col(raw, "failure")["categories"] = [1]


def _no_features(raw):
    raw["columns"] = [_col(raw, "timestamp"), _col(raw, "failure"), _col(raw, "machine_type")]
    raw["drop"] = ["machine_type"]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_no_columns, ["validate.schema.columns", "non-empty list"]),
        (_empty_columns, ["validate.schema.columns", "non-empty list"]),
        (_no_name, ["validate.schema.columns[2]", "name"]),
        (_bad_type, ["columns[3] (air_temp_k)", "'float'"]),
        (_no_categories, ["'machine_type'", "no categories"]),
        (_empty_categories, ["'product_line'", "no categories"]),
        (_null_share_too_big, ["vibration_mm_s.max_null_share", "[0, 1]"]),
        (_null_share_text, ["vibration_mm_s.max_null_share", "'a few'"]),
        (_max_not_a_number, ["torque_nm.max", "'1OO'"]),
        (_min_rows_text, ["validate.schema.min_rows", "'many'"]),
        (_duplicate, ["duplicate", "torque_nm"]),
        (_unknown_target, ["validate.schema.target", "'broken'"]),
        (_no_target, ["validate.schema.target", "None"]),
        (_numeric_target, ["'torque_nm'", "must be categorical"]),
        (_one_class, ["'failure'", "fewer than 2 classes"]),
        (_no_features, ["no feature columns"]),
    ],
    ids=lambda v: v.__name__.lstrip("_") if callable(v) else "",
)
def test_schema_errors_name_the_field(params, damage, expected: list[str]) -> None:
    raw = _raw(params)
    damage(raw)
    with pytest.raises(EdgeopsError) as err:
        schema_from_dict(raw)
    for text in expected:
        assert text in str(err.value)


@pytest.mark.parametrize("raw", [None, [], "target: failure"])
def test_schema_that_is_not_a_mapping(raw) -> None:
    with pytest.raises(EdgeopsError, match="validate.schema is missing or not a mapping") as err:
        schema_from_dict(raw)
    assert "edgeops schema infer" in str(err.value)  # the fix says how to get one


def test_errors_name_the_given_location(params) -> None:
    raw = _raw(params)
    raw["target"] = "broken"
    with pytest.raises(EdgeopsError, match=r"^other\.yaml:schema\.target"):
        schema_from_dict(raw, where="other.yaml:schema")


# --- infer_schema --------------------------------------------------------------------------------


def test_infer_types_and_categories(plant_df) -> None:
    schema = infer_schema(plant_df, target="failure")
    assert schema.names == list(plant_df.columns)
    types = {c.name: c.type for c in schema.columns}
    assert types == {
        "timestamp": TIMESTAMP,
        "machine_type": CATEGORICAL,
        "product_line": CATEGORICAL,
        "air_temp_k": NUMERIC,
        "process_temp_k": NUMERIC,
        "spindle_speed_rpm": NUMERIC,
        "torque_nm": NUMERIC,
        "tool_wear_min": NUMERIC,
        "vibration_mm_s": NUMERIC,
        "failure": CATEGORICAL,
    }
    assert schema.column("machine_type").categories == ("H", "L", "M")
    assert set(schema.column("product_line").categories) == {"gearbox", "pump", "valve", "spindle"}
    assert schema.classes == [0, 1]
    assert all(type(c) is int for c in schema.classes)  # plain ints: clean YAML, no numpy tags
    assert schema.column("failure").max_null_share == 0.0
    assert schema.min_rows == len(plant_df) // 2


def test_inferred_ranges_cover_the_data_and_null_shares_have_headroom(plant_df) -> None:
    schema = infer_schema(plant_df, target="failure")
    for col in schema.columns:
        s = plant_df[col.name]
        if col.type == NUMERIC:
            assert col.min < s.min() or col.min == 0.0
            assert col.max > s.max()
        assert col.max_null_share >= s.isna().mean()
    # the simulator drops ~1 % of vibration readings: allowed, with headroom, but not unlimited
    vib = schema.column("vibration_mm_s")
    assert plant_df["vibration_mm_s"].isna().mean() < vib.max_null_share < 0.1
    assert schema.column("torque_nm").max_null_share == 0.0


def test_infer_keeps_non_negative_columns_non_negative(plant_df) -> None:
    assert plant_df["tool_wear_min"].min() == 0.0
    plant_df["delta"] = np.linspace(-5.0, 5.0, len(plant_df))
    plant_df["small"] = np.linspace(0.5, 10.0, len(plant_df))
    schema = infer_schema(plant_df, target="failure")
    assert schema.column("tool_wear_min").min == 0.0
    assert schema.column("small").min == 0.0  # 0.5 - 10% of the span would be negative
    assert schema.column("delta").min < -5.0  # a column that goes negative may go further
    assert schema.column("air_temp_k").min > 0.0


def test_inferred_schema_is_accepted_by_schema_from_dict(plant_df) -> None:
    proposed = infer_schema(plant_df, target="failure")
    text = yaml.safe_dump(proposed.to_dict(), sort_keys=False)
    schema = schema_from_dict(yaml.safe_load(text))
    assert [c.name for c in schema.features] == PLANT_FEATURES


def test_infer_proposes_dropping_a_text_column_with_too_many_values(plant_df) -> None:
    plant_df["remark"] = [f"Kontrolle {i % 400} ok" for i in range(len(plant_df))]
    schema = infer_schema(plant_df, target="failure")
    assert schema.drop == ("remark",)
    assert "remark" not in schema.names  # not a column: ingest leaves it out of the snapshot


def test_infer_allows_up_to_max_categories(plant_df) -> None:
    plant_df["cell"] = [f"cell-{i % 50}" for i in range(len(plant_df))]
    assert len(infer_schema(plant_df, "failure").column("cell").categories) == 50
    schema = infer_schema(plant_df, "failure", max_categories=49)
    assert schema.drop == ("cell",)


def test_infer_schema_stays_importable_from_schema(plant_df) -> None:
    from edgeops.infer import infer_schema as moved

    assert infer_schema(plant_df, "failure") == moved(plant_df, "failure")


def test_infer_with_a_missing_target(plant_df) -> None:
    with pytest.raises(EdgeopsError, match="'label'") as err:
        infer_schema(plant_df, target="label")
    assert "machine_type" in str(err.value)  # lists the columns there are
    assert "--target" in str(err.value)
