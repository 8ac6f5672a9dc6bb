"""Turning a dataset into model inputs exactly as the device will see them.

Numeric features become float32 (the ONNX inputs are float32, so scikit-learn trains on the same
values the device feeds), categorical features become strings with "" for missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.schema import MISSING_CATEGORY, Schema

if TYPE_CHECKING:
    import pandas as pd


def category_str(value: Any) -> str:
    """A category as the string the model sees: 3.0 and 3 both become "3"; missing becomes ""."""
    if value is None:
        return MISSING_CATEGORY
    if isinstance(value, float):
        if value != value:  # NaN
            return MISSING_CATEGORY
        if value.is_integer():
            return str(int(value))
    if hasattr(value, "item"):  # numpy scalar
        return category_str(value.item())
    return str(value)


def feature_frame(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The feature columns of ``df`` in schema order, typed for training and for ONNX.

    The columns are named by the model's input names (``schema.input_names``): a column
    ``od280/od315`` becomes ``od280_od315``, which is what the scikit-learn pipeline is fitted on
    and what the ONNX graph's inputs are called.
    """
    import numpy as np
    import pandas as pd

    missing = [c.name for c in schema.features if c.name not in df.columns]
    if missing:
        raise EdgeopsError(
            f"data lacks feature columns {missing}", fix="re-run validate on this data"
        )
    out = {}
    names = schema.input_names
    numeric = set(schema.numeric_features)
    for col in schema.features:
        s = df[col.name]
        if col.name in numeric:
            try:
                out[names[col.name]] = pd.to_numeric(s, errors="raise").astype(np.float32)
            except (ValueError, TypeError) as exc:
                raise EdgeopsError(
                    f"column {col.name!r} should be numeric but holds text: {exc}",
                    fix="clean the column, or declare it categorical in the schema",
                ) from exc
        else:
            out[names[col.name]] = category_strings(s)
    return pd.DataFrame(out, index=df.index)


def category_strings(s: pd.Series) -> pd.Series:
    """``category_str`` of every value, computed once per distinct value (a column of millions
    of rows holds a handful of categories). Missing values (None, NaN, pd.NA, NaT) become ""."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if s.dtype == object and len({type(u) for u in uniques}) > 1:
        # mixed types: factorize takes True for 1 and 1.0 for 1; keep each value's own string
        return s.map(lambda v: MISSING_CATEGORY if _missing(v) else category_str(v)).astype(object)
    table = np.array([category_str(u) for u in uniques] + [MISSING_CATEGORY], dtype=object)
    return pd.Series(table[codes], index=s.index, dtype=object)


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def target_series(df: pd.DataFrame, schema: Schema) -> pd.Series:
    """The label column, with a clear error when it is missing or has gaps."""
    if schema.target not in df.columns:
        raise EdgeopsError(
            f"data lacks the target column {schema.target!r}", fix="check the schema"
        )
    y = df[schema.target]
    if y.isna().any():
        raise EdgeopsError(
            f"target {schema.target!r} has {int(y.isna().sum())} missing labels",
            fix="drop unlabeled rows at the source",
        )
    return y
