"""Split at scale: the sides decided from the target (or time) column alone, the rows copied a
row group at a time, give each side the same rows as the split of the whole frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from edgeops.errors import EdgeopsError
from edgeops.sources.simulator import simulate
from edgeops.stages.split import SIDE_FILES, sides_of, split_with_production, write_sides
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
    parts = split_with_production(df, keys, SCHEMA, 0.2, 42, time_column)

    sides = sides_of(tmp_path / "raw.parquet", keys, SCHEMA, 0.2, 42, time_column)
    counts = write_sides(tmp_path / "raw.parquet", sides, tmp_path / "out")
    assert counts == tuple(len(p) for p in parts) and counts[2] > 0

    for code, (name, part) in enumerate(zip(SIDE_FILES, parts, strict=True)):
        got = pd.read_parquet(tmp_path / "out" / name)
        pd.testing.assert_frame_equal(_rows(got), _rows(part))
        pd.testing.assert_frame_equal(got, df[sides == code].reset_index(drop=True))  # file order
    assert (
        pq.ParquetFile(tmp_path / "out/train.parquet").schema_arrow
        == pq.ParquetFile(tmp_path / "raw.parquet").schema_arrow
    )


def test_the_streamed_split_checks_what_the_in_memory_one_checks(tmp_path: Path) -> None:
    df = simulate(rows=300, seed=4).assign(failure=0)
    df.to_parquet(tmp_path / "raw.parquet", index=False)
    none = pd.DataFrame({"key": []})
    with pytest.raises(EdgeopsError, match="one class only"):
        sides_of(tmp_path / "raw.parquet", none, SCHEMA, 0.2, 42, None)
    with pytest.raises(EdgeopsError, match="not a column"):
        sides_of(tmp_path / "raw.parquet", none, SCHEMA, 0.2, 42, "when")
    with pytest.raises(EdgeopsError, match="ingest outputs disagree"):
        sides_of(
            tmp_path / "raw.parquet", pd.DataFrame({"key": ["k"] * 301}), SCHEMA, 0.2, 42, None
        )
