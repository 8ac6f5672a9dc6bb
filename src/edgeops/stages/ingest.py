"""Stage ``ingest``: read the configured source into ``data/raw/`` as Parquet.

The output is a pure function of the source's content: reading the same rows again writes the
same bytes, so DVC re-runs the stages downstream only when the data really changed. Columns the
schema lists under ``drop`` (and not under ``columns``) are left out of the snapshot: free text
and identifiers are never stored. How CSV files were written (encoding, separator, decimal
mark, dates) is logged and recorded under ``csv`` in ``reports/ingest.json``. The simulator's
data is made and written chunk by chunk (2M rows at a time), so memory does not grow with the
rows; the CSV and SQL sources are read whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.params import load_params, section
from edgeops.stages import runner

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.schema import Schema


def ingest(params: dict[str, Any]) -> pd.DataFrame:
    """Load the source named in the ``ingest`` params section and tidy the column names."""
    return read(params)[0]


def read(params: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`ingest`, and what the source detected (``{"csv": dialect}`` for CSV files)."""
    from edgeops.sources import read_source

    df, detected = read_source(params)
    return tidy_columns(df), detected


def tidy_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Column names as text without surrounding spaces (unique), a fresh 0..n-1 index."""
    df.columns = [str(c).strip() for c in df.columns]
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise EdgeopsError(f"the source has duplicate column names {dupes}", fix="rename them")
    return df.reset_index(drop=True)


def drop_columns(df: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, list[str]]:
    """``df`` without the schema's ``drop`` columns that are not also under ``columns``.

    A name under ``drop`` that is not in the data is fine (nothing to remove).
    """
    listed = set(schema.names)
    gone = [c for c in df.columns if c in schema.drop and c not in listed]
    return (df.drop(columns=gone) if gone else df), gone


def write_parquet(df: pd.DataFrame, out: str | Path) -> str:
    """Write ``df`` atomically as Parquet; return the sha256 of the file."""
    return write_frames(iter([df]), out)[0]


def write_frames(frames: Iterator[pd.DataFrame], out: str | Path) -> tuple[str, int]:
    """Write consecutive frames (the same columns and types) atomically as one Parquet file;
    return its sha256 and the rows written. One frame is written by pandas as always; more go
    through one ``ParquetWriter``, a frame at a time (memory: one frame and its Arrow table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pending = [next(frames)]
    if (second := next(frames, None)) is not None:
        pending.append(second)
        del second
    with atomic.atomic_path(out) as tmp:
        if len(pending) == 1:
            pending[0].to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
            rows = len(pending.pop())
        else:
            # the schema of the first frame (a column all null in one chunk keeps its type)
            schema = pa.Schema.from_pandas(pending[0], preserve_index=False)
            rows = 0
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                for df in _taking(pending, frames):
                    writer.write_table(
                        pa.Table.from_pandas(df, schema=schema, preserve_index=False)
                    )
                    rows += len(df)
                    del df  # not held while the next frame is made
        digest = _sha256(tmp)
    return digest, rows


def _taking(pending: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    """The items of ``pending`` (taken out of the list as they go), then those of ``rest``."""
    while pending:
        yield pending.pop(0)
    yield from rest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def prepared_frames(
    frames: Iterator[pd.DataFrame],
    schema: Schema,
    production: dict[str, Any],
    found: dict[str, Any],
) -> Iterator[pd.DataFrame]:
    """The source's frames without the schema's ``drop`` columns, then the labelled production
    rows (:func:`edgeops.sources.production.add_production`): joined to a lone frame as always,
    else a frame of their own after the last one, so no frame is held while the next is made.
    ``found`` collects ``dropped``, ``source_rows``, ``columns`` and the production ``keys``."""
    from edgeops.sources.production import add_production

    df, found["dropped"] = drop_columns(tidy_columns(next(frames)), schema)
    found["source_rows"], found["columns"] = len(df), list(df.columns)
    following = next(frames, None)
    if following is None:
        df, found["keys"], found["production"] = add_production(df, production, schema)
        yield df
        return
    shape = df.iloc[0:0].copy()  # the columns and types (a copy: a slice would keep df alive)
    yield df
    del df
    pending = [following]
    del following
    for source in _taking(pending, frames):
        part = drop_columns(tidy_columns(source), schema)[0]
        del source
        found["source_rows"] += len(part)
        yield part
        del part
    rows, found["keys"], found["production"] = add_production(
        shape, production, schema, found["source_rows"]
    )
    if len(rows):
        yield rows


def main() -> None:
    p = runner.parser("ingest", __doc__)
    p.add_argument("--out", default="data/raw/dataset.parquet")
    p.add_argument("--report", default="reports/ingest.json")
    p.add_argument(
        "--production-keys",
        default="data/raw/production.parquet",
        help="keys of the labelled production rows appended to the data (split places them)",
    )
    args = p.parse_args()

    def body() -> None:
        from edgeops.schema import schema_from_params
        from edgeops.sources import read_source_chunks
        from edgeops.sources.csv import describe_dialect

        params = load_params(args.params)
        cfg = section(params, "ingest")
        schema = schema_from_params(params)
        runner.log("ingest", f"reading source {cfg.get('source', 'simulator')!r}")
        frames, detected = read_source_chunks(cfg)
        if detected.get("csv"):
            runner.log("ingest", f"csv: {describe_dialect(detected['csv'])}")
        found: dict[str, Any] = {}
        digest, rows = write_frames(
            prepared_frames(frames, schema, cfg.get("production") or {}, found), args.out
        )
        dropped, keys = found["dropped"], found["keys"]
        if dropped:
            runner.log("ingest", f"dropped {dropped} (validate.schema.drop): not stored")
        if len(keys):
            runner.log(
                "ingest",
                f"+ {len(keys):,} labelled production rows from {cfg['production'].get('path')}",
            )
        for target, got in found["production"].items():
            if got["quarantined"]:
                held = sum(q["rows"] for q in got["quarantined"])
                why = "; ".join(c["why"] for c in got["disagreeing"][:3])
                runner.log(
                    "ingest",
                    f"QUARANTINED {target}: {why}: its {held:,} labelled rows "
                    "not released are held (stored, not joined); after a review: "
                    f"edgeops labels release {target} --reason TEXT",
                )
            if got["capped"]:
                runner.log(
                    "ingest",
                    f"{target}: {got['capped']:,} older labelled rows left out "
                    f"(at most {got['cap']:,}: ingest.production.max_target_share)",
                )
        write_parquet(keys, args.production_keys)
        atomic.write_json(
            args.report,
            {
                "source": cfg.get("source", "simulator"),
                "rows": rows,
                "source_rows": found["source_rows"],
                "production_rows": len(keys),
                "production": found["production"],
                "columns": found["columns"],
                "dropped": dropped,
                "csv": detected.get("csv"),
                "sha256": digest,
            },
        )
        runner.log("ingest", f"{rows:,} rows x {len(found['columns'])} columns -> {args.out}")

    runner.run("ingest", body, args.params)


if __name__ == "__main__":
    main()
