"""CSV/Parquet source: one file, or a folder of them read in name order and stacked.

CSV files are read as they were written (encoding, separator, decimal mark, dates), detected per
file by :mod:`edgeops.sources.dialect` and overridable under ``ingest.csv``; the columns pandas
leaves as text (dates, grouped numbers) are converted by :mod:`edgeops.sources.columns`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.sources.columns import finish
from edgeops.sources.dialect import CsvOptions, describe, report, setting, show, sniff

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".csv", ".parquet", ".pq")


def read_files(path: str | Path, options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read a CSV/Parquet file, or every such file in a folder (same columns in each).

    ``options``: the ``ingest.csv`` settings (sep, decimal, thousands, encoding, date_format).

    >>> df = read_files("data/external/")          # all *.csv / *.parquet, in name order
    """
    return read_with_dialect(path, options)[0]


def read_with_dialect(
    path: str | Path, options: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """:func:`read_files`, and how the CSV files were written (None if there were none).

    The dialect is one dict (see :func:`edgeops.sources.dialect.report`) when every CSV file
    has the same; else ``{"files": {name: dialect}}``.
    """
    import pandas as pd

    opts = options if isinstance(options, CsvOptions) else CsvOptions.from_params(options)
    files = _files(Path(path))
    frames, dialects = [], {}
    for f in files:
        df, dialect = _read_one(f, opts)
        frames.append(df)
        if dialect is not None:
            dialects[f.name] = dialect
    first = list(frames[0].columns)
    for f, frame in zip(files[1:], frames[1:], strict=True):
        if list(frame.columns) != first:
            missing = sorted(set(first) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(first))
            raise EdgeopsError(
                f"{f} has different columns than {files[0]} (missing {missing}, extra {extra})",
                fix="give every file in the folder the same header",
            )
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return df, _merge(dialects)


def describe_dialect(dialect: Mapping[str, Any] | None) -> str | None:
    """One log line for the dialect :func:`read_with_dialect` returned (None without CSV)."""
    if not dialect:
        return None
    if "files" not in dialect:
        return describe(dialect)
    return "; ".join(f"{name}: {describe(d)}" for name, d in dialect["files"].items())


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not files:
            raise EdgeopsError(
                f"{path}/ holds no .csv or .parquet files",
                fix="put the data files there, or point ingest.csv.path at a file",
            )
        return files
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise EdgeopsError(f"{path} is not a .csv or .parquet file", fix="convert it to CSV")
        return [path]
    raise EdgeopsError(f"{path} does not exist", fix="check ingest.csv.path in params.yaml")


def _merge(dialects: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not dialects:
        return None
    values = list(dialects.values())
    if all(v == values[0] for v in values[1:]):
        return values[0]
    return {"files": dialects}


def _read_one(path: Path, options: CsvOptions) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    import pandas as pd

    if path.stat().st_size == 0:
        raise EdgeopsError(f"{path} is empty", fix="export the data again, with a header row")
    if path.suffix.lower() != ".csv":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises its own types for corrupt parquet
            raise EdgeopsError(f"{path} could not be read: {exc}", fix="check the file") from exc
        if df.empty:
            raise EdgeopsError(
                f"{path} has a header but no rows", fix="export the data with its rows"
            )
        return df, None

    dialect = sniff(path, options)
    try:
        df = pd.read_csv(
            path,
            sep=dialect.sep,
            decimal=dialect.decimal,
            encoding=dialect.encoding,
            quotechar='"',
            index_col=False,  # a separator at the end of each row must not shift the columns
            low_memory=False,  # one type per column, not one per chunk
        )
    except pd.errors.EmptyDataError as exc:
        raise EdgeopsError(
            f"{path} could not be read: {exc}", fix="export the data again, with a header row"
        ) from exc
    except pd.errors.ParserError as exc:
        raise EdgeopsError(
            f"{path} could not be read with sep {show(dialect.sep)}: {str(exc).strip()}",
            fix="every row needs as many fields as the header (quote text that holds the "
            f"separator); if the separator is wrong, set {setting('sep')}",
        ) from exc
    except (UnicodeDecodeError, OSError, ValueError) as exc:
        raise EdgeopsError(f"{path} could not be read: {exc}", fix="check the file") from exc
    if df.empty:
        raise EdgeopsError(f"{path} has a header but no rows", fix="export the data with its rows")
    df, dates = finish(df, path, dialect, options)
    return df, report(dialect, dates, options)
