"""Export: parity between scikit-learn and onnxruntime for every model type, and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from edgeops.errors import EdgeopsError
from edgeops.features import feature_frame
from edgeops.schema import infer_schema, schema_from_dict
from edgeops.stages.export import check_convertible, convert, edge_cases, export
from edgeops.stages.split import split
from edgeops.stages.train import MODELS, train

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
EXPORT_CFG = {**PARAMS["export"], "latency_repeats": 0}


def penguins() -> tuple[pd.DataFrame, object]:
    import palmerpenguins

    df = pd.read_csv(Path(palmerpenguins.__file__).parent / "data" / "penguins.csv")
    return df, infer_schema(df, target="species")


@pytest.fixture(scope="module")
def binary_data():
    from edgeops.sources.simulator import simulate

    schema = schema_from_dict(PARAMS["validate"]["schema"])
    train_df, test_df = split(simulate(rows=4000, seed=3), schema, 0.25, 0)
    return schema, train_df, test_df


@pytest.fixture(scope="module")
def multiclass_data():
    df, schema = penguins()
    train_df, test_df = split(df, schema, 0.3, 0)
    return schema, train_df, test_df


def small(model: str) -> dict:
    cfg = {**PARAMS["train"], "model": model}
    cfg["hist_gradient_boosting"] = {**cfg["hist_gradient_boosting"], "max_iter": 40}
    cfg["random_forest"] = {**cfg["random_forest"], "n_estimators": 30}
    return cfg


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_onnx_matches_sklearn(model: str, task: str, binary_data, multiclass_data) -> None:
    schema, train_df, test_df = binary_data if task == "binary" else multiclass_data
    pipe = train(train_df, schema, small(model))
    onnx_bytes, report = export(pipe, schema, test_df, EXPORT_CFG)
    assert onnx_bytes[:2] == b"\x08\x0a" or len(onnx_bytes) > 100
    for key in ("parity_test", "parity_edge_cases"):
        assert report[key]["max_abs_diff"] <= 1e-5, (key, report[key])
        assert report[key]["label_agreement"] == 1.0, (key, report[key])
    assert report["parity_test"]["rows"] == len(test_df)
    assert report["parity_ok"] is True


def test_edge_cases_probe_limits_missing_and_unseen(binary_data) -> None:
    schema, _, test_df = binary_data
    X = edge_cases(schema, test_df)
    assert (X["torque_nm"] == np.float32(100.0)).any() and (X["torque_nm"] == 0.0).any()
    assert X["vibration_mm_s"].isna().any()  # nullable in the schema
    assert not X["torque_nm"].isna().any()  # not nullable
    assert set(X["machine_type"]) >= {"L", "M", "H", "__edgeops_unseen__"}


def test_hgb_with_native_categorical_splits_is_refused(multiclass_data) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from edgeops.features import feature_frame, target_series

    schema, train_df, _ = multiclass_data
    cats, nums = schema.categorical_features, schema.numeric_features
    pre = ColumnTransformer([("cat", OrdinalEncoder(), cats), ("num", "passthrough", nums)])
    clf = HistGradientBoostingClassifier(categorical_features=list(range(len(cats))), max_iter=10)
    pipe = Pipeline([("pre", pre), ("clf", clf)]).fit(
        feature_frame(train_df, schema), target_series(train_df, schema)
    )
    with pytest.raises(EdgeopsError) as err:
        convert(pipe, schema)
    assert "native categorical" in str(err.value)
    assert "categorical_features=None" in str(err.value)  # the fix


def test_scaler_in_front_of_a_tree_model_is_refused(binary_data) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from edgeops.features import feature_frame, target_series

    schema, train_df, _ = binary_data
    num = Pipeline([("scale", StandardScaler())])
    pre = ColumnTransformer(
        [
            ("num", num, schema.numeric_features),
            ("cat", OneHotEncoder(handle_unknown="ignore"), schema.categorical_features),
        ]
    )
    pipe = Pipeline([("pre", pre), ("clf", RandomForestClassifier(n_estimators=5))])
    X = feature_frame(train_df, schema).fillna(0)
    pipe.fit(X, target_series(train_df, schema))
    with pytest.raises(EdgeopsError) as err:
        check_convertible(pipe)
    assert "StandardScaler" in str(err.value) and "remove the scaler" in str(err.value)


def test_parity_failure_fails_the_export(binary_data) -> None:
    schema, train_df, test_df = binary_data
    pipe = train(train_df, schema, small("logistic_regression"))
    with pytest.raises(EdgeopsError, match="disagrees with scikit-learn"):
        export(
            pipe, schema, test_df, {**EXPORT_CFG, "max_abs_diff": 0.0, "min_label_agreement": 1.0}
        )


def test_any_column_name_works_from_training_to_the_device(tmp_path: Path) -> None:
    """A `/`, spaces, umlauts and a leading digit in column names: the model's inputs get safe
    names, the manifest maps them back, and a device predicts rows sent with the original names."""
    from sklearn.datasets import load_wine

    from edgeops.edge.bundle import key_id, verify_bundle
    from edgeops.edge.inference import OnnxModel
    from edgeops.keys import init_keys, load_private_key
    from edgeops.stages.bundle import build_manifest, golden_examples, write_bundle
    from edgeops.stages.export import input_specs

    df = load_wine(as_frame=True).frame.rename(
        columns={"alcohol": "Alkohol %", "malic_acid": "Äpfelsäure g/l", "ash": "2nd ash"}
    )
    assert "od280/od315_of_diluted_wines" in df.columns
    rng = np.random.default_rng(0)
    df["Herkunft Region"] = rng.choice(["Zürich Nord", "Genève", "Bern"], size=len(df))
    df["target"] = df["target"].map({0: "rot", 1: "weiss", 2: "rosé"})
    raw = {
        "target": "target",
        "min_rows": 10,
        "columns": [
            {"name": c, "type": "numeric", "min": float(df[c].min()), "max": float(df[c].max())}
            for c in df.columns
            if c not in ("target", "Herkunft Region")
        ]
        + [
            {
                "name": "Herkunft Region",
                "type": "categorical",
                "categories": ["Zürich Nord", "Genève", "Bern"],
            },
            {"name": "target", "type": "categorical", "categories": ["rot", "weiss", "rosé"]},
        ],
    }
    schema = schema_from_dict(raw)
    names = schema.input_names
    assert names["od280/od315_of_diluted_wines"] == "od280_od315_of_diluted_wines"
    assert names["Äpfelsäure g/l"] == "Apfelsaure_g_l"
    assert names["2nd ash"] == "c_2nd_ash"
    assert names["Herkunft Region"] == "Herkunft_Region"
    assert names["hue"] == "hue"  # already an identifier: unchanged

    train_df, test_df = split(df, schema, 0.3, 0)
    pipe = train(train_df, schema, small("hist_gradient_boosting"))
    onnx_bytes, report = export(pipe, schema, test_df, EXPORT_CFG)
    assert report["parity_test"]["max_abs_diff"] <= 1e-5

    init_keys(tmp_path / "keys")
    private = load_private_key(tmp_path / "keys" / "signing.key")
    classes = [str(c) for c in pipe.classes_]
    model = OnnxModel(onnx_bytes, input_specs(schema), classes)
    golden = golden_examples(model, schema, test_df, n=6)
    manifest = build_manifest(
        onnx_bytes,
        schema,
        classes,
        golden,
        name="wine",
        version="1.0.0",
        created_at="2026-11-22T00:00:00Z",
        commit="test",
        data={},
        metrics={},
        export_report=report,
        tolerance=1e-5,
        signing_key_id=key_id(private.public_key()),
    )
    by_name = {d["name"]: d["input"] for d in manifest["inputs"]}
    assert by_name["od280/od315_of_diluted_wines"] == "od280_od315_of_diluted_wines"
    assert set(golden[0]["inputs"]) == {c.name for c in schema.features}  # original names

    bundle = verify_bundle(
        write_bundle(tmp_path / "bundle", onnx_bytes, manifest, private), private.public_key()
    )
    rows = test_df.head(5)
    columns = {c.name: rows[c.name].tolist() for c in schema.features}  # original names
    labels, proba = bundle.model.predict(columns)
    expected = pipe.predict_proba(feature_frame(rows, schema))
    assert np.abs(proba - expected).max() <= 1e-5
    assert [str(x) for x in labels] == [str(x) for x in pipe.predict(feature_frame(rows, schema))]


def test_categories_become_the_strings_the_device_sends_once_per_distinct_value():
    """feature_frame's column-at-once path gives what category_str gives value by value, and
    "" for every kind of missing value (the agent turns JSON null into "")."""
    import numpy as np
    import pandas as pd

    from edgeops.features import category_str, category_strings

    columns = {
        "text": pd.Series(["L", "M", None, "H", np.nan, "L"], dtype=object),
        "ints": pd.Series([1, 2, 3, 2], dtype="int64"),
        "floats": pd.Series([3.0, 2.5, np.nan, 3.0]),
        "mixed": pd.Series([True, 1, 1.0, "1", None], dtype=object),
        "nullable": pd.Series(["a", pd.NA, "b"], dtype="string"),
        "category": pd.Series(["x", None, "y"], dtype="category"),
    }
    for name, s in columns.items():
        got = list(category_strings(s))
        want = [
            "" if v is None or (not isinstance(v, str) and pd.isna(v)) else category_str(v)
            for v in s.astype(object)
        ]
        assert got == want, name
    assert list(category_strings(columns["mixed"])) == ["True", "1", "1", "1", ""]
    assert list(category_strings(columns["nullable"])) == ["a", "", "b"]
