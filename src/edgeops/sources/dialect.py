"""How a CSV file is written: encoding, separator, decimal and thousands marks, date formats.

This module detects the dialect from the file's bytes before pandas reads it
(:func:`sniff`); :mod:`edgeops.sources.columns` handles what pandas leaves as text afterwards
(dates, grouped numbers) and the checks on the frame read.

Each is detected, reported (``ingest`` logs one line and writes it under ``csv`` in
``reports/ingest.json``) and can be set under ``ingest.csv`` in params.yaml (null = detect):

- **encoding**: a BOM names it, else UTF-8 if the file decodes as UTF-8, else cp1252; why, and
  why not charset-normalizer, in :mod:`edgeops.sources.encoding`.
- **sep**: one of ``, ; TAB |``. The first ~200 records are split with the ``csv`` module at
  each; the separator that gives every record the header's number of fields (more than one)
  wins, in the order TAB, ``;``, ``|``, ``,`` (a ``;`` file with decimal commas may also split
  evenly at ``,``, a comma file practically never at ``;``).
- **decimal**: ``,`` when numbers are written like ``297,8`` (and the separator is not ``,``).
  Only ``1.234``-like numbers in a file not separated by commas are ambiguous (1.234 or 1234?):
  that stops with a request to set ``ingest.csv.decimal``.
- **thousands**: ``.`` with decimal ``,`` (``1.234,5``), Swiss ``'`` (``1'234.50``), or none.
  A value is read as a grouped number only when every group has three digits, so ``1.5`` is
  never read as 15.
- **dates**: a text column whose values all have the form ``dd.mm.yyyy``,
  ``dd.mm.yyyy HH:MM`` or ``dd.mm.yyyy HH:MM:SS`` becomes a datetime column; ISO timestamps are
  handled by :func:`edgeops.sources.parse_timestamps`. ``ingest.csv.date_format`` (a strftime
  format) replaces the ``dd.mm.yyyy`` forms. Dates are found after reading, in
  :mod:`edgeops.sources.columns`.

Nothing is guessed silently: columns that collapse into one, numbers left as text because of
the other decimal mark, and undecodable bytes stop with an error that names the setting.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError
from edgeops.sources.encoding import detect_encoding

#: in order of preference when several split a file evenly
SEPARATORS = ("\t", ";", "|", ",")
#: the settings under ingest.csv (and the `edgeops schema infer` flags of the same names)
OPTIONS = ("sep", "decimal", "thousands", "encoding", "date_format")
THOUSANDS = (".", "'", "’", ",", " ", "\u00a0")
SAMPLE_BYTES = 256 * 1024
SAMPLE_RECORDS = 200

# evidence for the decimal mark, per field of the sample
_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_DOT_DECIMAL = re.compile(r"[+-]?\d+\.\d+")
_AMBIGUOUS_COMMA = re.compile(r"[+-]?[1-9]\d{0,2},\d{3}")  # 1,234: 1.234 or 1234?
_AMBIGUOUS_DOT = re.compile(r"[+-]?[1-9]\d{0,2}\.\d{3}")
_GROUPED_DOT_COMMA = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+(?:,\d+)?")  # 1.234,5  1.234.567
_GROUPED_COMMA_DOT = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+\.\d+")  # 1,234.5
_GROUPED_COMMA = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")  # 1,234 1,234.5
_GROUPED_SWISS = re.compile(r"[+-]?\d{1,3}(?:['’]\d{3})+(?:[.,]\d+)?")  # 1'234.50
_SETTING_FLAG = {
    "sep": "--sep",
    "decimal": "--decimal",
    "thousands": "--thousands",
    "encoding": "--encoding",
    "date_format": "--date-format",
}


def show(sep: str) -> str:
    """A separator as people write it in params.yaml: ';', '\\t'."""
    return repr(sep)


def setting(key: str, value: str | None = None) -> str:
    """The fix text for one setting: ``ingest.csv.sep: ';' (edgeops schema infer: --sep ';')``."""
    if value is None:
        return f"ingest.csv.{key} (edgeops schema infer: {_SETTING_FLAG[key]})"
    return f"ingest.csv.{key}: {value!r} (edgeops schema infer: {_SETTING_FLAG[key]} {value!r})"


@dataclass(frozen=True)
class CsvOptions:
    """The ``ingest.csv`` settings that override detection; None = detect.

    ``thousands: ""`` says "no thousands separator" (null detects one).
    """

    sep: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    encoding: str | None = None
    date_format: str | None = None

    @classmethod
    def from_params(cls, cfg: Mapping[str, Any] | None) -> CsvOptions:
        """Read and check the settings, with errors that name the one to fix."""
        cfg = cfg or {}
        sep = _text(cfg, "sep")
        if sep is not None:
            sep = {"tab": "\t", "\\t": "\t", "TAB": "\t"}.get(sep, sep)
            if len(sep) != 1 or sep.isalnum() or sep in '"\r\n':
                raise EdgeopsError(
                    f"ingest.csv.sep {sep!r} is not a one-character separator",
                    fix="use one of ',' ';' '\\t' '|' (or null to detect it)",
                )
        decimal = _text(cfg, "decimal")
        if decimal is not None and decimal not in (".", ","):
            raise EdgeopsError(
                f"ingest.csv.decimal {decimal!r} is not '.' or ','",
                fix="set ingest.csv.decimal: '.' or ',' (or null to detect it)",
            )
        thousands = _text(cfg, "thousands")
        if thousands is not None:
            thousands = "" if thousands.lower() == "none" else thousands
            if thousands and thousands not in THOUSANDS:
                raise EdgeopsError(
                    f"ingest.csv.thousands {thousands!r} is not a thousands separator",
                    fix="use '.', \"'\", ',' or ' ', '' for none, or null to detect it",
                )
            if thousands and thousands in (decimal, sep):
                raise EdgeopsError(
                    f"ingest.csv.thousands {thousands!r} is also the "
                    + ("decimal mark" if thousands == decimal else "separator"),
                    fix="set different characters for ingest.csv.sep, decimal and thousands",
                )
        encoding = _text(cfg, "encoding")
        if encoding is not None:
            try:
                encoding = codecs.lookup(encoding).name
            except LookupError:
                raise EdgeopsError(
                    f"ingest.csv.encoding {encoding!r} is not an encoding Python knows",
                    fix="use e.g. utf-8, cp1252, latin-1, cp850 or utf-16 (or null to detect it)",
                ) from None
        date_format = _text(cfg, "date_format")
        if date_format is not None and "%" not in date_format:
            raise EdgeopsError(
                f"ingest.csv.date_format {date_format!r} is not a strftime format",
                fix="write it like '%d.%m.%Y %H:%M' (or null to detect dd.mm.yyyy dates)",
            )
        return cls(sep, decimal, thousands, encoding, date_format)

    def given(self) -> list[str]:
        """The settings that are set (not detected)."""
        return [k for k in OPTIONS if getattr(self, k) is not None]


@dataclass(frozen=True)
class Dialect:
    """How one file is written. ``thousands`` is "" for none."""

    encoding: str
    sep: str
    decimal: str
    thousands: str
    line_endings: str
    encoding_note: str | None = None


def sniff(path: Path, options: CsvOptions) -> Dialect:
    """Detect the dialect of a CSV file (settings in ``options`` win)."""
    encoding, note = detect_encoding(path, options.encoding)
    text, complete = _sample(path, encoding)
    line_endings = "CRLF" if "\r\n" in text else "LF"
    sep = options.sep or _detect_sep(path, text, complete)
    records = _records(text, sep, complete)
    if records:
        check_not_collapsed(path, records[0], sep, options)
    fields = [f.strip() for r in records[1:] for f in r if f.strip()]
    decimal = options.decimal or _detect_decimal(path, sep, records)
    if options.thousands is not None:
        thousands = options.thousands
    else:
        thousands = _detect_thousands(fields, decimal, sep)
    if thousands == decimal:
        raise EdgeopsError(
            f"{path}: the thousands separator and the decimal mark are both {decimal!r}",
            fix=f"set {setting('thousands')} or {setting('decimal')}",
        )
    return Dialect(encoding, sep, decimal, thousands, line_endings, note)


# --- sample --------------------------------------------------------------------------------------


def _sample(path: Path, encoding: str) -> tuple[str, bool]:
    """The decoded start of the file (whole lines) and whether it is the whole file."""
    with path.open("rb") as fh:
        raw = fh.read(SAMPLE_BYTES + 1)
    complete = len(raw) <= SAMPLE_BYTES
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(
        raw[:SAMPLE_BYTES], final=complete
    )
    if not complete and "\n" in text:
        text = text[: text.rfind("\n") + 1]
    return text, complete


# --- separator, decimal, thousands ---------------------------------------------------------------


def _records(text: str, sep: str, complete: bool) -> list[list[str]]:
    """The first records of ``text`` split at ``sep`` (blank lines skipped, as pandas does)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"')
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) > SAMPLE_RECORDS:
                return rows
    except csv.Error:  # e.g. a quote left open by the cut at the sample's end
        pass
    if not complete and len(rows) > 1:
        rows.pop()  # may be cut short by the sample's end
    return rows


def _detect_sep(path: Path, text: str, complete: bool) -> str:
    stats: dict[str, tuple[int, int | None, int, bool]] = {}
    for sep in SEPARATORS:
        rows = _records(text, sep, complete)
        if not rows:
            continue
        width = len(rows[0])
        bad = next((i for i, r in enumerate(rows[1:], 2) if len(r) != width), None)
        stray_quotes = any('"' in f for r in rows for f in r)  # quoting not respected
        stats[sep] = (width, bad, len(rows[bad - 1]) if bad else width, stray_quotes)
    even = [s for s, (w, bad, _, _) in stats.items() if w > 1 and bad is None]
    clean = [s for s in even if not stats[s][3]]
    if clean or even:
        return (clean or even)[0]
    split = [s for s, (w, _, _, _) in stats.items() if w > 1]
    if not split:
        return ","  # one column (the checks after reading catch a collapsed header)
    if len(split) == 1:
        return split[0]  # pandas then names the record that does not fit
    detail = "; ".join(
        f"at {show(s)} the header has {stats[s][0]} fields, record {stats[s][1]} has {stats[s][2]}"
        for s in split
    )
    raise EdgeopsError(
        f"{path}: cannot tell the column separator: the header splits at "
        f"{', '.join(show(s) for s in split)}, but at none of them does every record have the "
        f"header's number of fields ({detail})",
        fix=f"set {setting('sep')} to the file's separator, and quote text that holds it",
    )


def check_not_collapsed(path: Path, header: list[str], sep: str, options: CsvOptions) -> None:
    """A header that is one field but holds another separator: the columns would collapse.

    Run on the sampled header (:func:`sniff`) and on the frame read
    (:func:`edgeops.sources.columns.finish`).
    """
    if len(header) != 1:
        return
    others = [s for s in SEPARATORS if s != sep and s in header[0]]
    if not others:
        return
    how = "as set" if options.sep else "detected"
    raise EdgeopsError(
        f"{path}: the columns collapse into one: the header {header[0][:80]!r} holds "
        f"{show(others[0])}, but the separator is {show(sep)} ({how})"
        + ("" if options.sep else f": the records do not split evenly at {show(others[0])}"),
        fix=f"set {setting('sep', others[0])}"
        + ("" if options.sep else "; check every row has as many fields as the header"),
    )


def _detect_decimal(path: Path, sep: str, records: list[list[str]]) -> str:
    if sep == ",":
        return "."  # an unquoted decimal comma would split the field
    comma: dict[str, str] = {}  # column -> an example
    dot: dict[str, str] = {}
    ambiguous_comma: dict[str, str] = {}
    ambiguous_dot: dict[str, str] = {}
    header = records[0] if records else []
    for row in records[1:]:
        for i, raw in enumerate(row):
            value = raw.strip()
            col = header[i] if i < len(header) else f"#{i + 1}"
            if _GROUPED_COMMA_DOT.fullmatch(value) or (
                _GROUPED_SWISS.fullmatch(value) and "." in value
            ):
                dot.setdefault(col, value)
            elif _AMBIGUOUS_COMMA.fullmatch(value):
                ambiguous_comma.setdefault(col, value)
            elif _AMBIGUOUS_DOT.fullmatch(value):
                ambiguous_dot.setdefault(col, value)
            elif _COMMA_DECIMAL.fullmatch(value) or (
                _GROUPED_DOT_COMMA.fullmatch(value) and ("," in value or value.count(".") > 1)
            ):
                comma.setdefault(col, value)
            elif _DOT_DECIMAL.fullmatch(value):
                dot.setdefault(col, value)
    if comma and dot:
        c, d = next(iter(comma.items())), next(iter(dot.items()))
        raise EdgeopsError(
            f"{path} writes numbers with both decimal marks: {c[1]!r} in column {c[0]!r}, "
            f"{d[1]!r} in column {d[0]!r}",
            fix=f"export the numbers with one decimal mark, or set {setting('decimal')} to the "
            "one the measurements use (columns with the other are then read as text)",
        )
    if comma:
        return ","
    if dot:
        return "."  # and 1,234 groups thousands
    if ambiguous_comma:
        return ","  # 1,234 in a file not separated by commas: a decimal comma, as Excel writes it
    if ambiguous_dot:
        col, value = next(iter(ambiguous_dot.items()))
        raise EdgeopsError(
            f"{path}: cannot tell the decimal mark: {value!r} in column {col!r} is "
            f"{value.replace('.', '')} with '.' grouping thousands, or {value} with '.' as the "
            "decimal mark, and no other number in the first records tells which",
            fix=f"set {setting('decimal', '.')} (and ingest.csv.thousands: ''), or "
            f"{setting('decimal', ',')} (and ingest.csv.thousands: '.')",
        )
    return "," if sep == ";" else "."


def _detect_thousands(fields: list[str], decimal: str, sep: str) -> str:
    if decimal == ",":
        if any(_GROUPED_DOT_COMMA.fullmatch(f) and "." in f for f in fields):
            return "."
    elif sep != "," and any(_GROUPED_COMMA.fullmatch(f) for f in fields):
        return ","
    for f in fields:
        if _GROUPED_SWISS.fullmatch(f):
            return "’" if "’" in f else "'"
    return ""


def _text(cfg: Mapping[str, Any], key: str) -> str | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EdgeopsError(
            f"ingest.csv.{key} must be text, got {value!r}", fix=f"quote it: {key}: '{value}'"
        )
    return value


# --- report ---------------------------------------------------------------------------------------


def report(dialect: Dialect, dates: Mapping[str, str], options: CsvOptions) -> dict[str, Any]:
    """The dialect as JSON for ``reports/ingest.json`` (``set``: the settings not detected)."""
    return {
        "encoding": dialect.encoding,
        "encoding_note": dialect.encoding_note,
        "sep": dialect.sep,
        "decimal": dialect.decimal,
        "thousands": dialect.thousands or None,
        "dates": dict(dates),
        "line_endings": dialect.line_endings,
        "set": options.given(),
    }


def describe(rep: Mapping[str, Any]) -> str:
    """One line: ``encoding cp1252, sep ';', decimal ',', dates %d.%m.%Y %H:%M in [Zeitstempel]``."""
    enc = rep["encoding"]
    if rep.get("encoding_note"):
        enc += f" ({rep['encoding_note']})"
    parts = [f"encoding {enc}", f"sep {show(rep['sep'])}", f"decimal {rep['decimal']!r}"]
    if rep.get("thousands"):
        parts.append(f"thousands {rep['thousands']!r}")
    by_format: dict[str, list[str]] = {}
    for col, fmt in (rep.get("dates") or {}).items():
        by_format.setdefault(fmt, []).append(col)
    for fmt, cols in by_format.items():
        parts.append(f"dates {fmt} in [{', '.join(cols)}]")
    if rep.get("set"):
        parts.append(f"as set: {', '.join(rep['set'])} (the rest detected)")
    return ", ".join(parts)
