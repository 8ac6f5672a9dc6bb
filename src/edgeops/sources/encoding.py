"""A CSV file's encoding, detected from its bytes (run by :func:`edgeops.sources.dialect.sniff`).

A BOM names it (UTF-8 or UTF-16). Else UTF-8 if the whole file decodes as UTF-8: UTF-8 is
self-validating, text in another encoding almost never happens to be valid UTF-8. A file that
does not decode is, in Swiss and German practice, a Windows export in cp1252 (Windows-1252, a
superset of Latin-1 with ``€`` and typographic quotes); the report says where the first
non-UTF-8 byte is. We deliberately do not use charset-normalizer's (or chardet's) guesses
between legacy code pages: on mostly-ASCII plant data they choose between cp1250, cp1252,
latin-1 or mac-roman by statistics over a few umlauts, a guess that differs from file to file.
Any other code page is a setting (``ingest.csv.encoding``), not a guess.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from edgeops.errors import EdgeopsError

_CHUNK = 1 << 20


def detect_encoding(path: Path, override: str | None = None) -> tuple[str, str | None]:
    """(codec name, a note for the report) of ``path``; errors name ``ingest.csv.encoding``."""
    from edgeops.sources.dialect import setting  # dialect imports this module

    with path.open("rb") as fh:
        head = fh.read(64 * 1024)
    if override:
        name = codecs.lookup(override).name
        if name == "utf-8" and head.startswith(codecs.BOM_UTF8):
            name = "utf-8-sig"  # the BOM is not part of the first column's name
        bad = _first_error(path, name)
        if bad:
            raise EdgeopsError(
                f"{path} is not valid {name}: {bad}",
                fix=f"set {setting('encoding')} to the encoding the file was exported in "
                "(or null to detect UTF-8 / cp1252)",
            )
        return name, None
    if head.startswith(codecs.BOM_UTF8):
        bad = _first_error(path, "utf-8-sig")
        if bad:
            raise EdgeopsError(
                f"{path} starts with a UTF-8 byte order mark but is not UTF-8: {bad}",
                fix=f"export it again as UTF-8, or set {setting('encoding')}",
            )
        return "utf-8-sig", "UTF-8 with BOM"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        bad = _first_error(path, "utf-16")
        if bad:
            raise EdgeopsError(
                f"{path} starts with a UTF-16 byte order mark but is not UTF-16: {bad}",
                fix=f"export it again as UTF-8, or set {setting('encoding')}",
            )
        return "utf-16", "UTF-16 with BOM"
    if b"\x00" in head:
        raise EdgeopsError(
            f"{path} holds NUL bytes: it is UTF-16 without a byte order mark, or not a text file",
            fix=f"export it as CSV (UTF-8), or set {setting('encoding', 'utf-16-le')}",
        )
    bad_utf8 = _first_error(path, "utf-8")
    if bad_utf8 is None:
        return "utf-8", None
    bad = _first_error(path, "cp1252")
    if bad:
        raise EdgeopsError(
            f"{path} is neither UTF-8 ({bad_utf8}) nor Windows-1252 ({bad})",
            fix=f"set {setting('encoding')} to the encoding it was exported in "
            "(e.g. latin-1, cp850, cp1250), or export it as CSV UTF-8",
        )
    return "cp1252", f"not UTF-8: {bad_utf8}"


def _first_error(path: Path, encoding: str) -> str | None:
    """Where ``path`` first fails to decode as ``encoding`` ("byte 0xe4 on line 3"), or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # exc.start counts from the decoder's own buffer, which may hold a few
                # bytes of the previous chunk (a character cut in two)
                pending = len(exc.object) - len(chunk)
                pos = max(0, exc.start - pending)
                line = lines + chunk[:pos].count(b"\n") + 1
                byte = exc.object[exc.start : exc.start + 1].hex()
                return f"byte 0x{byte} on line {line}"
            if not chunk:
                return None
            lines += chunk.count(b"\n")
