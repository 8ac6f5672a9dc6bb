"""Data quality of production rows: the reviewed schema's contract, checked without Great Expectations.

The ``validate`` stage checks training data with Great Expectations (GX); importing GX takes about
8 s, too slow for an hourly monitoring run. :func:`check_contract` applies the same expectations to
a window of production rows (what the edge devices saw) with vectorised pandas, under GX's names
and semantics, so a monitoring failure and a ``validate`` failure mean the same thing:

- ``expect_table_columns_to_match_set``: every feature column is present. Production rows carry
  features only: the timestamp (and the target, unless ``require_target``) may be absent, and
  extra columns (log metadata) are reported but do not fail.
- ``expect_table_row_count_to_be_between``: at least ``min_rows`` rows, when asked.
- ``expect_column_values_to_not_be_null`` with ``mostly = 1 - max_null_share``: passes when the
  non-null share is at least ``mostly`` (nulls are NaN, None, NaT, pd.NA; "" is a value).
- ``expect_column_values_to_be_in_type_list``: numeric columns hold a numeric dtype, timestamp
  columns a datetime64 dtype (the type lists of ``edgeops.stages.validate``).
- ``expect_column_values_to_be_between`` (numeric) and ``expect_column_values_to_be_in_set``
  (categorical) ignore nulls; their unexpected share is relative to the non-null rows.

Where this deliberately differs from GX 1.24 (each difference is the production reading):

- a categorical value is in the set if it equals a category *or* its ``str()`` equals a
  category's ``str()``: features that came over JSON may read "0" where the schema says 0 (GX
  compares with ``isin``, so "0" is not in ``[0, 1]`` there);
- pandas' nullable ``Int64``/``Float64`` columns pass the type check, as ``validate.NUMERIC_TYPES``
  intends (GX 1.24 cannot resolve those two names and rejects such columns);
- a numeric column holding text fails ``between`` with the text counted as unexpected (GX cannot
  compare and reports the expectation as failed without counts);
- the target gets no "at least two classes" check: a monitoring window may hold one class.

Everything is vectorised; pandas is imported inside the functions, so importing this module is
cheap.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgeops.schema import CATEGORICAL, NUMERIC, TIMESTAMP, Column, Schema
from edgeops.stages.validate import NUMERIC_TYPES, TIMESTAMP_TYPES

if TYPE_CHECKING:
    import pandas as pd

COLUMNS_MATCH = "expect_table_columns_to_match_set"
ROW_COUNT = "expect_table_row_count_to_be_between"
NOT_NULL = "expect_column_values_to_not_be_null"
IN_TYPES = "expect_column_values_to_be_in_type_list"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
EXAMPLES = 5


def check_contract(
    df: pd.DataFrame,
    schema: Schema,
    *,
    require_target: bool = False,
    min_rows: int | None = None,
) -> dict[str, Any]:
    """Check production rows against the schema's contract; return a JSON-ready report.

    ``{"success", "rows", "checks", "failures", "missing_columns", "unexpected_columns"}``: one
    entry in ``checks`` per expectation (``expectation``, ``column``, ``success``,
    ``unexpected_count``, ``unexpected_share``, ``allowed_share``, ``examples``: up to five bad
    values), one human line in ``failures`` per failed check. Feature columns are required;
    timestamp and dropped columns are checked when present; the target is required and checked
    only with ``require_target``. Checks of a missing column are not listed: the column-set
    check reports it once. See the module docstring for the semantics (GX's) and the few
    deliberate differences, e.g. a categorical value matches a category when it is equal or
    when their ``str()`` forms are equal ("0" matches 0).
    """
    n = len(df)
    present = set(df.columns)
    required = [c.name for c in schema.features]
    if require_target and schema.target not in required:
        required.append(schema.target)
    missing = [name for name in required if name not in present]
    declared = set(schema.names)
    unexpected = [str(name) for name in df.columns if name not in declared]

    checks: list[dict[str, Any]] = [
        {
            **_check(COLUMNS_MATCH, None, not missing, len(missing), None, None, missing[:5]),
            "missing_columns": missing,
            "observed_value": [str(c) for c in df.columns],
        }
    ]
    if min_rows is not None:
        checks.append(
            {
                **_check(ROW_COUNT, None, n >= min_rows, None, None, None, []),
                "observed_value": n,
                "min_value": min_rows,
            }
        )
    for col in schema.columns:
        if col.name not in present:
            continue
        if col.name == schema.target:
            if require_target:
                checks += _column_checks(df[col.name], col, target=True)
        else:
            checks += _column_checks(df[col.name], col, target=False)

    failures = [_failure_line(c, n) for c in checks if not c["success"]]
    return {
        "success": all(c["success"] for c in checks),
        "rows": n,
        "checks": checks,
        "failures": failures,
        "missing_columns": missing,
        "unexpected_columns": unexpected,
    }


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a short markdown table (status, expectation, column, bad rows)."""
    checks = report.get("checks") or []
    failed = [c for c in checks if not c["success"]]
    verdict = "passed" if report.get("success") else "FAILED"
    lines = [
        f"**Data contract: {verdict}**: {report.get('rows', 0):,} rows, "
        f"{len(checks)} checks, {len(failed)} failed",
        "",
    ]
    if report.get("missing_columns"):
        lines.append(f"- missing columns: {', '.join(report['missing_columns'])}")
    if report.get("unexpected_columns"):
        lines.append(f"- extra columns (not checked): {', '.join(report['unexpected_columns'])}")
    if lines[-1]:
        lines.append("")
    lines += ["| status | expectation | column | bad rows |", "|---|---|---|---|"]
    for c in checks:
        status = "pass" if c["success"] else "**FAIL**"
        expectation = c["expectation"].removeprefix("expect_")
        lines.append(f"| {status} | {expectation} | {c['column'] or '(table)'} | {_bad(c)} |")
    return "\n".join(lines) + "\n"


# --- the expectations ---------------------------------------------------------------------------


def _column_checks(s: pd.Series, col: Column, *, target: bool) -> list[dict[str, Any]]:
    """The checks ``validate.build_expectations`` makes for this column, in the same order."""
    out = []
    notnull = s.notna()
    if target:
        out.append(_not_null(notnull, col.name, 0.0))
    elif col.max_null_share < 1.0:
        out.append(_not_null(notnull, col.name, col.max_null_share))
    if col.type == NUMERIC:
        out.append(_numeric_type(s, notnull, col.name))
        if col.min is not None or col.max is not None:
            out.append(_between(s, notnull, col.name, col.min, col.max))
    elif col.type == CATEGORICAL:
        out.append(_in_set(s, notnull, col.name, col.categories or ()))
    elif col.type == TIMESTAMP:
        out.append(_timestamp_type(s, notnull, col.name))
    return out


def _not_null(notnull: pd.Series, name: str, max_null_share: float) -> dict[str, Any]:
    n = len(notnull)
    nulls = n - int(notnull.sum())
    mostly = 1.0 - max_null_share
    # GX: vacuously true on no rows, else (rows - nulls) / rows >= mostly
    success = n == 0 or (float(n) - float(nulls)) / float(n) >= mostly
    return _check(NOT_NULL, name, success, nulls, _share(nulls, n), max_null_share, [])


def _numeric_type(s: pd.Series, notnull: pd.Series, name: str) -> dict[str, Any]:
    """GX: the column's dtype is one of the numeric types; an object column is checked value by
    value (numpy numeric scalars pass, nulls are ignored, Python ints and floats do not)."""
    import numpy as np

    nonnull = int(notnull.sum())
    if str(s.dtype) in NUMERIC_TYPES:
        bad = notnull & False
    elif s.dtype == object:
        scalar_types = tuple({np.dtype(t).type for t in NUMERIC_TYPES if t.islower()})
        bad = notnull & ~_of_type(s, lambda t: issubclass(t, scalar_types))
    else:
        bad = notnull
    # show what is not a number at all (text, say) before numbers of the wrong kind
    values = s[bad]
    not_numbers = values[~_of_type(values, _is_number)]
    examples = _examples(not_numbers) or _examples(values)
    count = int(bad.sum())
    check = _check(IN_TYPES, name, count == 0, count, _share(count, nonnull), 0.0, examples)
    return {
        **check,
        "nonnull_count": nonnull,
        "observed_type": str(s.dtype),
        "not_numbers": len(not_numbers),
    }


def _timestamp_type(s: pd.Series, notnull: pd.Series, name: str) -> dict[str, Any]:
    import numpy as np

    if str(s.dtype) in TIMESTAMP_TYPES:
        bad = notnull & False
    elif s.dtype == object:
        bad = notnull & ~_of_type(s, lambda t: issubclass(t, np.datetime64))
    else:
        bad = notnull
    count, nonnull = int(bad.sum()), int(notnull.sum())
    check = _check(
        IN_TYPES, name, count == 0, count, _share(count, nonnull), 0.0, _examples(s[bad])
    )
    return {**check, "nonnull_count": nonnull, "observed_type": str(s.dtype)}


def _between(
    s: pd.Series, notnull: pd.Series, name: str, lo: float | None, hi: float | None
) -> dict[str, Any]:
    """GX: ``lo <= value <= hi`` (inclusive, a None bound is open), nulls ignored."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        comparable = notnull.to_numpy()
    else:  # text, timestamps, mixed objects: only real numbers can be in range
        is_num = _of_type(s, lambda t: issubclass(t, numbers.Real)).to_numpy()
        values = pd.to_numeric(s.where(is_num), errors="coerce").to_numpy(dtype="float64")
        comparable = notnull.to_numpy() & is_num
    inside = np.ones(len(s), dtype=bool)
    with np.errstate(invalid="ignore"):
        if lo is not None:
            inside &= values >= lo
        if hi is not None:
            inside &= values <= hi
    bad = notnull.to_numpy() & ~(comparable & inside)
    count = int(bad.sum())
    nonnull = int(notnull.sum())
    check = _check(BETWEEN, name, count == 0, count, _share(count, nonnull), 0.0, _examples(s[bad]))
    return {**check, "nonnull_count": nonnull, "min_value": lo, "max_value": hi}


def _in_set(
    s: pd.Series, notnull: pd.Series, name: str, categories: tuple[Any, ...]
) -> dict[str, Any]:
    """GX's ``isin`` (nulls ignored), plus: a value whose ``str()`` is a category's ``str()``."""
    try:
        member = s.isin(list(categories))
    except TypeError:  # unhashable values (a dict that came over JSON): compare as text below
        member = notnull & False
    rest = notnull & ~member
    if rest.any():
        as_text = {str(c) for c in categories}
        member = member | (rest & s.astype(str).isin(as_text))
    bad = notnull & ~member
    count, nonnull = int(bad.sum()), int(notnull.sum())
    check = _check(IN_SET, name, count == 0, count, _share(count, nonnull), 0.0, _examples(s[bad]))
    return {**check, "nonnull_count": nonnull, "value_set": [_plain(c) for c in categories]}


# --- helpers ------------------------------------------------------------------------------------


def _check(
    expectation: str,
    column: str | None,
    success: bool,
    unexpected_count: int | None,
    unexpected_share: float | None,
    allowed_share: float | None,
    examples: list[Any],
) -> dict[str, Any]:
    return {
        "expectation": expectation,
        "column": column,
        "success": bool(success),
        "unexpected_count": unexpected_count,
        "unexpected_share": unexpected_share,
        "allowed_share": allowed_share,
        "examples": examples,
    }


def _share(count: int, of: int) -> float:
    return count / of if of else 0.0


def _of_type(s: pd.Series, test: Callable[[type], bool]) -> pd.Series:
    """Which values' types pass ``test``: decided once per distinct type, not once per value."""
    types = s.map(type)
    return types.isin([t for t in types.unique() if test(t)])


def _is_number(t: type) -> bool:
    """A real number, not a bool (True in a torque field is not a reading)."""
    import numpy as np

    return issubclass(t, numbers.Real) and not issubclass(t, (bool, np.bool_))


def _examples(values: pd.Series) -> list[Any]:
    """Up to five distinct values, in order of appearance, as JSON-ready scalars."""
    out: list[Any] = []
    seen: set[str] = set()
    for v in values.head(1000):  # enough to find five distinct ones
        p = _plain(v)
        key = repr(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
            if len(out) == EXAMPLES:
                break
    return out


def _plain(v: Any) -> Any:
    """A JSON-ready scalar: numpy -> Python, non-finite floats and other objects -> text."""
    if type(v).__name__ in ("datetime64", "timedelta64"):  # .item() may give nanoseconds
        return str(v)
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        with contextlib.suppress(ValueError, TypeError):
            v = v.item()
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _pct(share: float) -> str:
    """A share as a percentage; a small non-zero one does not read as 0.0 %."""
    return f"{share * 100:.3f} %" if 0 < share < 0.001 else f"{share * 100:.1f} %"


def _failure_line(c: dict[str, Any], rows: int) -> str:
    exp, col, count = c["expectation"], c["column"], c["unexpected_count"]
    eg = f" (e.g. {c['examples']})" if c["examples"] else ""
    if exp == COLUMNS_MATCH:
        return f"missing columns {c['missing_columns']}"
    if exp == ROW_COUNT:
        return f"{c['observed_value']:,} rows, at least {c['min_value']:,} expected"
    if exp == NOT_NULL:
        share, allowed = c["unexpected_share"], c["allowed_share"]
        shown, limit = _pct(share), _pct(allowed)
        if shown == limit:  # 2.04 % against 2.0 %: show the difference
            shown, limit = f"{share * 100:.3f} %", f"{allowed * 100:.3f} %"
        where = f"{shown} nulls ({count:,} of {rows:,} rows)"
        return f"{col}: {where}, " + (f"at most {limit} allowed" if allowed else "none allowed")
    if exp == IN_TYPES:
        if "not_numbers" not in c:
            return f"{col}: holds {c['observed_type']} values, expected timestamps{eg}"
        line = f"{col}: holds {c['observed_type']} values, expected a numeric type"
        if c["not_numbers"]:
            line += f"; {c['not_numbers']:,} of {c['nonnull_count']:,} values are not numbers"
        return line + eg
    nonnull = c["nonnull_count"]
    if exp == BETWEEN:
        bounds = f"[{c['min_value']}, {c['max_value']}]"
        return f"{col}: {count:,} of {nonnull:,} non-null values outside {bounds}{eg}"
    return f"{col}: {count:,} of {nonnull:,} non-null values not in {c['value_set']}{eg}"


def _bad(c: dict[str, Any]) -> str:
    if c["expectation"] == COLUMNS_MATCH:
        return ", ".join(c["missing_columns"]) or "-"
    if c["expectation"] == ROW_COUNT:
        return f"{c['observed_value']:,} rows (min {c['min_value']:,})"
    if not c["unexpected_count"]:
        return "0"
    return f"{c['unexpected_count']:,} ({_pct(c['unexpected_share'])})"
