"""Export and bundle read the test split in pieces: the parity figures streamed chunk by chunk
equal the one-shot figures, and the golden examples pick the same rows as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edgeops.edge.inference import OnnxModel
from edgeops.features import feature_frame
from edgeops.stages import export as export_stage
from edgeops.stages.bundle import _examples, golden_examples, golden_examples_parquet
from edgeops.stages.export import (
    ParityTally,
    _feeds,
    convert,
    edge_cases,
    export,
    export_parquet,
    feature_chunks,
    input_specs,
)
from edgeops.stages.split import split
from edgeops.stages.train import train
from tests.bundles import PARAMS, plant_schema, plant_split

EXPORT_CFG = {**PARAMS["export"], "latency_repeats": 0}


def old_parity(pipe: Any, model: OnnxModel, X: pd.DataFrame) -> dict[str, Any]:
    """export.parity as it was before the streaming (everything at once)."""
    sk_proba = pipe.predict_proba(X)
    sk_label = pipe.classes_[sk_proba.argmax(axis=1)]
    ort_label, ort_proba = model.predict_feeds(_feeds(X, model.inputs))
    diff = np.abs(sk_proba - ort_proba)
    agree = np.asarray([str(a) == str(b) for a, b in zip(sk_label, ort_label, strict=True)])
    return {
        "rows": len(X),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "label_agreement": float(agree.mean()) if agree.size else 1.0,
        "label_mismatches": int((~agree).sum()),
    }


def old_golden_examples(
    model: OnnxModel, schema: Any, test: pd.DataFrame, n: int = 12, seed: int = 0
) -> list[dict[str, Any]]:
    """bundle.golden_examples as it was before reading the split in pieces."""
    per_class = max(1, n // (2 * max(1, len(schema.classes))))
    picks = []
    target = test[schema.target].astype(str)
    for cls in schema.classes:
        idx = test.index[target == str(cls)]
        if len(idx):
            picks += list(pd.Series(idx).sample(n=min(per_class, len(idx)), random_state=seed))
    X_edge = edge_cases(schema, test)
    rest = max(0, n - len(picks))
    X = pd.concat(
        [
            feature_frame(test.loc[picks], schema),
            X_edge.iloc[:: max(1, len(X_edge) // max(1, rest))].head(rest),
        ],
        ignore_index=True,
    )
    return _examples(model, X)  # turning rows into examples is unchanged


def _trained(
    schema: Any, train_df: pd.DataFrame, test_df: pd.DataFrame, model: str, out: Path, classes=int
) -> tuple[Any, OnnxModel, Path, dict[str, Any]]:
    cfg = {**PARAMS["train"], "model": model}
    cfg["hist_gradient_boosting"] = {**cfg["hist_gradient_boosting"], "max_iter": 30}
    pipe = train(train_df, schema, cfg)
    onnx_bytes, report = export(pipe, schema, test_df, EXPORT_CFG)
    onnx = OnnxModel(onnx_bytes, input_specs(schema), [classes(c) for c in pipe.classes_])
    path = out / "test.parquet"
    test_df.to_parquet(path, index=False, row_group_size=170)  # chunks straddle row groups
    return pipe, onnx, path, report


@pytest.fixture(scope="module", params=["logistic_regression", "hist_gradient_boosting"])
def binary(request, tmp_path_factory) -> tuple:
    schema = plant_schema()
    train_df, test_df = plant_split()
    out = tmp_path_factory.mktemp(request.param)
    return (schema, test_df, *_trained(schema, train_df, test_df, request.param, out))


@pytest.fixture(scope="module")
def multiclass(wear_band, tmp_path_factory) -> tuple:
    df, schema = wear_band
    train_df, test_df = split(df, schema, 0.25, 0)
    out = tmp_path_factory.mktemp("wear")
    return (
        schema,
        test_df,
        *_trained(schema, train_df, test_df, "logistic_regression", out, classes=str),
    )


@pytest.fixture
def small_chunks(monkeypatch) -> int:
    monkeypatch.setattr(export_stage, "CHUNK_ROWS", 100)
    return 100


def _assert_same_parity(
    got: dict[str, Any], want: dict[str, Any], mean_tol: float = 1e-12, max_tol: float = 0.0
) -> None:
    assert set(got) == set(want)
    assert got["rows"] == want["rows"]
    assert got["max_abs_diff"] == pytest.approx(want["max_abs_diff"], abs=max_tol, rel=0)
    assert got["mean_abs_diff"] == pytest.approx(want["mean_abs_diff"], abs=mean_tol, rel=0)
    assert got["label_agreement"] == want["label_agreement"]
    assert got["label_mismatches"] == want["label_mismatches"]


@pytest.fixture
def one_ort_thread(monkeypatch) -> None:
    """The export's onnxruntime session on one thread, as the reference model: with more, ORT's
    tree ensembles sum in an order that depends on the batch size (last float32 bit)."""
    from edgeops import resources

    monkeypatch.setenv(resources.ENV, "1")


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_streamed_parity_equals_the_one_shot_figures(
    task, binary, multiclass, small_chunks, one_ort_thread
) -> None:
    schema, test_df, pipe, onnx, path, report = binary if task == "binary" else multiclass
    chunks = list(feature_chunks(path, schema))
    assert len(chunks) >= 5 and max(len(c) for c in chunks) <= small_chunks
    whole = feature_frame(pd.read_parquet(path), schema)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    want = old_parity(pipe, onnx, whole)
    assert want["max_abs_diff"] > 0  # float32 vs float64: the figures are not all 0
    _, streamed = export_parquet(pipe, schema, path, EXPORT_CFG)
    _assert_same_parity(streamed["parity_test"], want)
    assert streamed["parity_test"]["rows"] == len(test_df)
    # the file is smaller than EDGE_SAMPLE_ROWS: the edge cases are those of the whole frame
    edge = edge_cases(schema, pd.read_parquet(path))
    assert streamed["parity_edge_cases"] == old_parity(pipe, onnx, edge)
    assert streamed["model_bytes"] == report["model_bytes"] and streamed["parity_ok"]
    assert set(streamed) == set(report)


def test_with_more_ort_threads_the_figures_agree_to_float32_rounding(
    binary, small_chunks, monkeypatch
) -> None:
    from edgeops import resources

    monkeypatch.setenv(resources.ENV, "2")
    schema, _, pipe, onnx, path, _ = binary
    two = OnnxModel(convert(pipe, schema), onnx.inputs, onnx.classes, threads=2)
    want = old_parity(pipe, two, feature_frame(pd.read_parquet(path), schema))
    _, streamed = export_parquet(pipe, schema, path, EXPORT_CFG)
    # a probability may differ by a float32 rounding step (2**-24 near 1) between batch sizes
    _assert_same_parity(streamed["parity_test"], want, mean_tol=1e-9, max_tol=2**-23)


def test_the_tally_adds_up_mismatches_and_differences_over_chunks(binary, small_chunks) -> None:
    """A model that disagrees on some rows: every figure accumulates as the one-shot one."""
    schema, _, pipe, onnx, path, _ = binary

    class Skewed:
        inputs = onnx.inputs

        def predict_feeds(self, feeds):
            labels, proba = onnx.predict_feeds(feeds)
            torque = feeds[schema.input_names["torque_nm"]][:, 0]
            proba = proba + np.where(torque > 50, 0.01, 0.0)[:, None] * np.sqrt(torque)[:, None]
            return np.where(torque > 55, 1 - labels, labels), proba

    tally = ParityTally()
    for X in feature_chunks(path, schema):
        tally.add(pipe, Skewed(), X)
    want = old_parity(pipe, Skewed(), feature_frame(pd.read_parquet(path), schema))
    assert 0 < want["label_mismatches"] < want["rows"]
    _assert_same_parity(tally.report(), want)


def test_the_one_shot_parity_is_unchanged(binary) -> None:
    schema, test_df, pipe, onnx, _, _ = binary
    X = feature_frame(test_df, schema)
    assert export_stage.parity(pipe, onnx, X) == old_parity(pipe, onnx, X)


def test_latency_is_timed_on_rows_of_the_first_chunk(binary, small_chunks) -> None:
    schema, _, pipe, _, path, _ = binary
    _, report = export_parquet(pipe, schema, path, {**EXPORT_CFG, "latency_repeats": 1})
    assert set(report["latency"]) >= {"onnx_1_row_ms", "sklearn_1000_rows_ms", "speedup_1_row"}


def test_streamed_parity_failure_fails_the_export(binary, small_chunks) -> None:
    from edgeops.errors import EdgeopsError

    schema, _, pipe, _, path, _ = binary
    with pytest.raises(EdgeopsError, match="disagrees with scikit-learn"):
        export_parquet(pipe, schema, path, {**EXPORT_CFG, "max_abs_diff": 0.0})


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("n", [6, 10, 12])
def test_golden_examples_are_those_of_the_old_implementation(task, n, binary, multiclass) -> None:
    schema, test_df, _, onnx, path, _ = binary if task == "binary" else multiclass
    want = old_golden_examples(onnx, schema, pd.read_parquet(path), n=n)
    assert golden_examples_parquet(onnx, schema, path, n=n) == want
    assert golden_examples(onnx, schema, test_df, n=n) == old_golden_examples(
        onnx, schema, test_df, n=n
    )
    shuffled = test_df.sample(frac=1.0, random_state=2)  # labels no longer positions
    assert golden_examples(onnx, schema, shuffled, n=n) == old_golden_examples(
        onnx, schema, shuffled, n=n
    )


def test_golden_rows_stay_the_same_when_edge_cases_come_from_a_sample(binary, monkeypatch) -> None:
    schema, _, _, onnx, path, _ = binary
    monkeypatch.setattr(export_stage, "EDGE_SAMPLE_ROWS", 50)
    want = old_golden_examples(onnx, schema, pd.read_parquet(path), n=10)
    got = golden_examples_parquet(onnx, schema, path, n=10)
    picked = len(schema.classes) * max(1, 10 // (2 * len(schema.classes)))
    assert len(got) == len(want) and got[:picked] == want[:picked]


def test_an_empty_test_split_is_refused(binary, tmp_path: Path) -> None:
    from edgeops.errors import EdgeopsError

    schema, test_df, pipe, _, _, _ = binary
    empty = tmp_path / "empty.parquet"
    test_df.iloc[:0].to_parquet(empty, index=False)
    with pytest.raises(EdgeopsError, match="no rows"):
        export_parquet(pipe, schema, empty, EXPORT_CFG)
