"""Where data comes from: the built-in plant simulator, a CSV/Parquet folder, or an SQL database.

Each source returns a pandas DataFrame; ``load_source`` picks one from the ``ingest`` params,
``read_source`` also says what it detected on the way (how the CSV files are written), and
``read_source_chunks`` gives the data as consecutive frames (the simulator's chunk by chunk).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

SOURCES = ("simulator", "csv", "sql")
#: ISO dates/times without a zone, as CSV files and SQLite hold timestamps: 2026-01-05 06:00:00
_ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")


def load_source(ingest: dict[str, Any]) -> pd.DataFrame:
    """Read the source named by ``ingest.source`` with its own sub-section of params."""
    return read_source(ingest)[0]


def read_source(ingest: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`load_source`, and what was detected: ``{"csv": dialect}`` for CSV files (see
    :func:`edgeops.sources.csv.read_with_dialect`), else ``{}``."""
    name = ingest.get("source", "simulator")
    cfg = ingest.get(name) or {}
    if name == "simulator":
        from edgeops.sources.simulator import simulate

        df = simulate(
            rows=int(cfg.get("rows", 50_000)),
            seed=int(cfg.get("seed", 42)),
            scenario=str(cfg.get("scenario", "baseline")),
        )
        return df, {}
    if name == "csv":
        from edgeops.sources.csv import read_with_dialect

        if not cfg.get("path"):
            raise EdgeopsError(
                "ingest.csv.path is not set", fix="set it to a CSV/Parquet file or folder"
            )
        df, dialect = read_with_dialect(cfg["path"], cfg)
        return df, ({"csv": dialect} if dialect else {})
    if name == "sql":
        from edgeops.sources.sql import read_sql

        return read_sql(url=cfg.get("url"), query=cfg.get("query"), table=cfg.get("table")), {}
    raise EdgeopsError(
        f"ingest.source is {name!r}, which is not a known source",
        fix=f"use one of {', '.join(SOURCES)}",
    )


def read_source_chunks(ingest: dict[str, Any]) -> tuple[Iterator[pd.DataFrame], dict[str, Any]]:
    """:func:`read_source` as consecutive frames: the simulator makes a large data set chunk by
    chunk (:func:`edgeops.sources.simulator.simulate_chunks`, memory: one chunk); the CSV and SQL
    sources give their one frame."""
    if ingest.get("source", "simulator") == "simulator":
        from edgeops.sources.simulator import simulate_chunks

        cfg = ingest.get("simulator") or {}
        frames = simulate_chunks(
            rows=int(cfg.get("rows", 50_000)),
            seed=int(cfg.get("seed", 42)),
            scenario=str(cfg.get("scenario", "baseline")),
        )
        return frames, {}
    df, detected = read_source(ingest)
    return iter([df]), detected


def parse_timestamps(df: pd.DataFrame) -> pd.DataFrame:
    """Turn text columns that hold only ISO timestamps into datetime64 columns (in place).

    CSV files and SQLite keep timestamps as text; the schema's ``timestamp`` type (and a time
    split) need real datetimes, the same as a Parquet file or the simulator gives.
    """
    import pandas as pd

    for i in range(df.shape[1]):
        s = df.iloc[:, i]
        if s.dtype != object:
            continue
        values = s.dropna()
        if values.empty or not all(isinstance(v, str) and _ISO_TIMESTAMP.match(v) for v in values):
            continue
        try:
            df.isetitem(i, pd.to_datetime(s, format="ISO8601"))
        except ValueError:  # e.g. 2026-13-45: leave the text for validate to report
            continue
    return df
