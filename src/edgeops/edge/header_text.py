"""Text in HTTP headers: any Unicode, carried as RFC 8187 ``UTF-8''<percent-encoded>`` values.

HTTP header values are Latin-1 at best (http.client refuses anything else, and a newline would
end the header), but a reason, an approver's name or a comment is any text: "Łukasz Dvořák",
"hot fix – line 2", two lines. The deploy client encodes every value that is not plain printable
ASCII; the agent decodes it. Plain ASCII travels as it is, so an older agent still reads it.

    >>> encode("Łukasz")
    "UTF-8''%C5%81ukasz"
    >>> decode(encode("a – b\\nc"))
    'a – b\\nc'
"""

from __future__ import annotations

from urllib.parse import quote, unquote

PREFIX = "UTF-8''"
#: RFC 8187 attr-char besides letters and digits: what stays as it is
SAFE = "!#$&+-.^_`|~"


def _plain(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text) and not text.upper().startswith(PREFIX)


def encode(text: str) -> str:
    """``text`` as a header value: itself if plain printable ASCII, else ``UTF-8''%..``."""
    return text if _plain(text) else PREFIX + quote(text, safe=SAFE, encoding="utf-8")


def decode(value: str) -> str:
    """The text a header value carries: an ``UTF-8''`` value decoded, raw UTF-8 bytes (which the
    server read as Latin-1) re-read as UTF-8, anything else as it is."""
    if value[: len(PREFIX)].upper() == PREFIX:
        try:
            return unquote(value[len(PREFIX) :], encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def printable(text: str) -> str:
    """``text`` for one log line: control characters (a newline) escaped, nothing else."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)
