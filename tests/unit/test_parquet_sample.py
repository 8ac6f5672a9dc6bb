"""Sampling rows of a parquet file one row group at a time: deterministic, uniform, the dtypes
pandas.read_parquet gives; and the drift reference that samples the training split with it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from edgeops.parquet_sample import rows_and_columns, sample_rows, take_rows

ROWS, GROUP = 1000, 100  # ten row groups


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "ts": pd.date_range("2026-01-01", periods=ROWS, freq="min"),
            "text": pd.Series([None if i % 7 == 0 else f"s{i % 13}" for i in range(ROWS)]),
            "count": np.arange(ROWS, dtype=np.int64),
            "value": rng.normal(size=ROWS),
            "kind": pd.Categorical(rng.choice(["a", "b", "c"], size=ROWS)),
        }
    )


@pytest.fixture(scope="module")
def path(frame: pd.DataFrame, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pq") / "data.parquet"
    frame.to_parquet(out, index=False, row_group_size=GROUP)
    return out


def test_the_file_has_several_row_groups(path: Path) -> None:
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).num_row_groups == ROWS // GROUP


def test_rows_and_columns_come_from_the_footer(path: Path, frame: pd.DataFrame) -> None:
    assert rows_and_columns(path) == (len(frame), list(frame.columns))


def test_the_sample_is_deterministic_for_a_seed(path: Path) -> None:
    a, b = sample_rows(path, 50, seed=3), sample_rows(path, 50, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not sample_rows(path, 50, seed=4).index.equals(a.index)


def test_the_sample_is_a_subset_of_the_rows_in_file_order(path: Path, frame: pd.DataFrame) -> None:
    got = sample_rows(path, 123, seed=0)
    assert len(got) == 123 and got.index.is_unique and got.index.is_monotonic_increasing
    want = pd.read_parquet(path).iloc[got.index]
    pd.testing.assert_frame_equal(got, want.set_axis(got.index))
    assert got["count"].tolist() == got.index.tolist()  # each row is the one at its position


def test_the_sample_is_drawn_as_documented(path: Path) -> None:
    got = sample_rows(path, 40, seed=9)
    want = np.sort(np.random.default_rng(9).choice(ROWS, 40, replace=False))
    assert got.index.tolist() == want.tolist()


def test_every_row_group_contributes_about_its_share(path: Path) -> None:
    hits = np.zeros(ROWS // GROUP, dtype=int)
    for seed in range(50):
        positions = sample_rows(path, 200, seed=seed, columns=["count"]).index.to_numpy()
        hits += np.bincount(positions // GROUP, minlength=len(hits))
    expected = 50 * 200 / len(hits)  # 1,000 per row group; the standard deviation is about 30
    assert (hits > 0).all()
    assert np.abs(hits - expected).max() < 0.1 * expected, hits


def test_dtypes_are_those_of_read_parquet(path: Path) -> None:
    got = sample_rows(path, 30, seed=1)
    pd.testing.assert_series_equal(got.dtypes, pd.read_parquet(path).dtypes)
    assert got["text"].isna().any() and got["ts"].dtype.kind == "M"
    cols = ["value", "text"]
    assert got.columns.tolist() == pd.read_parquet(path).columns.tolist()
    sub = sample_rows(path, 30, seed=1, columns=cols)
    assert sub.columns.tolist() == cols
    pd.testing.assert_series_equal(sub.dtypes, pd.read_parquet(path, columns=cols).dtypes)


def test_k_at_least_the_rows_returns_every_row_in_order(path: Path) -> None:
    for k in (ROWS, ROWS + 1, 10**9):
        pd.testing.assert_frame_equal(sample_rows(path, k, seed=0), pd.read_parquet(path))


def test_a_stored_pandas_index_is_not_read_as_a_column(frame: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "indexed.parquet"
    frame.set_index("count").to_parquet(out, row_group_size=GROUP)
    got = sample_rows(out, 10, seed=0)
    assert got.columns.tolist() == ["ts", "text", "value", "kind"]
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True),
        pd.read_parquet(out).iloc[got.index].reset_index(drop=True),
    )


def test_take_rows_keeps_the_order_asked_for_across_row_groups(
    path: Path, frame: pd.DataFrame
) -> None:
    positions = [950, 3, 3, 420, 999, 0]
    got = take_rows(path, positions, columns=["count", "text"])
    assert got.index.tolist() == positions
    assert got["count"].tolist() == positions
    assert got["text"].tolist() == frame["text"].iloc[positions].tolist()


def test_take_rows_of_nothing_and_out_of_range(path: Path) -> None:
    empty = take_rows(path, [])
    assert len(empty) == 0
    plain = ["ts", "text", "count", "value"]  # a categorical column has no categories read
    pd.testing.assert_series_equal(empty.dtypes[plain], pd.read_parquet(path).dtypes[plain])
    assert isinstance(empty["kind"].dtype, pd.CategoricalDtype)
    with pytest.raises(IndexError):
        take_rows(path, [ROWS])
    with pytest.raises(IndexError):
        take_rows(path, [-1])


# the drift reference: a sample of the training split, with the columns read_parquet gives


def _reference_inputs(tmp_path: Path, train_df: pd.DataFrame, group: int) -> tuple:
    from edgeops.edge.inference import OnnxModel
    from edgeops.monitor.reference import TRAIN_SPLIT, md5_file
    from edgeops.stages.export import convert, input_specs
    from edgeops.stages.train import train
    from tests.bundles import PARAMS, plant_schema

    schema = plant_schema()
    pipe = train(train_df, schema, {**PARAMS["train"], "model": "logistic_regression"})
    model = OnnxModel(convert(pipe, schema), input_specs(schema), [int(c) for c in pipe.classes_])
    split_path = tmp_path / TRAIN_SPLIT
    split_path.parent.mkdir(parents=True)
    train_df.to_parquet(split_path, index=False, row_group_size=group)
    manifest = {"model": {"version": "1.0.0"}, "data": {"train_md5": md5_file(split_path)}}
    bundle = SimpleNamespace(manifest=manifest, version="1.0.0", model=model)
    return bundle, schema, split_path


def test_the_drift_reference_is_a_uniform_sample_with_read_parquet_dtypes(tmp_path: Path) -> None:
    from edgeops.deploy.gate import predict_proba
    from edgeops.monitor.reference import load_reference
    from tests.bundles import plant_split

    train_df, _ = plant_split()
    bundle, schema, split_path = _reference_inputs(tmp_path, train_df, group=300)
    features = [c.name for c in schema.features]
    ref = load_reference(bundle, features, schema.target, 500, 7, tmp_path)
    again = load_reference(bundle, features, schema.target, 500, 7, tmp_path)
    full = pd.read_parquet(split_path)
    assert ref.rows_total == len(full) and len(ref.frame) == 500
    assert ref.frame.columns.tolist() == [*features, schema.target]
    pd.testing.assert_series_equal(ref.frame.dtypes, full[[*features, schema.target]].dtypes)
    pd.testing.assert_frame_equal(ref.frame, again.frame)
    positions = np.sort(np.random.default_rng(7).choice(len(full), 500, replace=False))
    want = full.iloc[positions][[*features, schema.target]].reset_index(drop=True)
    pd.testing.assert_frame_equal(ref.frame, want)
    np.testing.assert_array_equal(ref.proba, predict_proba(bundle, want))
    whole = load_reference(bundle, features, schema.target, len(full), 7, tmp_path)
    pd.testing.assert_frame_equal(whole.frame, full[[*features, schema.target]])
