"""train.max_rows: a larger training split is fitted on a uniform, seeded sample."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from edgeops.sources.simulator import simulate
from edgeops.stages.train import training_rows


def test_above_max_rows_train_fits_a_seeded_uniform_sample(tmp_path: Path) -> None:
    df = simulate(rows=2000, seed=8)
    df.to_parquet(tmp_path / "train.parquet", index=False, row_group_size=300)
    path = str(tmp_path / "train.parquet")

    rows, available = training_rows(path, {"max_rows": 500, "seed": 1})
    again, _ = training_rows(path, {"max_rows": 500, "seed": 1})
    other, _ = training_rows(path, {"max_rows": 500, "seed": 2})
    assert available == 2000 and len(rows) == 500 and rows.index.equals(pd.RangeIndex(500))
    pd.testing.assert_frame_equal(rows, again)
    assert not rows.equals(other)
    assert rows["timestamp"].isin(df["timestamp"]).all() and rows["timestamp"].is_unique
    assert rows.dtypes.equals(df.dtypes)
    # every part of the file is drawn from (uniform), not the first rows
    assert rows["timestamp"].max() > df["timestamp"].iloc[1700]

    for cfg in ({"max_rows": 0}, {"max_rows": 2000}, {}):
        whole, n = training_rows(path, cfg)
        assert n == 2000
        pd.testing.assert_frame_equal(whole, df)


def test_a_bad_max_rows_and_a_sample_without_a_class_are_clear_errors(tmp_path: Path) -> None:
    import pytest

    from edgeops.errors import EdgeopsError

    df = simulate(rows=2000, seed=8).assign(failure=0)
    df.loc[[5, 1500], "failure"] = 1  # a class of 2 rows in 2,000
    df.to_parquet(tmp_path / "train.parquet", index=False, row_group_size=300)
    path = str(tmp_path / "train.parquet")
    for bad in (-1, "1e7", 2.5, True):
        with pytest.raises(EdgeopsError, match="train.max_rows must be a whole number"):
            training_rows(path, {"max_rows": bad})
    with pytest.raises(EdgeopsError, match=r"no row of class\(es\) \[1\] of 'failure'"):
        training_rows(path, {"max_rows": 10, "seed": 1}, "failure")
    assert len(training_rows(path, {"max_rows": 10, "seed": 1})[0]) == 10  # no target: no check
    rows, _ = training_rows(path, {"max_rows": 1999, "seed": 1}, "failure")
    assert set(rows["failure"]) == {0, 1}
