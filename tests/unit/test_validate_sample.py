"""The validate stage on a sample of a large file (``validate.sample_rows``): small real Parquet
files with many row groups, a small sample, real Great Expectations."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from edgeops.errors import EdgeopsError
from edgeops.schema import Schema, schema_from_dict
from edgeops.sources.simulator import simulate
from edgeops.stages.validate import (
    DEFAULT_SAMPLE_ROWS,
    read_data,
    read_sample,
    sample_indices,
    sample_rows_param,
    sample_size,
    validate,
)
from edgeops.stages.validation_report import render_html

ROWS, SAMPLE, GROUP = 2000, 500, 100  # 20 row groups
COLUMNS = ["timestamp", "machine_type", "torque_nm", "failure"]
PARAMS = """
validate:
  sample_rows: {sample_rows}
  schema:
    target: failure
    min_rows: 100
    columns:
      - {{name: timestamp, type: timestamp}}
      - {{name: machine_type, type: categorical, categories: [L, M, H]}}
      - {{name: torque_nm, type: numeric, min: 0.0, max: 100.0}}
      - {{name: failure, type: categorical, categories: [0, 1]}}
"""


@pytest.fixture(scope="module")
def schema() -> Schema:
    return schema_from_dict(yaml.safe_load(PARAMS.format(sample_rows=0))["validate"]["schema"])


def plant(rows: int = ROWS) -> pd.DataFrame:
    df = simulate(rows=rows, seed=3)[COLUMNS]
    df.insert(0, "row", np.arange(rows))  # the row's position in the file
    return df


def write(df: pd.DataFrame, path: Path, group: int = GROUP) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False, row_group_size=group)
    return path


def stage_dir(tmp_path: Path, df: pd.DataFrame, sample_rows: int) -> Path:
    """A working directory as DVC runs the stage in: params.yaml and data/raw/dataset.parquet."""
    params = PARAMS.format(sample_rows=sample_rows).replace(
        "    columns:\n", "    columns:\n      - {name: row, type: numeric}\n"
    )
    (tmp_path / "params.yaml").write_text(params)
    write(df, tmp_path / "data" / "raw" / "dataset.parquet")
    return tmp_path


def outputs(cwd: Path) -> tuple[dict[str, Any], str]:
    summary = json.loads((cwd / "reports/validation/summary.json").read_text())
    return summary, (cwd / "reports/validation/report.html").read_text()


# --- the stage as DVC runs it --------------------------------------------------------------------


def test_a_file_above_the_threshold_is_checked_on_a_sample(tmp_path: Path, run_cmd) -> None:
    cwd = stage_dir(tmp_path, plant(), sample_rows=SAMPLE)
    proc = run_cmd([sys.executable, "-m", "edgeops.stages.validate"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert (
        "data/raw/dataset.parquet has 2,000 rows, more than validate.sample_rows (500): "
        "checking a uniform random sample of 500 rows (seed 0)" in proc.stderr
    )
    summary, html = outputs(cwd)
    assert summary["success"] is True
    assert (summary["rows"], summary["checked_rows"], summary["sampled"]) == (ROWS, SAMPLE, True)
    assert "Checked a uniform random sample of 500 of 2,000 rows (validate.sample_rows)" in html
    assert "99 % for any problem in at least 0.0092 of the rows (0.921 %, 19 of 2,000 rows)" in html
    assert "<dd>2,000 (5 columns)</dd>" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_a_defect_in_many_rows_is_found_in_the_sample(tmp_path: Path, run_cmd) -> None:
    df = plant()
    rng = np.random.default_rng(1)
    hot = rng.choice(ROWS, size=ROWS * 3 // 10, replace=False)  # 30 % out of range
    df.loc[hot, "torque_nm"] = 150.0
    cwd = stage_dir(tmp_path, df, sample_rows=SAMPLE)
    proc = run_cmd([sys.executable, "-m", "edgeops.stages.validate"], cwd=cwd)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    checked = sample_indices(ROWS, SAMPLE)
    bad = len(np.intersect1d(hot, checked))  # exactly the sampled rows that are bad
    assert 100 < bad < 200
    expected = f"{bad} of a 500-row sample of 2,000 rows fail (e.g. [150.0]); allowed range"
    assert "edgeops validate: error:" in proc.stderr and expected in proc.stderr
    summary, html = outputs(cwd)
    assert (summary["rows"], summary["checked_rows"], summary["sampled"]) == (ROWS, SAMPLE, True)
    [failure] = summary["failures"]
    assert failure["column"] == "torque_nm" and failure["unexpected_count"] == bad
    assert "FAILED" in html and "Checked a uniform random sample of 500 of 2,000 rows" in html


# --- which rows: at or below the threshold all of them, above it a fixed uniform sample ----------


@pytest.mark.parametrize("sample_rows", [ROWS, ROWS + 1, 0])
def test_at_or_below_the_threshold_nothing_changes(
    tmp_path: Path, schema: Schema, sample_rows: int
) -> None:
    path = write(plant().drop(columns="row"), tmp_path / "raw.parquet")
    whole = pd.read_parquet(path)
    df, rows = read_data(path, sample_rows, schema.min_rows)
    pd.testing.assert_frame_equal(df, whole)
    summary = validate(df, schema, rows=rows)
    assert summary == validate(whole, schema)  # as the stage summarised before sampling existed
    assert (summary["rows"], summary["checked_rows"], summary["sampled"]) == (ROWS, ROWS, False)
    assert list(summary)[:4] == ["success", "rows", "checked_rows", "sampled"]


def test_the_sample_is_fixed_uniform_and_spread_over_all_row_groups(
    tmp_path: Path, schema: Schema
) -> None:
    path = write(plant(), tmp_path / "raw.parquet")
    whole = pd.read_parquet(path)
    df, rows = read_data(path, SAMPLE, schema.min_rows)
    again, _ = read_data(path, SAMPLE, schema.min_rows)
    assert rows == ROWS and len(df) == SAMPLE
    pd.testing.assert_frame_equal(df, again)  # the same rows every run
    picked = df["row"].to_numpy()
    assert len(set(picked)) == SAMPLE and np.array_equal(picked, sample_indices(ROWS, SAMPLE))
    expected = whole.iloc[picked].reset_index(drop=True)
    pd.testing.assert_frame_equal(df, expected)  # rows of the file, value for value
    per_group = np.bincount(picked // GROUP, minlength=ROWS // GROUP)
    assert per_group.min() > 0  # every one of the 20 row groups contributes
    assert per_group.max() < 2.5 * SAMPLE / 20  # no group holds much more than its share


@pytest.mark.parametrize(
    ("num_rows", "sample_rows", "min_rows", "expected"),
    [
        (2000, 500, 100, 500),
        (2000, 50, 100, 100),  # never below min_rows: the row-count check runs on the sample
        (2000, 50, 2000, None),  # the sample would be the whole file
        (2000, 2000, 100, None),  # at the threshold: all rows
        (2000, 0, 100, None),  # 0: never sample
        (100_000_000, 2_000_000, 1000, 2_000_000),
    ],
)
def test_sample_size(num_rows: int, sample_rows: int, min_rows: int, expected: int | None) -> None:
    assert sample_size(num_rows, sample_rows, min_rows) == expected


def test_the_sample_has_the_dtypes_read_parquet_gives(tmp_path: Path) -> None:
    n = 2000
    rng = np.random.default_rng(5)
    kinds = pd.Categorical(
        rng.choice(["L", "M", "H", None], size=n), categories=["L", "M", "H", "XL"]
    )
    df = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="min"),
            "utc": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
            "kind": kinds,  # a string categorical with nulls and an unused category
            "text": pd.Series(rng.choice(["a", "b", None], size=n), dtype=object),
            "count": np.arange(n, dtype="int64"),
            "maybe": pd.array([1, None, 3, 4] * (n // 4), dtype="Int64"),
            "value": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
            "flag": rng.random(n) < 0.5,
        }
    )
    path = write(df, tmp_path / "types.parquet", group=64)
    whole = pd.read_parquet(path)
    sample = read_sample(path, 300)
    assert sample.dtypes.to_dict() == whole.dtypes.to_dict()
    assert isinstance(sample["kind"].dtype, pd.CategoricalDtype)
    assert list(sample["kind"].cat.categories) == ["L", "M", "H", "XL"]
    expected = whole.iloc[sample_indices(n, 300)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sample, expected)


# --- bounded memory ------------------------------------------------------------------------------

MEMORY_PROBE = """
import sys
import pyarrow.parquet as pq
import pyarrow as pa
from edgeops.stages.validate import read_sample

path, n = sys.argv[1], int(sys.argv[2])
pool = pa.default_memory_pool()  # every Arrow buffer of this fresh process; max_memory: its peak
table = pq.ParquetFile(path).read_row_group(0)
one_group = pool.max_memory()
del table
df = read_sample(path, n)
after_sample = pool.max_memory()
del df
table = pq.read_table(path)  # the whole file, as pd.read_parquet reads it
print(one_group, after_sample, pool.max_memory(), table.nbytes)
"""


def test_the_sampler_holds_one_row_group_at_a_time(tmp_path: Path, run_cmd) -> None:
    """Arrow's own allocation peak (in a fresh process, the pool counts every Arrow buffer):
    sampling 2,000 of 200,000 rows in 40 row groups peaks near one row group, far below the
    whole file."""
    rows = 200_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": np.arange(rows), **{c: rng.random(rows) for c in "abc"}})
    path = write(df, tmp_path / "big.parquet", group=5000)
    proc = run_cmd([sys.executable, "-c", MEMORY_PROBE, path, 2000], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    one_group, after_sample, after_whole, whole_bytes = map(int, proc.stdout.split())
    assert whole_bytes >= rows * 4 * 8  # 6.4 MB of values
    assert after_sample < 3 * one_group  # one row group (+ the 64 KB sample), never more
    assert after_whole > 10 * after_sample  # what reading the whole file would have cost


# --- the param and the report --------------------------------------------------------------------


def test_the_sample_rows_param(params: dict[str, Any]) -> None:
    assert sample_rows_param(params["validate"]) == DEFAULT_SAMPLE_ROWS == 2_000_000
    assert sample_rows_param({}) == DEFAULT_SAMPLE_ROWS
    assert sample_rows_param({"sample_rows": 0}) == 0
    for bad in (-1, "2M", 1.5, True, None):
        with pytest.raises(EdgeopsError, match="validate.sample_rows must be a whole number"):
            sample_rows_param({"sample_rows": bad})


def test_the_report_says_what_the_sample_finds() -> None:
    when = datetime(2026, 11, 1, tzinfo=UTC)
    html = render_html(
        [],
        dataset="data/raw/dataset.parquet",
        rows=100_000_000,
        columns=11,
        when=when,
        checked_rows=2_000_000,
    )
    assert (
        "Checked a uniform random sample of 2,000,000 of 100,000,000 rows (validate.sample_rows); "
        "a problem in a share p of the rows is found with probability 1-(1-p)^N, N = 2,000,000: "
        "with this sample, 99 % for any problem in at least 2.3e-06 of the rows "
        "(0.00023 %, 231 of 100,000,000 rows)." in html
    )
    # 231 bad rows of 100M are found with at least 99 % probability, 230 just miss it
    assert 1 - (1 - 231e-8) ** 2_000_000 >= 0.99 > 1 - (1 - 230e-8) ** 2_000_000
    for checked in (None, 100_000_000):
        html = render_html(
            [], dataset="d", rows=100_000_000, columns=11, when=when, checked_rows=checked
        )
        assert "sample" not in html
