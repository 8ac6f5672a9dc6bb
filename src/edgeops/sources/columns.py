"""The columns of a CSV file after pandas has read it in its :mod:`edgeops.sources.dialect`.

:func:`finish` turns the columns pandas left as text into what they hold:

- **dates**: a text column whose values all have the form ``dd.mm.yyyy``,
  ``dd.mm.yyyy HH:MM`` or ``dd.mm.yyyy HH:MM:SS`` (or ``ingest.csv.date_format``) becomes a
  datetime column; ISO timestamps are handled by :func:`edgeops.sources.parse_timestamps`.
- **grouped numbers**: with a thousands separator in the dialect, a column of numbers like
  ``1.234,5`` or ``1'234.50`` becomes numeric (only when every group has three digits).

It also drops the empty column a separator at the end of every line adds, and stops with an
error that names the setting when the columns collapsed into one or (decimal mark detected)
a column holds numbers left as text because of the other decimal mark or thousands separator.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.sources.dialect import CsvOptions, Dialect, check_not_collapsed, setting

if TYPE_CHECKING:
    import pandas as pd

#: the day-first forms detected without a setting (ISO timestamps are parsed elsewhere)
DATE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")
_DATE_RX = {
    "%d.%m.%Y %H:%M:%S": r"\d{1,2}\.\d{1,2}\.\d{4} \d{1,2}:\d{2}:\d{2}",
    "%d.%m.%Y %H:%M": r"\d{1,2}\.\d{1,2}\.\d{4} \d{1,2}:\d{2}",
    "%d.%m.%Y": r"\d{1,2}\.\d{1,2}\.\d{4}",
}
#: a number with either decimal mark and optional 3-digit groups: what text columns must not be
_ANY_NUMBER = re.compile(r"\s*[+-]?(?:\d+|\d{1,3}(?:[.,'’ \u00a0]\d{3})+)(?:[.,]\d+)?\s*")


def finish(
    df: pd.DataFrame, path: Path, dialect: Dialect, options: CsvOptions
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Columns pandas left as text that hold dates or grouped numbers; checks; the dates found.

    Returns the frame and ``{column: date format}`` ("ISO 8601" for ISO timestamps).
    """
    from edgeops.sources import parse_timestamps

    if df.shape[1] == 1:
        check_not_collapsed(path, [str(df.columns[0])], dialect.sep, options)
    # a separator at the end of every line: pandas adds an empty "Unnamed: N" column
    empty = [c for c in df.columns if str(c).startswith("Unnamed: ") and df[c].isna().all()]
    df = df.drop(columns=empty)
    dates: dict[str, str] = {}
    for i, name in enumerate(df.columns):
        s = df.iloc[:, i]
        if not _is_text(s):
            continue
        fmt, parsed = _dates(s, name, path, options.date_format)
        if parsed is not None:
            df.isetitem(i, parsed)
            dates[str(name)] = fmt
        elif dialect.thousands:
            number = _grouped_numbers(s, dialect)
            if number is not None:
                df.isetitem(i, number)
    before = {str(c): df[c].dtype for c in df.columns}
    df = parse_timestamps(df)
    for c in df.columns:
        if df[c].dtype != before[str(c)]:
            dates[str(c)] = "ISO 8601"
    if options.decimal is None:
        _check_no_numbers_as_text(df, path, dialect)
    return df, dates


def _is_text(s: pd.Series) -> bool:
    import pandas as pd

    return s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) == "string"


def _dates(
    s: pd.Series, name: Any, path: Path, date_format: str | None
) -> tuple[str, pd.Series | None]:
    """(format, the column as datetimes) when every value is a date of one known form."""
    import pandas as pd

    values = s.dropna()
    if values.empty:
        return "", None
    first = values.iloc[0].strip()
    if date_format:
        if pd.isna(pd.to_datetime(first, format=date_format, errors="coerce")):
            return "", None  # a quick no before parsing the whole column
        parsed = pd.to_datetime(values.str.strip(), format=date_format, errors="coerce")
        return ("", None) if parsed.isna().any() else (date_format, _aligned(s, parsed))
    fmt = next((f for f, rx in _DATE_RX.items() if re.fullmatch(rx, first)), None)
    if fmt is None:
        return "", None
    parsed = pd.to_datetime(values, format=fmt, errors="coerce")  # the common case: one pass
    if not parsed.isna().any():
        return fmt, _aligned(s, parsed)
    # several forms in one column (with and without seconds), spaces, or an impossible date
    stripped = values.str.strip()
    groups = {f: stripped.str.fullmatch(rx) for f, rx in _DATE_RX.items()}
    matched = pd.Series(False, index=stripped.index)
    for m in groups.values():
        matched |= m
    if not matched.all():
        return "", None
    parts, formats = [], []
    for fmt, m in groups.items():
        if not m.any():
            continue
        parsed = pd.to_datetime(stripped[m], format=fmt, errors="coerce")
        if parsed.isna().any():
            bad = stripped[m][parsed.isna()].iloc[0]
            raise EdgeopsError(
                f"{path}: column {name!r} holds dates ({fmt}), but {bad!r} is not a valid date",
                fix="correct or empty that value in the export "
                f"(or set {setting('date_format')} if the column has another form)",
            )
        parts.append(parsed)
        formats.append(fmt)
    return " / ".join(formats), _aligned(s, pd.concat(parts))


def _aligned(s: pd.Series, parsed: pd.Series) -> pd.Series:
    import pandas as pd

    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]", name=s.name)
    out.loc[parsed.index] = parsed.astype("datetime64[ns]")
    return out


def _grouped_numbers(s: pd.Series, dialect: Dialect) -> pd.Series | None:
    """A text column of numbers with thousands separators as numbers (None if it is not one)."""
    import pandas as pd

    t, d = re.escape(dialect.thousands), re.escape(dialect.decimal)
    rx = rf"[+-]?(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)(?:{d}\d+)?"
    values = s.dropna().str.strip()
    if values.empty or not re.fullmatch(rx, values.iloc[0]):
        return None
    if not values.str.fullmatch(rx).all():
        return None
    plain = values.str.replace(dialect.thousands, "", regex=False)
    if plain.str.contains(dialect.decimal, regex=False).any():
        numbers = plain.str.replace(dialect.decimal, ".", regex=False).astype("float64")
    else:
        numbers = pd.to_numeric(plain)
    if len(values) == len(s):
        return numbers.rename(s.name)
    return pd.Series(numbers, index=s.index, dtype="float64", name=s.name)


def _check_no_numbers_as_text(df: pd.DataFrame, path: Path, dialect: Dialect) -> None:
    for name in df.columns:
        s = df[name]
        if not _is_text(s):
            continue
        values = s.dropna().astype(str)
        if values.empty or not all(_ANY_NUMBER.fullmatch(v) for v in values):
            continue
        other = "." if dialect.decimal == "," else ","
        example = next(
            (v.strip() for v in values if other in v and _decimal_position(v, other)),
            None,
        )
        if example is not None:
            problem = (
                f"{path}: column {name!r} holds numbers written with {other!r} as the decimal "
                f"mark (e.g. {example!r}), but the file was read with decimal {dialect.decimal!r}"
                " (detected), so they would be text"
            )
            fix = (
                f"set {setting('decimal', other)}; or, if {name!r} is text (a code, a "
                f"version), confirm {setting('decimal', dialect.decimal)}"
            )
        else:
            example = next((v.strip() for v in values if re.search(r"\d\D+\d", v)), None)
            if example is None:
                continue
            mark = next(c for c in example.lstrip("+-") if not c.isdigit())
            problem = (
                f"{path}: column {name!r} holds numbers with {mark!r} between digit groups "
                f"(e.g. {example!r}), but the file was read with "
                f"thousands {dialect.thousands or 'none'!r} (detected), so they would be text"
            )
            fix = (
                f"set {setting('thousands', mark)}; or, if {name!r} is text, confirm "
                f"{setting('decimal', dialect.decimal)}"
            )
        raise EdgeopsError(problem, fix=fix)


def _decimal_position(value: str, mark: str) -> bool:
    """Whether ``mark`` is the decimal mark of ``value``: the last mark, not a 3-digit group."""
    v = value.strip().lstrip("+-")
    marks = [c for c in v if not c.isdigit()]
    if not marks or marks[-1] != mark:
        return False
    head, _, tail = v.rpartition(mark)
    grouped = len(tail) == 3 and re.fullmatch(r"\d{1,3}", re.split(r"\D", head)[0] or "x")
    return not grouped
