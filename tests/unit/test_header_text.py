"""Any text in a header: reasons, actors and approvers cross HTTP as RFC 8187 values."""

from __future__ import annotations

import http.client

import pytest

from edgeops.edge.header_text import decode, encode, printable

TEXTS = [
    "prefect",
    "Łukasz Dvořák",
    "hot fix – line 2",
    "two\nlines",
    "温度",
    "UTF-8''x",
    "%41",
    "tab\there",
    "",
    "emoji 🔧",
    "a\u2028b",
    "Zoë",
]


@pytest.mark.parametrize("text", TEXTS)
def test_every_text_survives_the_header_and_is_a_valid_header_value(text: str) -> None:
    value = encode(text)
    assert decode(value) == text
    value.encode("latin-1")  # what http.client sends
    assert not http.client._is_illegal_header_value(value.encode("latin-1"))  # no CR/LF


def test_plain_ascii_travels_as_it_is_for_older_agents() -> None:
    assert encode("make demo") == "make demo"
    assert decode("make demo") == "make demo"


def test_raw_utf8_read_as_latin1_is_repaired_and_bad_escapes_kept() -> None:
    assert decode("Łukasz".encode().decode("latin-1")) == "Łukasz"
    assert decode("UTF-8''%FF%FE") == "UTF-8''%FF%FE"


def test_a_log_line_escapes_control_characters_only() -> None:
    assert printable("a – b\nc\x1b[2J") == "a – b\\nc\\x1b[2J"
