"""CSV/Parquet source: one file, or a folder of them read in name order and stacked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".csv", ".parquet", ".pq")


def read_files(path: str | Path) -> pd.DataFrame:
    """Read a CSV/Parquet file, or every such file in a folder (same columns in each).

    >>> df = read_files("data/external/")          # all *.csv / *.parquet, in name order
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not files:
            raise EdgeopsError(
                f"{path}/ holds no .csv or .parquet files",
                fix="put the data files there, or point ingest.csv.path at a file",
            )
    elif path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise EdgeopsError(f"{path} is not a .csv or .parquet file", fix="convert it to CSV")
        files = [path]
    else:
        raise EdgeopsError(f"{path} does not exist", fix="check ingest.csv.path in params.yaml")

    frames = [_read_one(f) for f in files]
    first = list(frames[0].columns)
    for f, frame in zip(files[1:], frames[1:], strict=True):
        if list(frame.columns) != first:
            missing = sorted(set(first) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(first))
            raise EdgeopsError(
                f"{f} has different columns than {files[0]} (missing {missing}, extra {extra})",
                fix="give every file in the folder the same header",
            )
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _read_one(path: Path) -> pd.DataFrame:
    import pandas as pd

    if path.stat().st_size == 0:
        raise EdgeopsError(f"{path} is empty", fix="export the data again, with a header row")
    try:
        df = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise EdgeopsError(
            f"{path} could not be read: {exc}", fix="check it is a valid UTF-8 CSV or Parquet file"
        ) from exc
    except Exception as exc:  # pyarrow raises its own types for corrupt parquet
        raise EdgeopsError(f"{path} could not be read: {exc}", fix="check the file") from exc
    if df.empty:
        raise EdgeopsError(f"{path} has a header but no rows", fix="export the data with its rows")
    if path.suffix.lower() == ".csv":
        from edgeops.sources import parse_timestamps

        df = parse_timestamps(df)
    return df
