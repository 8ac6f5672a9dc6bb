"""The pipeline stages as functions: ingest, validate (real Great Expectations), split, train,
evaluate; plus the validate stage's command line as DVC runs it."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from edgeops.errors import EdgeopsError
from edgeops.features import feature_frame
from edgeops.schema import schema_from_dict
from edgeops.sources.simulator import simulate
from edgeops.stages.evaluate import (
    confusion_counts,
    curves,
    evaluate,
    positive_index,
    scores,
    write_csv,
)
from edgeops.stages.ingest import ingest, write_parquet
from edgeops.stages.split import split
from edgeops.stages.train import MODELS, train
from edgeops.stages.validate import failure_lines, validate
from tests.unit.conftest import ROWS

# --- ingest --------------------------------------------------------------------------------------

SIM = {"source": "simulator", "simulator": {"rows": 2000, "seed": 1, "scenario": "baseline"}}


def test_ingest_writes_the_same_bytes_for_the_same_data(tmp_path: Path) -> None:
    first = write_parquet(ingest(copy.deepcopy(SIM)), tmp_path / "a" / "dataset.parquet")
    second = write_parquet(ingest(copy.deepcopy(SIM)), tmp_path / "b" / "dataset.parquet")
    assert first == second
    data = (tmp_path / "a" / "dataset.parquet").read_bytes()
    assert data == (tmp_path / "b" / "dataset.parquet").read_bytes()
    assert hashlib.sha256(data).hexdigest() == first

    other = {"source": "simulator", "simulator": {"rows": 2000, "seed": 2}}
    assert write_parquet(ingest(other), tmp_path / "c.parquet") != first


def test_write_parquet_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    df = ingest(copy.deepcopy(SIM))
    out = tmp_path / "raw" / "dataset.parquet"
    out.parent.mkdir()
    out.write_text("old")
    write_parquet(df, out)
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    assert [p.name for p in out.parent.iterdir()] == ["dataset.parquet"]


def test_ingest_tidies_column_names_and_rejects_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(" torque , speed\n1,2\n3,4\n")
    df = ingest({"source": "csv", "csv": {"path": str(tmp_path / "a.csv")}})
    assert list(df.columns) == ["torque", "speed"]

    (tmp_path / "b.csv").write_text("torque, torque\n1,2\n")
    with pytest.raises(EdgeopsError, match=r"duplicate column names \['torque'\]"):
        ingest({"source": "csv", "csv": {"path": str(tmp_path / "b.csv")}})


# --- validate (Great Expectations) ---------------------------------------------------------------


def test_validate_passes_good_data(plant_df, plant_schema) -> None:
    summary = validate(plant_df, plant_schema)
    assert summary["success"] is True
    assert summary["failures"] == []
    assert failure_lines(summary) == []
    stats = summary["statistics"]
    assert stats["evaluated_expectations"] == stats["successful_expectations"] > 20
    assert summary["rows"] == ROWS
    json.dumps(summary)  # JSON-ready, as the stage writes it


def test_validate_passes_csv_data(tmp_path: Path, plant_df, plant_schema) -> None:
    """The same readings through a CSV file (timestamps as text there) still pass."""
    plant_df.to_csv(tmp_path / "plant.csv", index=False)
    df = ingest({"source": "csv", "csv": {"path": str(tmp_path / "plant.csv")}})
    summary = validate(df, plant_schema)
    assert summary["success"], failure_lines(summary)


def _out_of_range(df):
    df.loc[df.index[:7], "torque_nm"] = 150.0


def _missing_column(df):
    df.drop(columns=["vibration_mm_s"], inplace=True)


def _extra_column(df):
    df["operator"] = "anna"


def _unknown_category(df):
    df.loc[df.index[10:15], "machine_type"] = "XL"


def _one_class(df):
    df["failure"] = 0


def _text_in_numeric(df):
    df["spindle_speed_rpm"] = df["spindle_speed_rpm"].astype(object)
    df.loc[df.index[:4], "spindle_speed_rpm"] = "fast"


def _too_many_nulls(df):
    df.loc[df.index[:150], "vibration_mm_s"] = np.nan


def _missing_labels(df):
    df["failure"] = df["failure"].astype(float)
    df.loc[df.index[:3], "failure"] = np.nan


def _too_few_rows(df):
    df.drop(index=df.index[500:], inplace=True)


def _timestamp_as_text(df):
    df["timestamp"] = df["timestamp"].astype(str)


@pytest.mark.parametrize(
    ("damage", "column", "count", "expected"),
    [
        (
            _out_of_range,
            "torque_nm",
            7,
            "7 of 3,000 rows fail (e.g. [150.0]); allowed range [0.0, 100.0]",
        ),
        (_missing_column, None, None, "missing columns ['vibration_mm_s'], unexpected columns []"),
        (_extra_column, None, None, "missing columns [], unexpected columns ['operator']"),
        (_unknown_category, "machine_type", 5, "5 of 3,000 rows fail (e.g. ['XL'])"),
        (_one_class, "failure", None, "the target has 1 distinct value(s)"),
        (
            _text_in_numeric,
            "spindle_speed_rpm",
            4,
            "4 of 3,000 rows are not numbers (e.g. ['fast'])",
        ),
        (_too_many_nulls, "vibration_mm_s", None, "rows are missing (allowed share 0.030)"),
        (_missing_labels, "failure", 3, "3 of 3,000 rows are missing"),
        (_too_few_rows, None, None, "observed 500"),
        (_timestamp_as_text, "timestamp", None, "expected timestamps"),
    ],
    ids=lambda v: v.__name__.lstrip("_") if callable(v) else None,
)
def test_validate_reports_what_is_wrong(
    plant_df, plant_schema, damage, column, count, expected: str
) -> None:
    damage(plant_df)
    summary = validate(plant_df, plant_schema)
    assert summary["success"] is False
    failures = summary["failures"]
    hits = [f for f in failures if f["column"] == column and expected in f["detail"]]
    assert len(hits) == 1, failures
    if count is not None:
        assert hits[0]["unexpected_count"] == count
    lines = failure_lines(summary)
    assert len(lines) == len(failures)
    where = "table" if column is None else f"column {column!r}"
    assert any(
        line.startswith("  - expect_") and where in line and expected in line for line in lines
    )
    json.dumps(summary)


def test_validate_reports_a_missing_column_once(plant_df, plant_schema) -> None:
    summary = validate(plant_df.drop(columns=["vibration_mm_s"]), plant_schema)
    assert [f["column"] for f in summary["failures"]] == [None]
    assert failure_lines(summary) == [
        "  - expect_table_columns_to_match_set on table: "
        "missing columns ['vibration_mm_s'], unexpected columns []"
    ]


def test_validate_lists_table_problems_first_then_columns(plant_df, plant_schema) -> None:
    _out_of_range(plant_df)
    _unknown_category(plant_df)
    _extra_column(plant_df)
    summary = validate(plant_df, plant_schema)
    assert [f["column"] for f in summary["failures"]] == [None, "machine_type", "torque_nm"]


def test_validate_writes_a_self_contained_report(tmp_path: Path, plant_df, plant_schema) -> None:
    report = tmp_path / "validation" / "report.html"
    summary = validate(plant_df, plant_schema, report=report, dataset="data/raw/x.parquet")
    html = report.read_text()
    assert "PASSED" in html and "data/raw/x.parquet" in html and "3,000" in html
    assert html.count("<tr class=") == len(summary["expectations"])  # one row per expectation
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "src=" not in html and "href=" not in html and "url(" not in html

    _out_of_range(plant_df)
    plant_df.loc[plant_df.index[:3], "machine_type"] = "<b>XL</b>"
    validate(plant_df, plant_schema, report=report)  # a second run replaces the page
    html = report.read_text()
    assert "FAILED" in html and "2 of " in html and "expectations failed" in html
    assert "&#x27;&lt;b&gt;XL&lt;/b&gt;&#x27;" in html and "<b>XL" not in html  # escaped
    assert "150.0" in html and "7 of 3,000 rows unexpected" in html
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]  # no temp files


VALIDATE_PARAMS = """
validate:
  schema:
    target: failure
    min_rows: 100
    columns:
      - {name: timestamp, type: timestamp}
      - {name: machine_type, type: categorical, categories: [L, M, H]}
      - {name: torque_nm, type: numeric, min: 0.0, max: 100.0}
      - {name: failure, type: categorical, categories: [0, 1]}
"""


def test_validate_stage_main_fails_with_a_clear_message(tmp_path: Path, run_cmd) -> None:
    (tmp_path / "params.yaml").write_text(VALIDATE_PARAMS)
    df = simulate(rows=2000, seed=3)[["timestamp", "machine_type", "torque_nm", "failure"]]
    df.loc[df.index[:7], "torque_nm"] = 999.0
    write_parquet(df, tmp_path / "data" / "raw" / "dataset.parquet")

    proc = run_cmd([sys.executable, "-m", "edgeops.stages.validate"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "edgeops validate: error:" in proc.stderr
    assert "torque_nm" in proc.stderr
    assert "7 of 2,000 rows fail" in proc.stderr
    summary = json.loads((tmp_path / "reports/validation/summary.json").read_text())
    assert summary["success"] is False
    assert "FAILED" in (tmp_path / "reports/validation/report.html").read_text()
    assert not (tmp_path / "reports/validation/data_docs").exists()


def test_validate_stage_main_without_data(tmp_path: Path, run_cmd) -> None:
    (tmp_path / "params.yaml").write_text(VALIDATE_PARAMS)
    proc = run_cmd(
        [sys.executable, "-m", "edgeops.stages.validate", "--data", "raw.parquet"], cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "raw.parquet not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_stage_main_without_params(tmp_path: Path, run_cmd) -> None:
    proc = run_cmd([sys.executable, "-m", "edgeops.stages.validate"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "params.yaml not found" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- split ---------------------------------------------------------------------------------------


def test_stratified_split_keeps_class_shares(plant_df, plant_schema) -> None:
    train_df, test_df = split(plant_df, plant_schema, test_size=0.2, seed=42)
    assert (len(train_df), len(test_df)) == (2400, 600)
    share = plant_df["failure"].mean()
    assert train_df["failure"].mean() == pytest.approx(share, abs=0.002)
    assert test_df["failure"].mean() == pytest.approx(share, abs=0.002)
    # every row lands in exactly one part
    both = pd.concat([train_df, test_df])["timestamp"]
    assert both.is_unique and set(both) == set(plant_df["timestamp"])
    assert train_df.index.tolist() == list(range(2400))


def test_stratified_split_is_deterministic(plant_df, plant_schema) -> None:
    a_train, a_test = split(plant_df, plant_schema, seed=42)
    b_train, b_test = split(plant_df, plant_schema, seed=42)
    pd.testing.assert_frame_equal(a_train, b_train)
    pd.testing.assert_frame_equal(a_test, b_test)
    _, c_test = split(plant_df, plant_schema, seed=43)
    assert set(c_test["timestamp"]) != set(a_test["timestamp"])


def test_time_split_puts_the_latest_rows_in_test(plant_df, plant_schema) -> None:
    shuffled = plant_df.sample(frac=1.0, random_state=0)
    train_df, test_df = split(shuffled, plant_schema, test_size=0.25, time_column="timestamp")
    assert (len(train_df), len(test_df)) == (2250, 750)
    assert train_df["timestamp"].max() < test_df["timestamp"].min()
    assert train_df["timestamp"].is_monotonic_increasing
    latest = plant_df.sort_values("timestamp")["timestamp"].iloc[-750:]
    assert test_df["timestamp"].tolist() == latest.tolist()


def test_time_split_errors(plant_df, plant_schema) -> None:
    with pytest.raises(EdgeopsError, match="'recorded_at' is not a column"):
        split(plant_df, plant_schema, time_column="recorded_at")
    # all failures happen late: the training part would see one class only
    plant_df["failure"] = 0
    plant_df.loc[plant_df.index[-300:], "failure"] = 1
    with pytest.raises(EdgeopsError, match="fewer than 2 classes in the training set"):
        split(plant_df, plant_schema, test_size=0.2, time_column="timestamp")


def test_stratified_split_needs_two_rows_per_class(plant_df, plant_schema) -> None:
    plant_df["failure"] = 0
    plant_df.loc[plant_df.index[5], "failure"] = 1
    with pytest.raises(EdgeopsError, match=r"classes \[1\] of 'failure' have fewer than 2 rows"):
        split(plant_df, plant_schema)


@pytest.mark.parametrize("test_size", [0.0, 1.0, 1.5, -0.2])
def test_split_rejects_a_bad_test_size(plant_df, plant_schema, test_size: float) -> None:
    with pytest.raises(EdgeopsError, match="split.test_size must be between 0 and 1"):
        split(plant_df, plant_schema, test_size=test_size)


# --- train and evaluate --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binary_task(_plant, plant_schema):
    train_df, test_df = split(_plant, plant_schema, seed=42)
    return train_df, test_df, plant_schema


@pytest.fixture(scope="module")
def multiclass_task(wear_band):
    df, schema = wear_band
    train_df, test_df = split(df, schema, seed=42)
    return train_df, test_df, schema


@pytest.fixture(scope="module", params=MODELS)
def model_name(request) -> str:
    return request.param


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def fitted(request, model_name, binary_task, multiclass_task, fast_train_cfg):
    """Each model fitted once on each task; the tests below share the fits."""
    task = binary_task if request.param == "binary" else multiclass_task
    train_df, test_df, schema = task
    pipe = train(train_df, schema, {**fast_train_cfg, "model": model_name})
    return pipe, test_df, schema


def test_train_fits_every_model_on_every_task(fitted) -> None:
    pipe, test_df, schema = fitted
    assert sorted(pipe.classes_.tolist(), key=str) == sorted(schema.classes, key=str)
    clf = pipe.named_steps["clf"]
    assert clf.class_weight == "balanced"
    if "n_jobs" in clf.get_params():
        assert clf.n_jobs == 1  # answers one row at a time when served
    proba = pipe.predict_proba(test_df)
    assert proba.shape == (len(test_df), len(schema.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_evaluate_metrics(fitted) -> None:
    pipe, test_df, schema = fitted
    metrics, _ = evaluate(pipe, test_df, schema)
    assert {"roc_auc", "pr_auc", "f1", "balanced_accuracy", "accuracy", "n_test", "per_class"} <= (
        set(metrics)
    )
    for key in ("roc_auc", "pr_auc", "f1", "balanced_accuracy", "accuracy"):
        assert isinstance(metrics[key], float)
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["n_test"] == len(test_df)
    assert metrics["roc_auc"] > 0.75  # the models learn something real from the sensors
    per_class = metrics["per_class"]
    assert set(per_class) == {str(c) for c in schema.classes}
    assert sum(c["support"] for c in per_class.values()) == len(test_df)
    for c in per_class.values():
        assert 0.0 <= c["precision"] <= 1.0 and 0.0 <= c["recall"] <= 1.0
    json.dumps(metrics)


def test_evaluate_plots(fitted, tmp_path: Path) -> None:
    pipe, test_df, schema = fitted
    _, plots = evaluate(pipe, test_df, schema)
    assert set(plots) == {"roc", "pr", "confusion"}
    roc = pd.DataFrame(plots["roc"])
    assert list(roc.columns) == ["fpr", "tpr"]
    assert 2 <= len(roc) <= 200
    assert roc.iloc[0].tolist() == [0.0, 0.0] and roc.iloc[-1].tolist() == [1.0, 1.0]
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing
    pr = pd.DataFrame(plots["pr"])
    assert list(pr.columns) == ["recall", "precision"] and 2 <= len(pr) <= 200
    assert pr["recall"].between(0, 1).all() and pr["precision"].between(0, 1).all()
    # the confusion matrix as counts: every pair of classes once, the counts those of the rows
    confusion = pd.DataFrame(plots["confusion"])
    classes = [str(c) for c in pipe.classes_]
    assert list(confusion.columns) == ["actual", "predicted", "count"]
    assert list(zip(confusion["actual"], confusion["predicted"], strict=True)) == [
        (a, p) for a in classes for p in classes
    ]
    predicted = pipe.classes_[pipe.predict_proba(feature_frame(test_df, schema)).argmax(1)]
    pairs = pd.DataFrame(
        {"actual": test_df[schema.target].astype(str), "predicted": predicted.astype(str)}
    )
    expected = pairs.value_counts().to_dict()
    got = {(a, p): n for a, p, n in confusion.itertuples(index=False)}
    assert got == {pair: expected.get(pair, 0) for pair in got}
    assert confusion["count"].sum() == len(test_df)

    write_csv(tmp_path / "plots" / "roc.csv", plots["roc"])
    back = pd.read_csv(tmp_path / "plots" / "roc.csv")
    pd.testing.assert_frame_equal(back, roc)


def test_confusion_counts_keep_a_label_the_model_never_learned() -> None:
    truth = ["ok", "fail", "ok", "jam", "ok"]
    predicted = ["ok", "ok", "ok", "fail", "fail"]
    rows = confusion_counts(truth, predicted, ["fail", "ok"])
    labels = ["fail", "ok", "jam"]  # the model's classes first, then what only the rows hold
    assert [(r["actual"], r["predicted"]) for r in rows] == [(a, p) for a in labels for p in labels]
    counts = {(r["actual"], r["predicted"]): r["count"] for r in rows}
    assert counts[("ok", "ok")] == 2 and counts[("ok", "fail")] == 1
    assert counts[("fail", "ok")] == 1 and counts[("jam", "fail")] == 1
    assert sum(counts.values()) == len(truth)


def test_binary_f1_is_the_positive_class(binary_task, fast_train_cfg) -> None:
    train_df, test_df, schema = binary_task
    pipe = train(train_df, schema, {**fast_train_cfg, "model": "logistic_regression"})
    metrics, _ = evaluate(pipe, test_df, schema)
    assert metrics["f1"] < metrics["accuracy"]  # failures are rare: F1 of "1", not of "0"
    assert metrics["per_class"]["1"]["support"] == int(test_df["failure"].sum())


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_scores_without_both_classes_in_test() -> None:
    """A test set with one class has no ROC/PR AUC, but the rest is still reported."""
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    metrics = scores([0, 0, 0], proba, [0, 1])
    assert "roc_auc" not in metrics and "pr_auc" not in metrics
    assert metrics["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["n_test"] == 3


def test_plant_metrics_without_positive_class_are_those_of_class_1(
    binary_task, fast_train_cfg
) -> None:
    """positive_class unset: the second class in sorted order (1), exactly as before issue 11."""
    from sklearn import metrics as skm

    train_df, test_df, schema = binary_task
    assert schema.positive_class is None and schema.positive == 1
    pipe = train(train_df, schema, {**fast_train_cfg, "model": "logistic_regression"})
    metrics, _ = evaluate(pipe, test_df, schema)
    y, proba = test_df["failure"].to_numpy(), pipe.predict_proba(test_df)
    assert list(pipe.classes_) == [0, 1] and metrics["positive_class"] == 1
    assert metrics["f1"] == round(skm.f1_score(y, pipe.predict(test_df), pos_label=1), 6)
    assert metrics["roc_auc"] == round(skm.roc_auc_score(y == 1, proba[:, 1]), 6)
    assert metrics["pr_auc"] == round(skm.average_precision_score(y == 1, proba[:, 1]), 6)
    assert scores(y, proba, [0, 1]) == scores(y, proba, [0, 1], 1) == metrics
    json.dumps(metrics)


@pytest.fixture(scope="module")
def ja_nein(_plant, params, fast_train_cfg):
    """The plant with labels "ja" (failure, rare) / "nein" and ``positive_class: ja``; sorted,
    "nein" would be the second class, so the default would score the common class."""
    df = _plant.copy()
    df["failure"] = np.where(df["failure"] == 1, "ja", "nein")
    raw = copy.deepcopy(params["validate"]["schema"])
    raw["columns"] = [c for c in raw["columns"] if c["name"] != "failure"]
    raw["columns"].append({"name": "failure", "type": "categorical", "categories": ["ja", "nein"]})
    schema = schema_from_dict({**raw, "positive_class": "ja"})
    train_df, test_df = split(df, schema, seed=42)
    pipe = train(train_df, schema, {**fast_train_cfg, "model": "logistic_regression"})
    return pipe, test_df, schema


def test_metrics_are_those_of_the_positive_class(ja_nein) -> None:
    from sklearn import metrics as skm

    pipe, test_df, schema = ja_nein
    metrics, plots = evaluate(pipe, test_df, schema)
    y, proba = test_df["failure"].to_numpy(), pipe.predict_proba(test_df)
    classes = list(pipe.classes_)
    assert classes == ["ja", "nein"] and schema.positive == "ja"
    p_ja = proba[:, classes.index("ja")]
    assert metrics["positive_class"] == "ja"
    assert metrics["f1"] == round(skm.f1_score(y, pipe.predict(test_df), pos_label="ja"), 6)
    assert metrics["pr_auc"] == round(skm.average_precision_score(y, p_ja, pos_label="ja"), 6)
    fpr, tpr, _ = skm.roc_curve(y, p_ja, pos_label="ja")
    assert metrics["roc_auc"] == round(skm.auc(fpr, tpr), 6)
    nein = scores(y, proba, classes, "nein")
    assert nein["positive_class"] == "nein"
    assert metrics["f1"] < nein["f1"] and metrics["pr_auc"] < nein["pr_auc"]  # "ja" is rare
    assert nein == scores(y, proba, classes)  # the default: the second class
    # the PR curve ends where every row is called "ja": precision = the share of "ja"
    assert plots["pr"][-1] == {"recall": 1.0, "precision": round(float(np.mean(y == "ja")), 5)}
    assert plots["pr"] != curves(y, proba, classes, "nein")["pr"]
    json.dumps(metrics)


def test_positive_index_compares_as_text_when_types_differ() -> None:
    assert positive_index(["ja", "nein"], "ja") == 0
    assert positive_index(["ja", "nein"]) == 1
    assert positive_index([np.int64(0), np.int64(1)], 1) == 1
    assert positive_index([0, 1], "0") == 0  # e.g. a manifest written by another tool
    with pytest.raises(EdgeopsError, match="'yes' is not one of the model's classes"):
        positive_index(["ja", "nein"], "yes")


def test_monitoring_watches_the_positive_class(ja_nein) -> None:
    """Drift's prediction column and performance on feedback use the manifest's positive class."""
    from edgeops.monitor.drift import prediction_column
    from edgeops.monitor.performance import performance
    from edgeops.monitor.settings import MonitorSettings

    pipe, test_df, schema = ja_nein
    proba, classes = pipe.predict_proba(test_df), list(pipe.classes_)
    np.testing.assert_array_equal(prediction_column(proba, classes, "ja"), proba[:, 0])
    np.testing.assert_array_equal(prediction_column(proba, classes), proba[:, 1])
    test_metrics, _ = evaluate(pipe, test_df, schema)
    window = pd.DataFrame({"_feedback": test_df["failure"].to_numpy()})
    settings = MonitorSettings(min_labelled=10, min_per_class=5, max_drop=0.1)
    perf = performance(window, proba, classes, test_metrics, "pr_auc", settings, "ja")
    assert perf["verdict"] == "ok" and perf["drop"]["pr_auc"] == 0.0
    assert perf["production"]["f1"] == test_metrics["f1"]


def test_class_weight_can_be_switched_off(binary_task, fast_train_cfg) -> None:
    train_df, _, schema = binary_task
    cfg = {**fast_train_cfg, "model": "logistic_regression", "class_weight": None}
    assert train(train_df, schema, cfg).named_steps["clf"].class_weight is None


def test_trained_model_ignores_unseen_categories(binary_task, fast_train_cfg) -> None:
    train_df, test_df, schema = binary_task
    pipe = train(train_df, schema, {**fast_train_cfg, "model": "random_forest"})
    rows = test_df.head(5).copy()
    rows["machine_type"] = "XL"  # a machine type the model never saw
    rows.loc[rows.index[0], "vibration_mm_s"] = np.nan  # and a sensor dropout
    assert pipe.predict_proba(rows).shape == (5, 2)


def test_train_rejects_an_unknown_model(binary_task, fast_train_cfg) -> None:
    train_df, _, schema = binary_task
    with pytest.raises(EdgeopsError, match="train.model 'xgboost' is not supported") as err:
        train(train_df, schema, {**fast_train_cfg, "model": "xgboost"})
    assert "random_forest" in str(err.value)


def test_train_rejects_an_unknown_hyper_parameter(binary_task, fast_train_cfg) -> None:
    train_df, _, schema = binary_task
    cfg = copy.deepcopy(fast_train_cfg)
    cfg["model"] = "random_forest"
    cfg["random_forest"]["n_trees"] = 10
    with pytest.raises(EdgeopsError, match="train.random_forest has a parameter") as err:
        train(train_df, schema, cfg)
    assert "n_trees" in str(err.value)


def test_train_rejects_a_bad_hyper_parameter_value(binary_task, fast_train_cfg) -> None:
    train_df, _, schema = binary_task
    cfg = copy.deepcopy(fast_train_cfg)
    cfg["hist_gradient_boosting"]["max_iter"] = -3
    with pytest.raises(EdgeopsError, match="training failed.*max_iter"):
        train(train_df, schema, cfg)


def test_train_needs_two_classes(binary_task, fast_train_cfg) -> None:
    train_df, _, schema = binary_task
    one_class = train_df[train_df["failure"] == 0]
    with pytest.raises(EdgeopsError, match="single class of 'failure'"):
        train(one_class, schema, fast_train_cfg)


def test_train_rejects_text_in_a_numeric_feature(binary_task, fast_train_cfg) -> None:
    train_df, _, schema = binary_task
    bad = train_df.copy()
    bad["torque_nm"] = bad["torque_nm"].astype(object)
    bad.loc[bad.index[3], "torque_nm"] = "n/a"
    with pytest.raises(EdgeopsError, match="'torque_nm' should be numeric"):
        train(bad, schema, fast_train_cfg)


def test_train_rejects_data_without_a_feature(binary_task, fast_train_cfg) -> None:
    train_df, _, schema = binary_task
    with pytest.raises(EdgeopsError, match=r"lacks feature columns \['vibration_mm_s'\]"):
        train(train_df.drop(columns=["vibration_mm_s"]), schema, fast_train_cfg)


def test_multiclass_schema_from_params_form(wear_band) -> None:
    """The 3-class fixture goes through the same params form as the demo schema."""
    _, schema = wear_band
    raw = yaml.safe_load(yaml.safe_dump(schema.to_dict()))
    assert schema_from_dict(raw).classes == ["low", "mid", "high"]
    assert "tool_wear_min" not in [c.name for c in schema.features]
