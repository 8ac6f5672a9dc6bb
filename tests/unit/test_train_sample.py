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
