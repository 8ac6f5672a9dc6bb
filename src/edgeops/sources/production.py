"""What the devices saw: labelled production rows, joined to the source's rows at ingest.

``edgeops monitor`` stores every logged prediction under ``data/production/`` and, as ground
truth arrives, its label. With ``ingest.production.include`` the rows that have a label join the
training data: features as the device received them, the target from the feedback, a timestamp
column (if the schema has one) from the time of the prediction. A request row that reached
several agents or was collected twice counts once (deduplicated by request id and row). A label
from the field is trusted only so far (:mod:`edgeops.sources.field_labels`): a device whose labels
disagree with the model and with the other devices is quarantined until a person releases its
rows, and no device's rows exceed a share of the source's.

The rows are appended after the source's rows, and ``data/raw/production.parquet`` lists their
keys in the same order, so ``split`` can place each by a hash of its key (see stages/split.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.schema import TIMESTAMP, Schema

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.sources.field_labels import LabelTrust

KEY_COLUMNS = ["key", "target", "log", "id", "model_version", "ts"]


def stored_labels(root: str | Path, schema: Schema) -> pd.DataFrame:
    """Every stored row with a label that is one of the schema's classes (what ingest and
    ``edgeops labels`` judge)."""
    from edgeops.monitor.store import ProductionStore

    stored = ProductionStore(root).labelled()
    if stored.empty:
        return stored
    classes = {str(c) for c in schema.classes}
    return stored[stored["_feedback"].astype(str).isin(classes)].reset_index(drop=True)


def labelled_rows(
    root: str | Path,
    source: pd.DataFrame,
    schema: Schema,
    trust: LabelTrust | None = None,
    source_rows: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(rows shaped like ``source``, their keys, what the guards did per target) for the stored
    rows with a known label that ``trust`` lets join (quarantine, cap of ``source_rows``)."""
    import pandas as pd

    from edgeops.sources.field_labels import LabelTrust, judge

    stored = stored_labels(root, schema)
    by_str = {str(c): c for c in schema.classes}
    report: dict[str, Any] = {}
    if not stored.empty:
        keep, report = judge(
            stored, trust or LabelTrust(), len(source) if source_rows is None else source_rows
        )
        stored = stored[keep].reset_index(drop=True)
    if stored.empty:
        return source.iloc[0:0].copy(), pd.DataFrame(columns=KEY_COLUMNS), report
    out = {}
    missing = []
    for col in source.columns:
        if col == schema.target:  # the feedback, also when the client sent a value
            out[col] = stored["_feedback"].astype(str).map(by_str).astype(source[col].dtype)
        elif col in schema.names and schema.column(col).type == TIMESTAMP:
            out[col] = pd.to_datetime(stored["_ts"], unit="s").astype(source[col].dtype)
        elif col in stored.columns:
            out[col] = _like(stored[col], source[col])
        elif any(f.name == col for f in schema.features):
            missing.append(col)
        else:
            out[col] = pd.Series([None] * len(stored), index=stored.index, dtype=source[col].dtype)
    if missing:
        raise EdgeopsError(
            f"the labelled production rows under {root} lack the feature columns {missing}",
            fix="set ingest.production.include: false (or monitor.store to the right folder)",
        )
    rows = pd.DataFrame(out, columns=list(source.columns)).reset_index(drop=True)
    keys = pd.DataFrame(
        {
            "key": stored["_request_id"].astype(str) + ":" + stored["_row"].astype(str),
            "target": stored["_target"],
            "log": stored["_log"],
            "id": stored["_id"],
            "model_version": stored["_model_version"],
            "ts": stored["_ts"],
        }
    ).reset_index(drop=True)
    return rows, keys, report


def _like(values: pd.Series, like: pd.Series) -> pd.Series:
    """Production values in the dtype of the source column (JSON gave floats, ints, text)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(like) and not pd.api.types.is_bool_dtype(like):
        num = pd.to_numeric(values, errors="coerce")
        return num.astype(like.dtype) if like.dtype.kind == "f" or not num.isna().any() else num
    return values.astype(object).where(values.notna(), None)


def add_production(
    source: pd.DataFrame, cfg: dict[str, Any], schema: Schema, source_rows: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``source`` with the labelled production rows appended, the keys of those rows, and what
    the guards did per target (``source_rows``: the source's rows, default ``len(source)``)."""
    import pandas as pd

    from edgeops.sources.field_labels import LabelTrust

    if not cfg.get("include"):
        return source, pd.DataFrame(columns=KEY_COLUMNS), {}
    trust = LabelTrust.from_params(cfg)
    rows, keys, report = labelled_rows(
        cfg.get("path", "data/production"), source, schema, trust, source_rows
    )
    if rows.empty:
        return source, keys, report
    return pd.concat([source, rows], ignore_index=True), keys, report
