"""Stage ``split``: a deterministic train/test split, stratified by the target or cut by time.

With ``split.time_column`` set, rows are ordered by that column and the latest ``test_size``
share becomes the test set (no peeking into the future); otherwise the split is stratified by the
target with a fixed seed.
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


def main() -> None:
    p = runner.parser("split", __doc__)
    p.add_argument("--data", default="data/raw/dataset.parquet")
    p.add_argument("--out-dir", default="data/prepared")
    args = p.parse_args()

    def body() -> None:
        import pandas as pd

        params = load_params(args.params)
        cfg: dict[str, Any] = section(params, "split")
        schema = schema_from_params(params)
        df = pd.read_parquet(args.data)
        train, test = split(
            df, schema, float(cfg.get("test_size", 0.2)), int(cfg.get("seed", 42)),
            cfg.get("time_column"),
        )  # fmt: skip
        out = Path(args.out_dir)
        for name, part in (("train", train), ("test", test)):
            with atomic.atomic_path(out / f"{name}.parquet") as tmp:
                part.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
        runner.log("split", f"train {len(train):,} rows, test {len(test):,} rows -> {out}/")

    runner.run("split", body)


if __name__ == "__main__":
    main()
