"""The dataset schema: the reviewed contract every stage reads.

It lives in ``params.yaml`` under ``validate.schema``. ``validate`` turns it into a Great
Expectations suite; ``split``/``train``/``export`` read the target and the feature columns from it.
``edgeops schema infer PATH`` proposes one from a CSV for a person to review.

    target: failure
    positive_class: 1          # binary targets: the class F1, PR AUC and P(...) are about
    min_rows: 1000
    drop: [record_id]          # present in the data, never a feature (not stored unless a column)
    columns:
      - {name: air_temp_k, type: numeric, min: 290.0, max: 312.0, max_null_share: 0.02}
      - {name: machine_type, type: categorical, categories: [L, M, H]}
      - {name: failure, type: categorical, categories: [0, 1]}
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

NUMERIC = "numeric"
CATEGORICAL = "categorical"
TIMESTAMP = "timestamp"
TYPES = (NUMERIC, CATEGORICAL, TIMESTAMP)
#: what a missing categorical value becomes before encoding (and on the device)
MISSING_CATEGORY = ""
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def input_names(names: list[str]) -> dict[str, str]:
    """Column name -> the model's input name: a plain identifier, unique, stable.

    ONNX, skl2onnx and generated clients handle names such as ``od280/od315`` or
    ``Lufttemperatur K`` badly, so the model's inputs get safe names (``od280_od315``,
    ``Lufttemperatur_K``; umlauts lose their dots, a leading digit gets ``c_``) and the bundle's
    manifest maps them back: clients always send the original column names. A name that is
    already an identifier stays as it is.
    """
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        if _SAFE_NAME.match(name):
            safe = name
        else:
            ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
            safe = re.sub(r"[^A-Za-z0-9_]+", "_", ascii_).strip("_") or "column"
            if safe[0].isdigit():
                safe = "c_" + safe
        base, n = safe, 2
        while safe in taken or (safe != name and safe in names):
            safe, n = f"{base}_{n}", n + 1
        taken.add(safe)
        out[name] = safe
    return out


@dataclass(frozen=True)
class Column:
    """One column of the dataset."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None
    max_null_share: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == NUMERIC:
            out["min"], out["max"] = self.min, self.max
        if self.type == CATEGORICAL:
            out["categories"] = list(self.categories or ())
        out["max_null_share"] = self.max_null_share
        return out


@dataclass(frozen=True)
class Schema:
    """The dataset contract: columns, target, and which columns are features."""

    target: str
    columns: tuple[Column, ...]
    min_rows: int = 100
    drop: tuple[str, ...] = field(default_factory=tuple)
    positive_class: Any = None

    @property
    def positive(self) -> Any:
        """The positive class of a binary target (``positive_class``, else the second class in
        sorted order, as scikit-learn orders them); None for more than two classes."""
        if len(self.classes) != 2:
            return None
        if self.positive_class is not None:
            return self.positive_class
        return sorted(self.classes, key=lambda v: (str(type(v)), v))[1]

    @property
    def input_names(self) -> dict[str, str]:
        """Feature column -> model input name (see :func:`input_names`)."""
        return input_names([c.name for c in self.features])

    @property
    def passthrough(self) -> list[str]:
        """Columns a client may send that are not features: the target, timestamps, dropped
        columns. The device accepts and logs them, and ignores them for the prediction."""
        features = {c.name for c in self.features}
        listed = [c.name for c in self.columns if c.name not in features]
        return listed + [d for d in self.drop if d not in listed]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def features(self) -> list[Column]:
        """Feature columns in schema order: not the target, a timestamp or a dropped column."""
        skip = {self.target, *self.drop}
        return [c for c in self.columns if c.name not in skip and c.type != TIMESTAMP]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.features if c.type == NUMERIC]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.features if c.type == CATEGORICAL]

    @property
    def classes(self) -> list[Any]:
        return list(self.column(self.target).categories or ())

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "min_rows": self.min_rows,
            "drop": list(self.drop),
            "columns": [c.to_dict() for c in self.columns],
        }


def schema_from_dict(raw: Any, where: str = "validate.schema") -> Schema:
    """Build a :class:`Schema` from its params form, with errors that name the field to fix."""
    if not isinstance(raw, dict):
        raise EdgeopsError(f"{where} is missing or not a mapping", fix="run `edgeops schema infer`")
    cols_raw = raw.get("columns")
    if not isinstance(cols_raw, list) or not cols_raw:
        raise EdgeopsError(
            f"{where}.columns must be a non-empty list",
            fix="let edgeops propose the data contract from your data, review it, then apply it: "
            "edgeops schema infer data/external --target COLUMN --apply",
        )
    columns: list[Column] = []
    for i, c in enumerate(cols_raw):
        if not isinstance(c, dict) or "name" not in c:
            raise EdgeopsError(f"{where}.columns[{i}] needs a 'name'", fix="add name: <column>")
        ctype = c.get("type")
        if ctype not in TYPES:
            raise EdgeopsError(
                f"{where}.columns[{i}] ({c['name']}): type {ctype!r} is not one of {TYPES}",
                fix="use numeric, categorical or timestamp",
            )
        cats = c.get("categories")
        if ctype == CATEGORICAL and (not isinstance(cats, list) or not cats):
            raise EdgeopsError(
                f"{where}: categorical column {c['name']!r} has no categories",
                fix="list its allowed values under 'categories'",
            )
        share = _number(c.get("max_null_share"), f"{where}: {c['name']}.max_null_share") or 0.0
        if not 0.0 <= share <= 1.0:
            raise EdgeopsError(f"{where}: {c['name']}.max_null_share must be in [0, 1]")
        columns.append(
            Column(
                name=str(c["name"]),
                type=ctype,
                min=_number(c.get("min"), f"{where}: {c['name']}.min"),
                max=_number(c.get("max"), f"{where}: {c['name']}.max"),
                categories=tuple(cats) if cats else None,
                max_null_share=share,
            )
        )
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EdgeopsError(f"{where}: duplicate columns {dupes}", fix="list each column once")
    target = raw.get("target")
    if target not in names:
        raise EdgeopsError(
            f"{where}.target {target!r} is not one of the columns",
            fix="name the label column under 'target'",
        )
    min_rows = _number(raw.get("min_rows"), f"{where}.min_rows")
    schema = Schema(
        target=target,
        columns=tuple(columns),
        min_rows=100 if min_rows is None else int(min_rows),
        drop=tuple(raw.get("drop") or ()),
    )
    if schema.column(target).type != CATEGORICAL:
        raise EdgeopsError(
            f"{where}: target {target!r} must be categorical (edgeops trains classifiers)",
            fix="set its type to categorical and list the class labels",
        )
    if len(schema.classes) < 2:
        raise EdgeopsError(f"{where}: target {target!r} lists fewer than 2 classes")
    positive = raw.get("positive_class")
    if positive is not None:
        match = [c for c in schema.classes if str(c) == str(positive)]
        if len(schema.classes) != 2 or not match:
            raise EdgeopsError(
                f"{where}.positive_class {positive!r} is not one of the 2 classes {schema.classes}"
                if len(schema.classes) == 2
                else f"{where}.positive_class is set, but {target!r} has {len(schema.classes)} "
                "classes (it is for binary targets only)",
                fix="name one of the target's categories, or remove positive_class",
            )
        schema = dataclasses.replace(schema, positive_class=match[0])
    if not schema.features:
        raise EdgeopsError(f"{where}: no feature columns left", fix="add at least one feature")
    return schema


def _number(value: Any, field_name: str) -> float | None:
    """``value`` as a float (None stays None), or an error naming the field."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EdgeopsError(
            f"{field_name} must be a number, got {value!r}", fix="write a plain number"
        ) from None


def schema_from_params(params: dict[str, Any]) -> Schema:
    """The reviewed schema from a loaded params.yaml (``validate.schema``)."""
    validate = params.get("validate")
    return schema_from_dict(validate.get("schema") if isinstance(validate, dict) else None)


def infer_schema(
    df: pd.DataFrame, target: str, margin: float = 0.1, max_categories: int = 50
) -> Schema:
    """Propose a schema from a DataFrame, for a person to review: see :mod:`edgeops.infer`."""
    from edgeops.infer import infer_schema as infer

    return infer(df, target, margin=margin, max_categories=max_categories)
