"""Stage ``split``: a deterministic train/test split, stratified by the target or cut by time.

With ``split.time_column`` set, rows are ordered by that column and the latest ``test_size``
share becomes the test set (no peeking into the future); otherwise the split is stratified by the
target with a fixed seed.

Labelled production rows (appended by ``ingest``, listed in ``data/raw/production.parquet``) are
placed by a hash of their request key instead: a row's side never changes as more production rows
arrive, and the source's rows are split exactly as before. So the champion was never trained on
any row of the new test split, the challenger was not either, and the test split holds the new
conditions in the same share as the training split: the gate compares the two fairly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.params import load_params, section
from edgeops.schema import Schema, schema_from_params
from edgeops.stages import runner

if TYPE_CHECKING:
    import pandas as pd


def split(
    df: pd.DataFrame, schema: Schema, test_size: float = 0.2, seed: int = 42,
    time_column: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Return ``(train, test)``; the same inputs always give the same rows."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise EdgeopsError(f"split.test_size must be between 0 and 1, got {test_size}")
    if time_column:
        if time_column not in df.columns:
            raise EdgeopsError(
                f"split.time_column {time_column!r} is not a column of the data",
                fix="name a timestamp column, or set split.time_column: null",
            )
        ordered = df.sort_values(time_column, kind="stable")
        cut = int(round(len(ordered) * (1.0 - test_size)))
        train, test = ordered.iloc[:cut], ordered.iloc[cut:]
        if train[schema.target].nunique() < 2:
            raise EdgeopsError(
                "the time split leaves fewer than 2 classes in the training set",
                fix="lower split.test_size or use the stratified split",
            )
        return train.reset_index(drop=True), test.reset_index(drop=True)

    y = df[schema.target]
    counts = y.value_counts()
    rare = counts[counts < 2]
    if not rare.empty:
        raise EdgeopsError(
            f"classes {rare.index.tolist()} of {schema.target!r} have fewer than 2 rows; "
            "a stratified split needs at least 2 per class",
            fix="collect more rows of those classes, or drop them from the schema's categories",
        )
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=y)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def hash_side(keys: list[str], test_size: float) -> list[bool]:
    """True for the keys that belong to the test split: a stable hash, the same on every run."""
    import hashlib

    cut = int(test_size * 2**32)
    return [int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "big") < cut for k in keys]


def split_with_production(
    df: pd.DataFrame, keys: pd.DataFrame, schema: Schema, test_size: float, seed: int,
    time_column: str | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The source's rows split as always; the last ``len(keys)`` rows (production) by key hash."""
    import pandas as pd

    n = len(keys)
    if n > len(df):
        raise EdgeopsError(
            f"{n} production keys but only {len(df)} rows: the ingest outputs disagree",
            fix="run `dvc repro ingest --force`",
        )
    source, prod = df.iloc[: len(df) - n], df.iloc[len(df) - n :]
    train, test = split(source, schema, test_size, seed, time_column)
    if n == 0:
        return train, test
    side = pd.Series(hash_side(keys["key"].astype(str).tolist(), test_size), index=prod.index)
    return (
        pd.concat([train, prod[~side]], ignore_index=True),
        pd.concat([test, prod[side]], ignore_index=True),
    )


def main() -> None:
    p = runner.parser("split", __doc__)
    p.add_argument("--data", default="data/raw/dataset.parquet")
    p.add_argument("--production-keys", default="data/raw/production.parquet")
    p.add_argument("--out-dir", default="data/prepared")
    args = p.parse_args()

    def body() -> None:
        import pandas as pd

        params = load_params(args.params)
        cfg: dict[str, Any] = section(params, "split")
        schema = schema_from_params(params)
        df = pd.read_parquet(args.data)
        keys_path = Path(args.production_keys)
        keys = pd.read_parquet(keys_path) if keys_path.is_file() else pd.DataFrame({"key": []})
        train, test = split_with_production(
            df, keys, schema, float(cfg.get("test_size", 0.2)), int(cfg.get("seed", 42)),
            cfg.get("time_column"),
        )  # fmt: skip
        out = Path(args.out_dir)
        for name, part in (("train", train), ("test", test)):
            with atomic.atomic_path(out / f"{name}.parquet") as tmp:
                part.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
        prod = f" (production rows: {len(keys):,}, placed by key hash)" if len(keys) else ""
        runner.log("split", f"train {len(train):,} rows, test {len(test):,} rows{prod} -> {out}/")

    runner.run("split", body)


if __name__ == "__main__":
    main()
