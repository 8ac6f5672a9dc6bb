"""Stage ``ingest``: read the configured source into ``data/raw/`` as Parquet.

The output is a pure function of the source's content: reading the same rows again writes the
same bytes, so DVC re-runs the stages downstream only when the data really changed. Columns the
schema lists under ``drop`` (and not under ``columns``) are left out of the snapshot: free text
and identifiers are never stored. How CSV files were written (encoding, separator, decimal
mark, dates) is logged and recorded under ``csv`` in ``reports/ingest.json``.
"""

from __future__ import annotations

import hashlib
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
    with atomic.atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return digest


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
        from edgeops.sources.csv import describe_dialect
        from edgeops.sources.production import add_production

        params = load_params(args.params)
        cfg = section(params, "ingest")
        schema = schema_from_params(params)
        runner.log("ingest", f"reading source {cfg.get('source', 'simulator')!r}")
        df, detected = read(cfg)
        if detected.get("csv"):
            runner.log("ingest", f"csv: {describe_dialect(detected['csv'])}")
        df, dropped = drop_columns(df, schema)
        if dropped:
            runner.log("ingest", f"dropped {dropped} (validate.schema.drop): not stored")
        n_source = len(df)
        df, keys = add_production(df, cfg.get("production") or {}, schema)
        if len(keys):
            runner.log(
                "ingest",
                f"+ {len(keys):,} labelled production rows from {cfg['production'].get('path')}",
            )
        write_parquet(keys, args.production_keys)
        digest = write_parquet(df, args.out)
        atomic.write_json(
            args.report,
            {
                "source": cfg.get("source", "simulator"),
                "rows": len(df),
                "source_rows": n_source,
                "production_rows": len(keys),
                "columns": list(df.columns),
                "dropped": dropped,
                "csv": detected.get("csv"),
                "sha256": digest,
            },
        )
        runner.log("ingest", f"{len(df):,} rows x {df.shape[1]} columns -> {args.out}")

    runner.run("ingest", body, args.params)


if __name__ == "__main__":
    main()
