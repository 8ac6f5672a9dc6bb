"""Rows of a parquet file by position, read one row group at a time.

A split of 100M rows does not fit in memory, but a sample of it does: :func:`sample_rows` draws a
uniform sample and :func:`take_rows` reads given rows, holding one row group (of the requested
columns) plus the rows taken. The frames have the dtypes ``pandas.read_parquet`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq


def rows_and_columns(path: str | Path) -> tuple[int, list[str]]:
    """The number of rows and the column names of a parquet file, from its footer alone (no data
    is read), the file closed again.

    Usage: ``total, names = rows_and_columns("data/prepared/train.parquet")``
    """
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        return pf.metadata.num_rows, pf.schema_arrow.names


def sample_rows(
    path: str | Path, k: int, seed: int, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """A uniform sample of ``k`` rows of a parquet file, without replacement, in file order.

    The positions are ``numpy.random.default_rng(seed).choice(num_rows, k, replace=False)``,
    sorted: the same file and seed give the same rows. With ``k >= num_rows`` every row is
    returned, in file order. The index holds the rows' positions in the file.

    Usage: ``ref = sample_rows("data/prepared/train.parquet", 10_000, seed=0, columns=cols)``
    """
    import numpy as np

    total = rows_and_columns(path)[0]
    whole = k >= total
    positions = np.arange(total, dtype=np.int64) if whole else sample_positions(total, k, seed)
    return take_rows(path, positions, columns)


def sample_positions(num_rows: int, k: int, seed: int) -> np.ndarray:
    """``k`` distinct row positions of ``num_rows``, uniform, sorted: the rows
    :func:`sample_rows` takes."""
    import numpy as np

    return np.sort(np.random.default_rng(seed).choice(num_rows, size=k, replace=False))


def take_rows(
    path: str | Path, positions: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The rows at ``positions`` (0-based row numbers across all row groups) of a parquet file.

    Rows come back in the order of ``positions`` (which may repeat a row), indexed by their
    positions; sorted positions read each row group once. ``columns=None`` means every data column
    (a stored pandas index is not read: the index is the positions).

    Usage: ``rows = take_rows("data/prepared/test.parquet", [5, 17, 4_000_123])``
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    order = np.argsort(pos, kind="stable")
    wanted = pos[order]
    with pq.ParquetFile(path) as pf:
        total = pf.metadata.num_rows
        if wanted.size and (wanted[0] < 0 or wanted[-1] >= total):
            raise IndexError(f"row positions must lie in [0, {total}) for {path}")
        cols = list(columns) if columns is not None else _data_columns(pf)
        pieces, start = [], 0
        for i in range(pf.num_row_groups):
            stop = start + pf.metadata.row_group(i).num_rows
            lo, hi = np.searchsorted(wanted, [start, stop])
            if hi > lo:
                group, local = pf.read_row_group(i, columns=cols), wanted[lo:hi] - start
                whole = np.array_equal(local, np.arange(len(group)))
                pieces.append(group if whole else group.take(pa.array(local)))
            start = stop
        table = pa.concat_tables(pieces) if pieces else pf.schema_arrow.empty_table().select(cols)
    if not np.array_equal(order, np.arange(len(order))):
        table = table.take(pa.array(np.argsort(order, kind="stable")))
    df = table.to_pandas()  # what pandas.read_parquet does with the table it reads
    df.index = pos
    return df


def _data_columns(pf: pq.ParquetFile) -> list[str]:
    """The file's columns without a pandas index stored as a column (``__index_level_0__``)."""
    meta = pf.schema_arrow.pandas_metadata or {}
    index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
    return [c for c in pf.schema_arrow.names if c not in index]
