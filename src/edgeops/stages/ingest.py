"""Stage ``ingest``: read the configured source into ``data/raw/`` as Parquet.

The output is a pure function of the source's content: reading the same rows again writes the
same bytes, so DVC re-runs the stages downstream only when the data really changed.
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


def ingest(params: dict[str, Any]) -> pd.DataFrame:
    """Load the source named in the ``ingest`` params section and tidy the column names."""
    from edgeops.sources import load_source

    df = load_source(params)
    df.columns = [str(c).strip() for c in df.columns]
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise EdgeopsError(f"the source has duplicate column names {dupes}", fix="rename them")
    return df.reset_index(drop=True)


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
        from edgeops.sources.production import add_production

        params = load_params(args.params)
        cfg = section(params, "ingest")
        runner.log("ingest", f"reading source {cfg.get('source', 'simulator')!r}")
        df = ingest(cfg)
        n_source = len(df)
        df, keys = add_production(df, cfg.get("production") or {}, schema_from_params(params))
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
                "sha256": digest,
            },
        )
        runner.log("ingest", f"{len(df):,} rows x {df.shape[1]} columns -> {args.out}")

    runner.run("ingest", body)


if __name__ == "__main__":
    main()
