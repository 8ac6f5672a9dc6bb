"""Propose a dataset schema from data, for a person to review (``edgeops schema infer``).

The proposal passes on the data it was made from, as ``ingest`` stores it:

- every column is typed: numbers ``numeric`` (the range widened by ``margin`` of the span; a
  column that never goes negative stays non-negative), text and the target ``categorical`` (the
  values seen, strings stay strings, whole numbers stay ints), datetimes ``timestamp`` (kept and
  checked, never a feature);
- columns that cannot be features go under ``drop`` with a comment saying why, instead of
  failing: identifiers (a different value in every row, or named like ``id``, ``*_id``, ``nr``,
  ``nummer``), free text (more than ``max_categories`` distinct values), empty columns.
  ``ingest`` leaves them out of the snapshot;
- a binary target gets ``positive_class``: the class named like the event (1, true, yes, ja,
  failure, defect, Fehler, Ausfall, ...), else the minority class;
- ``min_rows`` is half the rows seen, at least what a stratified split can work with
  (:func:`edgeops.stages.split.workable_rows`), never more than the rows seen. Fewer rows than
  that stop with one message saying how many rows are needed.

>>> p = propose(df, "Ausfall", source="plant.csv")
>>> print(p.to_yaml())
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.schema import CATEGORICAL, NUMERIC, TIMESTAMP, Column, Schema

if TYPE_CHECKING:
    import pandas as pd

#: values of a binary target that name the event a model is for (case-insensitive)
POSITIVE_WORDS = (
    "1",
    "true",
    "yes",
    "ja",
    "oui",
    "si",
    "sì",
    "failure",
    "fail",
    "defect",
    "fehler",
    "ausfall",
    "positive",
)
#: names of identifier columns: id, order_id, OrderID, Auftrag Nr, Seriennummer, uuid ...
_ID_NAME = re.compile(
    r"(?:^|[_\s.\-#])(?:id|nr|no|nummer|number|uuid|guid)$|^(?:id|nr|uuid|guid|index)(?:[_\s.\-]|$)"
    r"|nummer$|^unnamed: \d+$",
    re.IGNORECASE,
)
_CAMEL_ID = re.compile(r"[a-z0-9](?:ID|Id)$")
_NUMBERISH = re.compile(r"\s*[+-]?(?:\d+(?:[.,']\d+)*)\s*")
#: a unique value in every row says "identifier" only from this many rows on
_MIN_ROWS_FOR_UNIQUE = 10


@dataclass(frozen=True)
class Proposal:
    """A proposed schema and why it looks as it does."""

    schema: Schema
    rows: int
    dropped: dict[str, str]  # column -> why it is not a feature
    positive_reason: str | None
    min_rows_reason: str
    model_name: str
    notes: tuple[str, ...] = ()

    def to_yaml(self, header: str | None = None, comment_col: int = 27) -> str:
        """The ``validate.schema`` mapping as YAML, with comments saying why (PyYAML quoting,
        so that ``yes``/``no``/``007`` stay strings when params.yaml is read)."""
        s = self.schema
        lines = [f"# {line}" if line else "#" for line in (header or "").splitlines()]
        lines.append(f"target: {_scalar(s.target)}")
        if s.positive_class is not None:
            line = f"positive_class: {_scalar(s.positive_class)}"
            lines.append(_commented(line, self.positive_reason, comment_col))
        lines.append(_commented(f"min_rows: {s.min_rows}", self.min_rows_reason, comment_col))
        if not s.drop:
            lines.append(_commented("drop: []", "in the data, never features", comment_col))
        else:
            lines.append(_commented("drop:", "never features: ingest leaves them out", comment_col))
            for name in s.drop:
                line = f"  - {_scalar(name)}"
                lines.append(_commented(line, self.dropped.get(name), comment_col))
        lines.append("columns:")
        for col in s.columns:
            lines.append("  - " + _flow(col.to_dict()).replace("\n", "\n    "))
        return "\n".join(lines) + "\n"

    def summary(self) -> list[str]:
        """What was detected and proposed, one line each (the command prints them on stderr)."""
        s = self.schema
        out = [f"drop {name!r}: {why}" for name, why in self.dropped.items()]
        if s.positive_class is not None:
            out.append(f"positive_class {s.positive_class!r}: {self.positive_reason}")
        elif len(s.classes) > 2:
            out.append(f"target {s.target!r}: {len(s.classes)} classes (no positive_class)")
        stamps = [c.name for c in s.columns if c.type == TIMESTAMP]
        if stamps:
            out.append(
                f"timestamps are not features: {stamps} (checked for type and nulls; "
                "split.time_column may name one)"
            )
        out.append(f"min_rows {s.min_rows:,}: {self.min_rows_reason}")
        out += list(self.notes)
        out.append(f"bundle.model_name: {self.model_name}")
        return out


def infer_schema(
    df: pd.DataFrame, target: str, margin: float = 0.1, max_categories: int = 50
) -> Schema:
    """Propose a schema from a DataFrame, for a person to review (see :func:`propose`)."""
    return propose(df, target, margin=margin, max_categories=max_categories).schema


def propose(
    df: pd.DataFrame,
    target: str,
    *,
    source: str | None = None,
    drop: tuple[str, ...] | list[str] = (),
    id_columns: tuple[str, ...] | list[str] = (),
    margin: float = 0.1,
    max_categories: int = 50,
    test_size: float = 0.2,
) -> Proposal:
    """Propose a schema for ``df`` with label column ``target`` (see the module docstring).

    ``source`` (a file stem or table name) goes into the proposed ``bundle.model_name``;
    ``drop`` and ``id_columns`` are dropped on request.
    """
    from edgeops.stages.split import rows_per_class, workable_rows

    if target not in df.columns:
        raise EdgeopsError(
            f"target column {target!r} is not in the data (columns: {list(df.columns)})",
            fix="pass --target with one of those columns",
        )
    for flag, names in (("--drop", drop), ("--id-columns", id_columns)):
        for name in names:
            if name == target:
                raise EdgeopsError(f"{flag} {name!r} is the target", fix=f"remove it from {flag}")
            if name not in df.columns:
                raise EdgeopsError(
                    f"{flag} {name!r} is not a column of the data (columns: {list(df.columns)})",
                    fix="check the spelling (names are case-sensitive)",
                )
    target_col = _target_column(df[target], target, max_categories, test_size)
    columns: list[Column] = []
    dropped: dict[str, str] = {}
    notes: list[str] = []
    for name in df.columns:
        if name == target:
            columns.append(target_col)
            continue
        s = df[name]
        why = _why_drop(str(name), s, drop, id_columns, max_categories)
        if why:
            dropped[str(name)] = why
            continue
        col = _column(str(name), s, margin)
        columns.append(col)
        notes += _notes(col, s)
    if not any(c.name != target and c.type != TIMESTAMP for c in columns):
        raise EdgeopsError(
            f"no feature columns left: {', '.join(f'{k!r} ({v})' for k, v in dropped.items())}",
            fix="keep at least one measurement or category column (check --drop/--id-columns)",
        )
    n = len(df)
    classes = list(target_col.categories or ())
    workable = workable_rows(len(classes), test_size)
    min_rows = min(n, max(workable, n // 2))
    min_rows_reason = (
        f"half the {n:,} rows seen, at least {workable:,} ({rows_per_class(test_size)} per class "
        f"at split.test_size {test_size:g})"
    )
    positive, positive_reason = propose_positive_class(df[target], classes)
    schema = Schema(
        target=target,
        columns=tuple(columns),
        min_rows=min_rows,
        drop=tuple(dropped),
        positive_class=positive,
    )
    return Proposal(
        schema=schema,
        rows=n,
        dropped=dropped,
        positive_reason=positive_reason,
        min_rows_reason=min_rows_reason,
        model_name=model_slug(source, target),
        notes=tuple(notes),
    )


def propose_positive_class(y: pd.Series, classes: list[Any]) -> tuple[Any, str | None]:
    """(the positive class, why) for a binary target; (None, None) for more classes."""
    if len(classes) != 2:
        return None, None
    norms = [_norm(c) for c in classes]
    hits = [
        c
        for c, n, other in zip(classes, norms, reversed(norms), strict=True)
        if n in POSITIVE_WORDS and (n != "1" or other == "0")
    ]
    if len(hits) == 1:
        return hits[0], f"{hits[0]!r} names the event (F1, PR AUC and P(...) are about it)"
    counts = {c: int((y.astype(str) == str(c)).sum()) for c in classes}
    if counts[classes[0]] == counts[classes[1]]:
        return classes[1], "both classes are as frequent: the second in sorted order"
    minority = min(classes, key=lambda c: counts[c])
    share = counts[minority] / max(1, len(y))
    return minority, f"the minority class ({share:.0%} of rows): check it is the event"


def model_slug(source: str | None, target: str) -> str:
    """``<source>-<target>`` as a model name: lowercase ``[a-z0-9-]``, at most 64 characters."""
    text = "-".join(p for p in (source, target) if p)
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(umlaut, plain).replace(umlaut.upper(), plain.capitalize())
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_).strip("-")[:64].strip("-")
    return slug or "model"


# --- columns -------------------------------------------------------------------------------------


def _target_column(y: pd.Series, target: str, max_categories: int, test_size: float) -> Column:
    import pandas as pd

    from edgeops.stages.split import check_workable

    missing = int(y.isna().sum())
    if missing:
        raise EdgeopsError(
            f"the target {target!r} is empty in {missing:,} of {len(y):,} rows: training and "
            "validation need a label in every row",
            fix="leave the unlabelled rows out of the export (or the query), or choose another "
            "--target",
        )
    if pd.api.types.is_datetime64_any_dtype(y):
        raise EdgeopsError(f"the target {target!r} holds timestamps", fix="choose a label column")
    values = y.unique().tolist()
    if pd.api.types.is_float_dtype(y):
        if not all(float(v).is_integer() for v in values):
            raise EdgeopsError(
                f"the target {target!r} holds measurements (e.g. {values[0]!r}): edgeops trains "
                "classifiers",
                fix="choose a label column with a few classes, or bin the values into classes",
            )
        values = [int(v) for v in values]
    if len(values) > max_categories:
        raise EdgeopsError(
            f"the target {target!r} has {len(values):,} distinct values: too many classes "
            f"(more than {max_categories})",
            fix="choose a label column with a few classes (or raise --max-categories)",
        )
    check_workable(y, test_size, target)
    return Column(target, CATEGORICAL, categories=tuple(_sorted(_plain(v) for v in values)))


def _why_drop(
    name: str, s: pd.Series, drop: Any, id_columns: Any, max_categories: int
) -> str | None:
    """Why ``s`` cannot be a feature (it goes under ``drop``), or None."""
    import pandas as pd

    if name in id_columns:
        return "an ID column (--id-columns)"
    if name in drop:
        return "listed with --drop"
    values = s.dropna()
    if values.empty:
        return "empty in every row"
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return (
            "timestamps with a time zone: validate checks local times without one "
            "(convert the column, then list it as a timestamp)"
        )
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_bool_dtype(s):
        return None
    n, distinct = len(values), int(values.nunique())
    numeric = pd.api.types.is_numeric_dtype(s)
    whole = numeric and (pd.api.types.is_integer_dtype(s) or bool((values == values.round()).all()))
    if numeric and not whole:
        return None
    named = _named_like_id(name)
    if named and distinct > n / 2:
        return f"ID-like: named like an identifier, {distinct:,} distinct values in {n:,} rows"
    unique = distinct == n and n >= _MIN_ROWS_FOR_UNIQUE
    if unique and pd.api.types.is_integer_dtype(s):  # whole floats are measurements here
        ordered = values.is_monotonic_increasing or values.is_monotonic_decreasing
        if ordered or values.max() - values.min() + 1 == n:
            return "ID-like: a different whole number in every row, counting up"
        return None
    if numeric:
        return None
    texts = values.astype(str)
    words = texts.str.contains(r"\s", regex=True).mean() >= 0.5
    if unique and not words:
        return "ID-like: a different value in every row"
    if distinct <= max_categories:
        return "free text: a different text in every row" if unique else None
    numberish = texts.str.fullmatch(_NUMBERISH.pattern)
    if numberish.mean() >= 0.9:
        others = sorted(set(texts[~numberish]))[:3]
        return (
            f"text: numbers, but also {others} in {int((~numberish).sum()):,} rows; export "
            "missing readings as empty cells to use it as a number"
        )
    return f"free text: {distinct:,} distinct values (more than {max_categories} for a category)"


def _column(name: str, s: pd.Series, margin: float) -> Column:
    import pandas as pd

    null_share = float(s.isna().mean())
    allowed_null = 0.0 if null_share == 0 else min(1.0, round(null_share * 1.5 + 0.01, 3))
    if pd.api.types.is_datetime64_any_dtype(s):
        return Column(name, TIMESTAMP, max_null_share=allowed_null)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        lo, hi = float(s.min()), float(s.max())
        pad = (hi - lo) * margin if hi > lo else abs(hi) * margin or 1.0
        low = lo - pad if lo < 0 or lo - pad >= 0 else 0.0  # a non-negative column stays so
        low, high = _round(low, lo, down=True), _round(hi + pad, hi, down=False)
        return Column(name, NUMERIC, low, high, None, allowed_null)
    values = _sorted(_plain(v) for v in s.dropna().unique().tolist())
    return Column(name, CATEGORICAL, None, None, tuple(values), allowed_null)


def _notes(col: Column, s: pd.Series) -> list[str]:
    out = []
    if col.type != TIMESTAMP and s.nunique(dropna=True) == 1:
        value = _plain(s.dropna().iloc[0])
        out.append(f"{col.name!r} holds one value only ({value!r}): no use as a feature, kept")
    if col.type == NUMERIC and _named_like_id(col.name):
        out.append(
            f"{col.name!r} is named like an identifier but repeats: kept as a number "
            "(--drop it, or --id-columns, if it only names things)"
        )
    return out


def _named_like_id(name: str) -> bool:
    return bool(_ID_NAME.search(name.strip(" .:")) or _CAMEL_ID.search(name))


# --- helpers -------------------------------------------------------------------------------------


def _round(value: float, seen: float, down: bool) -> float:
    """``value`` to 6 significant digits, never past ``seen`` (the data must stay inside)."""
    r = float(f"{value:.6g}")
    if (down and r > seen) or (not down and r < seen):
        return seen
    return r if math.isfinite(r) else value


def _norm(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip().lower()


def _sorted(values: Any) -> list[Any]:
    return sorted(values, key=lambda v: (str(type(v)), v))


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars, so the schema dumps as clean YAML."""
    return v.item() if hasattr(v, "item") else v


def _scalar(v: Any) -> str:
    import yaml

    text = yaml.safe_dump([v], default_flow_style=True, allow_unicode=True, width=1 << 20)
    return text.strip()[1:-1]


def _flow(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(
        d, default_flow_style=True, allow_unicode=True, sort_keys=False, width=96
    ).strip()


def _commented(line: str, comment: str | None, col: int) -> str:
    if not comment:
        return line
    return f"{line.ljust(col - 1)} # {comment}"
