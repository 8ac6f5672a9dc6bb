"""Stage ``split``: a deterministic train/test split, stratified by the target or cut by time.

With ``split.time_column`` set, rows are ordered by that column and the latest ``test_size``
share becomes the test set (no peeking into the future); otherwise the split is stratified by the
target with a fixed seed.

Labelled production rows (appended by ``ingest``, listed in ``data/raw/production.parquet``) are
placed by a hash of their request key instead: a row's side never changes as more production rows
arrive, and the source's rows are split exactly as before. The held-out production rows go to a
file of their own, ``test_production.parquet``, never into ``test.parquet``: the test split is the
fixed, versioned holdout of the source's rows, which no label from the field can move (a
device's labels can lie): the gate's baseline and floors are judged on it alone; its champion
comparison judges the production test rows too (``deploy/gate.py``). Neither model was trained
on any held-out row.

The training split says which of its rows came from production: they are its last rows, and its
Parquet footer records how many (:data:`PRODUCTION_ROWS_KEY`, read by :func:`production_rows`).
The record travels with the file (DVC caches it by its md5, the bundle names that md5), so the
drift reference of any deployed version knows its regimes (see monitor/reference.py).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.params import load_params, section
from edgeops.parquet_sample import rows_and_columns
from edgeops.schema import Schema, schema_from_params
from edgeops.stages import runner

if TYPE_CHECKING:
    import pandas as pd

#: rows of each class that training and test must each get, at the least
MIN_PER_SIDE = 2
#: above this many rows the sides are decided from the target (or time) column alone and the rows
#: copied a row group at a time (:func:`sides_of`, :func:`write_sides`): memory grows with one
#: column, not with the frame. The same rows go to each side; they keep the file's order.
STREAM_ROWS = 5_000_000


def rows_per_class(test_size: float) -> int:
    """Rows a class needs so that a stratified split gives both sides at least 2 of it.

    >>> rows_per_class(0.2)     # 2 of 10 go to test, 8 to training
    10
    """
    side = min(test_size, 1.0 - test_size)
    return max(2 * MIN_PER_SIDE, math.ceil(MIN_PER_SIDE / side - 1e-9))


def workable_rows(n_classes: int, test_size: float) -> int:
    """The fewest rows a stratified split can work with: :func:`rows_per_class` of each class."""
    return n_classes * rows_per_class(test_size)


def check_workable(y: pd.Series, test_size: float = 0.2, target: str | None = None) -> None:
    """Raise one clear error when ``y`` (the target column) is too small to split and learn from.

    Every class present needs :func:`rows_per_class` rows (10 at ``test_size`` 0.2); the message
    names the short classes and the rows needed in all.
    """
    name = target or str(y.name)
    counts = y.value_counts(dropna=True)
    if len(counts) < 2:
        what = "no values" if counts.empty else f"one class only ({counts.index.tolist()[0]!r})"
        raise EdgeopsError(
            f"the target {name!r} has {what} in {len(y):,} rows: a classifier needs at least "
            "2 classes",
            fix="collect rows of the other classes too, or choose another target column",
        )
    need = rows_per_class(test_size)
    short = counts[counts < need]
    if short.empty:
        return
    total = sum(max(int(c), need) for c in counts)
    fewer = MIN_PER_SIDE if (short < MIN_PER_SIDE).all() else need
    detail = ", ".join(f"{k!r}: {int(v)}" for k, v in zip(short.index.tolist(), short, strict=True))
    raise EdgeopsError(
        f"too few rows to train and test: at split.test_size {test_size:g} every class of "
        f"{name!r} needs at least {need} rows (so that training and test get at least "
        f"{MIN_PER_SIDE} each), but classes {short.index.tolist()} of {name!r} have fewer than "
        f"{fewer} rows ({detail}). That needs at least {total:,} rows in all ({len(y):,} now)",
        fix=f"collect more rows (at least {total:,}, {need} or more of each class), or merge "
        "rare classes into others or remove them",
    )


def split(
    df: pd.DataFrame,
    schema: Schema,
    test_size: float = 0.2,
    seed: int = 42,
    time_column: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(train, test)``; the same inputs always give the same rows."""
    _check_how(test_size, time_column, df.columns)
    times = df[time_column] if time_column else None
    train, test = _sides(df[schema.target], times, test_size, seed, time_column)
    return df.iloc[train].reset_index(drop=True), df.iloc[test].reset_index(drop=True)


def _check_how(test_size: float, time_column: str | None, columns: Any) -> None:
    if not 0.0 < test_size < 1.0:
        raise EdgeopsError(f"split.test_size must be between 0 and 1, got {test_size}")
    if time_column and time_column not in columns:
        raise EdgeopsError(
            f"split.time_column {time_column!r} is not a column of the data",
            fix="name a timestamp column, or set split.time_column: null",
        )


def _sides(
    y: pd.Series, times: pd.Series | None, test_size: float, seed: int, time_column: str | None
) -> tuple[Any, Any]:
    """Positions of the training and of the test rows, in the order each side gets them: the
    latest ``test_size`` share by ``times`` (a stable sort, missing times last), else stratified
    by ``y`` with ``seed`` (a permutation of positions: no other column is looked at)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    check_workable(y, test_size, str(y.name))
    if times is None:
        rows = np.arange(len(y))
        return tuple(train_test_split(rows, test_size=test_size, random_state=seed, stratify=y))
    order = times.reset_index(drop=True).sort_values(kind="stable").index.to_numpy()
    cut = int(round(len(order) * (1.0 - test_size)))
    train, test = order[:cut], order[cut:]
    _check_time_sides(y, y.iloc[train], y.iloc[test], str(time_column), test_size)
    return train, test


def _check_time_sides(
    y: pd.Series, train: pd.Series, test: pd.Series, time_column: str, test_size: float
) -> None:
    """Both sides of a time split must hold every class (else training or scoring is blind)."""
    classes = y.value_counts().index.tolist()
    where = f"the time split on {time_column!r} (the latest {test_size:.0%} of rows as test)"
    fix = (
        "change split.test_size, collect rows of every class in both periods, or use the "
        "stratified split (split.time_column: null)"
    )
    if train.nunique() < 2:
        raise EdgeopsError(
            f"{where} leaves fewer than 2 classes in the training set "
            f"(it holds only {sorted(set(train.dropna()), key=str)})",
            fix=fix,
        )
    for side, part in (("training", train), ("test", test)):
        present = set(part)
        missing = [c for c in classes if c not in present]
        if missing:
            raise EdgeopsError(
                f"{where} leaves classes {missing} of {y.name!r} out of the {side} set", fix=fix
            )


def hash_side(keys: list[str], test_size: float) -> list[bool]:
    """True for the keys that belong to the test split: a stable hash, the same on every run."""
    import hashlib

    cut = int(test_size * 2**32)
    return [int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "big") < cut for k in keys]


#: the key in the training split's Parquet metadata: how many of its last rows are production rows
PRODUCTION_ROWS_KEY = b"edgeops.production_rows"


def production_rows(path: str | Path) -> int | None:
    """How many of the last rows of the training split at ``path`` are labelled production rows,
    as ``split`` recorded it (None: a split written before it kept the record)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        value = (pf.schema_arrow.metadata or {}).get(PRODUCTION_ROWS_KEY)
    return None if value is None else int(value)


def _with_production_rows(schema: Any, rows: int) -> Any:
    """An Arrow schema whose metadata records ``rows`` production rows."""
    return schema.with_metadata(
        {**(schema.metadata or {}), PRODUCTION_ROWS_KEY: str(rows).encode()}
    )


def write_part(part: pd.DataFrame, path: Path, production: int | None = None) -> None:
    """One side of the split as Parquet (as ``DataFrame.to_parquet`` writes it), the training
    side with its count of production rows in the footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(part, preserve_index=False)
    if production is not None:
        table = table.replace_schema_metadata(
            _with_production_rows(table.schema, production).metadata
        )
    pq.write_table(table, path, compression="zstd")


#: the side of each row in the streamed split (:func:`sides_of`)
TRAIN, TEST, PRODUCTION_TEST = 0, 1, 2
#: the files of each side, in that order
SIDE_FILES = ("train.parquet", "test.parquet", "test_production.parquet")


def split_with_production(
    df: pd.DataFrame,
    keys: pd.DataFrame,
    schema: Schema,
    test_size: float,
    seed: int,
    time_column: str | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(train, test, production test)``: the source's rows split as always (``test`` is the
    holdout of source rows only); the last ``len(keys)`` rows (production) by key hash, the
    held-out ones to ``production test``."""
    import pandas as pd

    n = len(keys)
    _check_keys(n, len(df))
    source, prod = df.iloc[: len(df) - n], df.iloc[len(df) - n :]
    train, test = split(source, schema, test_size, seed, time_column)
    if n == 0:
        return train, test, df.iloc[0:0].reset_index(drop=True)
    side = pd.Series(hash_side(keys["key"].astype(str).tolist(), test_size), index=prod.index)
    return (
        pd.concat([train, prod[~side]], ignore_index=True),
        test,
        prod[side].reset_index(drop=True),
    )


def _check_keys(keys: int, rows: int) -> None:
    if keys > rows:
        raise EdgeopsError(
            f"{keys} production keys but only {rows} rows: the ingest outputs disagree",
            fix="run `dvc repro ingest --force`",
        )


def sides_of(
    path: str | Path,
    keys: pd.DataFrame,
    schema: Schema,
    test_size: float,
    seed: int,
    time_column: str | None,
) -> Any:
    """The side each row of the Parquet file at ``path`` goes to in
    :func:`split_with_production` (:data:`TRAIN`, :data:`TEST` or :data:`PRODUCTION_TEST`; an
    int8 array in file order), read from the target (and time) column only.

    The stratified split permutes row positions, never looks at the other columns: the same
    seed picks the same rows as from the whole frame."""
    import numpy as np
    import pyarrow.parquet as pq

    n_all, names = rows_and_columns(path)
    _check_how(test_size, time_column, names)
    n_prod = len(keys)
    _check_keys(n_prod, n_all)
    n = n_all - n_prod
    columns = [schema.target] + ([time_column] if time_column else [])
    cols = pq.read_table(path, columns=columns).to_pandas().iloc[:n]
    times = cols[time_column] if time_column else None
    sides = np.full(n_all, TRAIN, dtype=np.int8)
    sides[_sides(cols[schema.target], times, test_size, seed, time_column)[1]] = TEST
    if n_prod:
        held = np.asarray(hash_side(keys["key"].astype(str).tolist(), test_size), dtype=bool)
        sides[n:][held] = PRODUCTION_TEST
    return sides


def write_sides(
    path: str | Path, sides: Any, out: Path, production_keys: int = 0
) -> tuple[int, int, int]:
    """Copy the rows of ``path`` to ``out``'s :data:`SIDE_FILES` by their ``sides``, a row
    group at a time, all atomically; return the rows of each. The last ``production_keys`` rows
    of ``path`` are production rows: the training file records how many of them it got."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tail = sides[len(sides) - production_keys :] if production_keys else sides[:0]
    production = int((tail == TRAIN).sum())
    done = 0
    with contextlib.ExitStack() as stack:
        file = stack.enter_context(pq.ParquetFile(path))
        writers = []
        for name in SIDE_FILES:
            tmp = stack.enter_context(atomic.atomic_path(out / name))
            schema = file.schema_arrow
            if name == SIDE_FILES[0]:
                schema = _with_production_rows(schema, production)
            writers.append(stack.enter_context(pq.ParquetWriter(tmp, schema, compression="zstd")))
        for batch in file.iter_batches(batch_size=1 << 20):
            chunk = sides[done : done + batch.num_rows]
            for code, writer in enumerate(writers):
                writer.write_batch(batch.filter(pa.array(chunk == code)))
            done += batch.num_rows
    counts = [int((sides == code).sum()) for code in range(len(SIDE_FILES))]
    return counts[0], counts[1], counts[2]


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
        keys_path = Path(args.production_keys)
        keys = pd.read_parquet(keys_path) if keys_path.is_file() else pd.DataFrame({"key": []})
        how = (float(cfg.get("test_size", 0.2)), int(cfg.get("seed", 42)), cfg.get("time_column"))
        out = Path(args.out_dir)
        if rows_and_columns(args.data)[0] > STREAM_ROWS:
            runner.log("split", "large data: sides from the target column, rows copied in chunks")
            n_train, n_test, n_prod = write_sides(
                args.data, sides_of(args.data, keys, schema, *how), out, len(keys)
            )
        else:
            parts = split_with_production(pd.read_parquet(args.data), keys, schema, *how)
            # the production rows that train got are its last rows (split_with_production)
            in_train = len(keys) - len(parts[2])
            for name, part in zip(SIDE_FILES, parts, strict=True):
                with atomic.atomic_path(out / name) as tmp:
                    write_part(part, tmp, in_train if name == SIDE_FILES[0] else None)
            n_train, n_test, n_prod = (len(part) for part in parts)
        prod = (
            f"; production rows: {len(keys):,}, placed by key hash, {n_prod:,} held out "
            f"apart in {SIDE_FILES[2]}"
            if len(keys)
            else ""
        )
        runner.log(
            "split", f"train {n_train:,} rows, test {n_test:,} rows (the holdout){prod} -> {out}/"
        )

    runner.run("split", body, args.params)


if __name__ == "__main__":
    main()
