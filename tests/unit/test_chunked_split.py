"""Split at scale: the sides decided from the target (or time) column alone, the rows copied a
row group at a time, give each side the same rows as the split of the whole frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from edgeops.errors import EdgeopsError
from edgeops.sources.simulator import simulate
from edgeops.stages.split import held_out_mask, split_with_production, write_sides
from tests.unit.test_monitor import SCHEMA


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("time_column", [None, "timestamp", "utc_time"])
def test_streamed_sides_hold_the_rows_of_the_in_memory_split(tmp_path: Path, time_column) -> None:
    df = simulate(rows=3000, seed=4)
    df = df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # time out of file order
    df["utc_time"] = df["timestamp"].dt.tz_localize("UTC")  # a zoned time, some missing
    df.loc[df.index % 97 == 0, "utc_time"] = pd.NaT
    keys = pd.DataFrame({"key": [f"r{i}:0" for i in range(200)]})  # the last 200: production
    df.to_parquet(tmp_path / "raw.parquet", index=False, row_group_size=700)
    train, test = split_with_production(df, keys, SCHEMA, 0.2, 42, time_column)

    mask = held_out_mask(tmp_path / "raw.parquet", keys, SCHEMA, 0.2, 42, time_column)
    assert write_sides(tmp_path / "raw.parquet", mask, tmp_path / "out") == (len(train), len(test))

    got_train = pd.read_parquet(tmp_path / "out/train.parquet")
    got_test = pd.read_parquet(tmp_path / "out/test.parquet")
    pd.testing.assert_frame_equal(_rows(got_train), _rows(train))
    pd.testing.assert_frame_equal(_rows(got_test), _rows(test))
    pd.testing.assert_frame_equal(got_test, df[mask].reset_index(drop=True))  # the file's order
    assert (
        pq.ParquetFile(tmp_path / "out/train.parquet").schema_arrow
        == pq.ParquetFile(tmp_path / "raw.parquet").schema_arrow
    )


def test_the_streamed_split_checks_what_the_in_memory_one_checks(tmp_path: Path) -> None:
    df = simulate(rows=300, seed=4).assign(failure=0)
    df.to_parquet(tmp_path / "raw.parquet", index=False)
    none = pd.DataFrame({"key": []})
    with pytest.raises(EdgeopsError, match="one class only"):
        held_out_mask(tmp_path / "raw.parquet", none, SCHEMA, 0.2, 42, None)
    with pytest.raises(EdgeopsError, match="not a column"):
        held_out_mask(tmp_path / "raw.parquet", none, SCHEMA, 0.2, 42, "when")
    with pytest.raises(EdgeopsError, match="ingest outputs disagree"):
        held_out_mask(
            tmp_path / "raw.parquet", pd.DataFrame({"key": ["k"] * 301}), SCHEMA, 0.2, 42, None
        )
