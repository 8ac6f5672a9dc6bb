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
    args = p.parse_args()

    def body() -> None:
        cfg = section(load_params(args.params), "ingest")
        runner.log("ingest", f"reading source {cfg.get('source', 'simulator')!r}")
        df = ingest(cfg)
        digest = write_parquet(df, args.out)
        atomic.write_json(
            args.report,
            {
                "source": cfg.get("source", "simulator"),
                "rows": len(df),
                "columns": list(df.columns),
                "sha256": digest,
            },
        )
        runner.log("ingest", f"{len(df):,} rows x {df.shape[1]} columns -> {args.out}")

    runner.run("ingest", body)


if __name__ == "__main__":
    main()
