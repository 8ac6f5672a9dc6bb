"""How CSV files are written: encoding, separator, decimal and thousands marks, dates.

Every file here is real bytes on disk, as an Excel or a plant-software export writes them.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pandas as pd
import pytest

from edgeops.errors import EdgeopsError
from edgeops.sources.csv import describe_dialect, read_files, read_with_dialect
from edgeops.sources.dialect import SAMPLE_BYTES, CsvOptions


def write(path: Path, text: str, encoding: str = "utf-8", crlf: bool = False) -> Path:
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(text.encode(encoding))
    return path


# --- encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "reported"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252"), ("utf-16", "utf-16")],
)
def test_encodings_are_detected_and_reported(tmp_path: Path, encoding: str, reported: str) -> None:
    path = write(tmp_path / "x.csv", "Typ,Wert\nWärmetauscher,1\nGerät A,2\n", encoding)
    df, dialect = read_with_dialect(path)
    assert list(df.columns) == ["Typ", "Wert"]  # no BOM in the first name
    assert df["Typ"].tolist() == ["Wärmetauscher", "Gerät A"]
    assert dialect["encoding"] == reported


def test_cp1252_report_says_where_utf8_fails(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a,b\n1,x\n2,Größe\n", "cp1252")
    _, dialect = read_with_dialect(path)
    assert dialect["encoding_note"] == "not UTF-8: byte 0xf6 on line 3"
    assert describe_dialect(dialect).startswith("encoding cp1252 (not UTF-8: byte 0xf6 on line 3)")


def test_a_cp1252_byte_after_the_sample_is_still_found(tmp_path: Path) -> None:
    body = "".join(f"{i},plain ascii text\n" for i in range(SAMPLE_BYTES // 15))
    path = write(tmp_path / "x.csv", "n,text\n" + body + "99999,Schlüssel\n", "cp1252")
    assert path.stat().st_size > SAMPLE_BYTES
    df, dialect = read_with_dialect(path)
    assert dialect["encoding"] == "cp1252"
    assert df["text"].iloc[-1] == "Schlüssel"


def test_an_undecodable_file_names_the_encoding_setting(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n\x81\x8d,1\n")  # undefined in cp1252 and invalid UTF-8
    with pytest.raises(EdgeopsError) as err:
        read_files(path)
    msg = str(err.value)
    assert "neither UTF-8" in msg and "byte 0x81 on line 2" in msg
    assert "ingest.csv.encoding" in msg


def test_nul_bytes_without_a_bom_are_named(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes("a,b\n1,2\n".encode("utf-16-le"))
    with pytest.raises(EdgeopsError, match="NUL bytes") as err:
        read_files(path)
    assert "ingest.csv.encoding" in str(err.value)


def test_the_encoding_setting_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a,b\n1,Ä\n")  # valid UTF-8
    assert read_files(path)["b"].tolist() == ["Ä"]
    df, dialect = read_with_dialect(path, {"encoding": "cp1252"})
    assert df["b"].tolist() == ["Ã„"]  # what the setting says, even if wrong
    assert dialect["set"] == ["encoding"]
    with pytest.raises(EdgeopsError, match="is not valid utf-8") as err:
        read_files(write(tmp_path / "y.csv", "a,b\n1,Ä\n", "cp1252"), {"encoding": "utf-8"})
    assert "ingest.csv.encoding" in str(err.value)


# --- separator -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_separators(tmp_path: Path, sep: str) -> None:
    rows = [
        ["Zeit Stempel", "Typ", "Wert"],
        ["2026-01-05 06:00:00", "Gerät A", "1"],
        ["2026-01-05 06:01:00", "B", "2"],
    ]
    path = write(tmp_path / "x.csv", "\n".join(sep.join(r) for r in rows) + "\n", crlf=True)
    df, dialect = read_with_dialect(path)
    assert dialect["sep"] == sep
    assert list(df.columns) == ["Zeit Stempel", "Typ", "Wert"]
    assert df["Wert"].tolist() == [1, 2]
    assert pd.api.types.is_datetime64_any_dtype(df["Zeit Stempel"])


def test_semicolon_file_whose_decimal_commas_also_split_evenly(tmp_path: Path) -> None:
    # at ',' every line has 3 fields too: ';' must win
    path = write(tmp_path / "x.csv", "Temp, °C;Druck, bar\n1,5;2,5\n3,5;4,5\n")
    df, dialect = read_with_dialect(path)
    assert (dialect["sep"], dialect["decimal"]) == (";", ",")
    assert df["Temp, °C"].tolist() == [1.5, 3.5]


def test_the_separator_setting_wins_and_a_collapsed_header_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a;b;c\n1,5;2,5;x\n3,5;4,5;y\n")
    with pytest.raises(EdgeopsError) as err:
        read_files(path, {"sep": ","})
    msg = str(err.value)
    assert "the columns collapse into one" in msg and "'a;b;c'" in msg
    assert "ingest.csv.sep: ';'" in msg
    assert "Traceback" not in msg


def test_a_file_quoted_line_by_line_collapses_with_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", '"a;b;c"\n"1;2;3"\n"4;5;6"\n')
    with pytest.raises(EdgeopsError, match="collapse into one") as err:
        read_files(path)
    assert "ingest.csv.sep: ';'" in str(err.value)


def test_ragged_rows_at_two_separators_are_not_guessed(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a;b,c\n1;2\n1,2,3;4;5\n")
    with pytest.raises(EdgeopsError, match="cannot tell the column separator") as err:
        read_files(path)
    assert "ingest.csv.sep" in str(err.value)


def test_a_row_with_too_many_fields_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a;b\n1;2\n3;4;5\n")
    with pytest.raises(EdgeopsError, match=r"could not be read with sep ';'.*line 3") as err:
        read_files(path)
    assert "ingest.csv.sep" in str(err.value)


def test_a_separator_at_the_end_of_every_line(tmp_path: Path) -> None:
    df = read_files(write(tmp_path / "x.csv", "a;b;\n1;x;\n2;y;\n"))
    assert list(df.columns) == ["a", "b"]
    assert df["a"].tolist() == [1, 2] and df["b"].tolist() == ["x", "y"]
    df = read_files(write(tmp_path / "y.csv", "a;b\n1;x;\n2;y;\n"))  # only on the rows
    assert df["a"].tolist() == [1, 2] and df["b"].tolist() == ["x", "y"]


# --- decimal and thousands -----------------------------------------------------------------------


def test_decimal_comma_with_thousands_dots(tmp_path: Path) -> None:
    path = write(
        tmp_path / "x.csv",
        "Drehzahl;Temp;Datum\n1.450;297,8;05.01.2026\n12;-3,25;06.01.2026\n"
        "2.000.000;0,125;07.01.2026\n",
    )
    df, dialect = read_with_dialect(path)
    assert (dialect["decimal"], dialect["thousands"]) == (",", ".")
    assert df["Drehzahl"].tolist() == [1450, 12, 2_000_000]
    assert df["Drehzahl"].dtype == "int64"
    assert df["Temp"].tolist() == [297.8, -3.25, 0.125]
    # dates are never read as grouped numbers (05.01.2026 is not 5012026)
    assert df["Datum"].tolist() == [pd.Timestamp(f"2026-01-0{d}") for d in (5, 6, 7)]


def test_a_dot_decimal_is_never_read_as_a_thousands_group(tmp_path: Path) -> None:
    # thousands '.' detected from 1.234,5 in the first records: a 1.5 after them must not
    # become 15 (as pandas' thousands option would make it)
    body = "1.234,5;x\n" * (SAMPLE_BYTES // 10)
    path = write(tmp_path / "x.csv", "a;b\n" + body + "1.5;y\n")
    with pytest.raises(EdgeopsError) as err:
        read_files(path)
    msg = str(err.value)
    assert "column 'a' holds numbers written with '.' as the decimal mark (e.g. '1.5')" in msg
    assert "ingest.csv.decimal: '.'" in msg
    # both in the first records: stopped before reading
    small = write(tmp_path / "y.csv", "a;b\n1.234,5;x\n1.5;y\n")
    with pytest.raises(EdgeopsError, match="both decimal marks"):
        read_files(small)
    # set explicitly: 1.5 leaves the column text, it never becomes 15
    df = read_files(small, {"decimal": ",", "thousands": "."})
    assert df["a"].tolist() == ["1.234,5", "1.5"]


def test_swiss_thousands(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "Preis;Menge\n1'234.50;1'000\n12.5;7\n-9'999'999.25;3\n")
    df, dialect = read_with_dialect(path)
    assert (dialect["decimal"], dialect["thousands"]) == (".", "'")
    assert df["Preis"].tolist() == [1234.5, 12.5, -9999999.25]
    assert df["Menge"].tolist() == [1000, 7, 3]


def test_numbers_as_text_name_the_decimal_setting(tmp_path: Path) -> None:
    # a comma file with quoted decimal commas: read with '.', the column would be text
    path = write(tmp_path / "x.csv", 'a,b,c\n"1,5",2.5,x\n"3,5",4.5,y\n')
    with pytest.raises(EdgeopsError) as err:
        read_files(path)
    msg = str(err.value)
    assert "column 'a' holds numbers written with ',' as the decimal mark (e.g. '1,5')" in msg
    assert "ingest.csv.decimal: ','" in msg
    # the setting wins: the numbers are numbers
    assert read_files(path, {"decimal": ","})["a"].tolist() == [1.5, 3.5]


def test_both_decimal_marks_in_one_file_are_not_guessed(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a;b;c\n1.5;2,5;x\n3.5;4,5;y\n")
    with pytest.raises(EdgeopsError, match="both decimal marks") as err:
        read_files(path)
    assert "ingest.csv.decimal" in str(err.value)
    # set: the measurements in 'b' are numbers, 'a' (a version, say) stays text
    df = read_files(path, {"decimal": ","})
    assert df["b"].tolist() == [2.5, 4.5]
    assert df["a"].tolist() == ["1.5", "3.5"]


def test_an_ambiguous_decimal_mark_is_not_guessed(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "Drehzahl;Typ\n1.450;A\n2.125;B\n")
    with pytest.raises(EdgeopsError, match=r"cannot tell the decimal mark: '1\.450'") as err:
        read_files(path)
    assert "ingest.csv.decimal" in str(err.value)
    assert read_files(path, {"decimal": "."})["Drehzahl"].tolist() == [1.45, 2.125]
    overrides = {"decimal": ",", "thousands": "."}
    assert read_files(path, overrides)["Drehzahl"].tolist() == [1450, 2125]


def test_no_thousands_setting_keeps_grouped_numbers_text(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a;b\n1.234,5;x\n2,5;y\n")
    assert read_files(path)["a"].tolist() == [1234.5, 2.5]
    with pytest.raises(EdgeopsError, match="between digit groups") as err:
        read_files(path, {"thousands": ""})
    assert "ingest.csv.thousands: '.'" in str(err.value)


# --- dates ---------------------------------------------------------------------------------------


def test_day_first_dates_in_every_form(tmp_path: Path) -> None:
    path = write(
        tmp_path / "x.csv",
        "Tag;Zeit;Genau;Gemischt;Text\n"
        "05.01.2026;05.01.2026 06:00;05.01.2026 06:00:30;05.01.2026 06:00;05.01.2026 x\n"
        "31.12.2025;;1.2.2026 7:05:00;06.01.2026 07:00:15;13.01.2026\n",
        "cp1252",
        crlf=True,
    )
    df, dialect = read_with_dialect(path)
    assert df["Tag"].tolist() == [pd.Timestamp("2026-01-05"), pd.Timestamp("2025-12-31")]
    assert df["Zeit"].iloc[0] == pd.Timestamp("2026-01-05 06:00") and pd.isna(df["Zeit"].iloc[1])
    assert df["Genau"].tolist() == [
        pd.Timestamp("2026-01-05 06:00:30"),
        pd.Timestamp("2026-02-01 07:05:00"),
    ]
    assert df["Gemischt"].tolist() == [
        pd.Timestamp("2026-01-05 06:00"),
        pd.Timestamp("2026-01-06 07:00:15"),
    ]
    assert df["Text"].dtype == object  # not every value is a date
    assert dialect["dates"] == {
        "Tag": "%d.%m.%Y",
        "Zeit": "%d.%m.%Y %H:%M",
        "Genau": "%d.%m.%Y %H:%M:%S",
        "Gemischt": "%d.%m.%Y %H:%M:%S / %d.%m.%Y %H:%M",
    }
    assert "dates %d.%m.%Y in [Tag]" in describe_dialect(dialect)


def test_an_impossible_date_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "Tag;n\n05.01.2026;1\n31.02.2026;2\n")
    with pytest.raises(EdgeopsError, match=r"column 'Tag' holds dates .* '31\.02\.2026' is not"):
        read_files(path)


def test_the_date_format_setting_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "Tag;n\n01/05/2026 06:00;1\n01/06/2026 07:00;2\n")
    assert read_files(path)["Tag"].dtype == object
    df, dialect = read_with_dialect(path, {"date_format": "%m/%d/%Y %H:%M"})
    assert df["Tag"].tolist() == [
        pd.Timestamp("2026-01-05 06:00"),
        pd.Timestamp("2026-01-06 07:00"),
    ]
    assert dialect["dates"] == {"Tag": "%m/%d/%Y %H:%M"}


def test_iso_timestamps_are_reported_too(tmp_path: Path) -> None:
    _, dialect = read_with_dialect(write(tmp_path / "x.csv", "ts,n\n2026-01-05 06:00:00,1\n"))
    assert dialect["dates"] == {"ts": "ISO 8601"}


# --- settings, folders, parquet ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"sep": "ab"}, "ingest.csv.sep 'ab' is not a one-character separator"),
        ({"decimal": ";"}, "ingest.csv.decimal ';' is not '.' or ','"),
        ({"thousands": "x"}, "ingest.csv.thousands 'x' is not a thousands separator"),
        ({"thousands": ",", "decimal": ","}, "ingest.csv.thousands ',' is also the decimal mark"),
        ({"encoding": "klingon"}, "ingest.csv.encoding 'klingon' is not an encoding"),
        ({"date_format": "dd.mm.yyyy"}, "ingest.csv.date_format 'dd.mm.yyyy' is not a strftime"),
        ({"sep": 59}, "ingest.csv.sep must be text, got 59"),
    ],
)
def test_bad_settings_name_the_setting(cfg: dict, expected: str) -> None:
    with pytest.raises(EdgeopsError, match=expected):
        CsvOptions.from_params(cfg)


def test_settings_spellings() -> None:
    opts = CsvOptions.from_params(
        {"path": "x", "sep": "tab", "thousands": "none", "encoding": "Windows-1252"}
    )
    assert (opts.sep, opts.thousands, opts.encoding) == ("\t", "", "cp1252")
    assert opts.given() == ["sep", "thousands", "encoding"]
    assert CsvOptions.from_params(None) == CsvOptions()


def test_a_folder_of_files_in_different_dialects(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "Typ,Wert\nGerät,1.5\n")
    write(tmp_path / "b.csv", "Typ;Wert\nWärme;2,5\n", "cp1252", crlf=True)
    pd.DataFrame({"Typ": ["X"], "Wert": [3.5]}).to_parquet(tmp_path / "c.parquet")
    df, dialect = read_with_dialect(tmp_path)
    assert df["Typ"].tolist() == ["Gerät", "Wärme", "X"]
    assert df["Wert"].tolist() == [1.5, 2.5, 3.5]
    assert set(dialect["files"]) == {"a.csv", "b.csv"}
    assert dialect["files"]["b.csv"]["encoding"] == "cp1252"
    assert "a.csv: encoding utf-8" in describe_dialect(dialect)


def test_same_dialect_in_every_file_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "a;b\n1,5;x\n")
    write(tmp_path / "b.csv", "a;b\n2,5;y\n")
    _, dialect = read_with_dialect(tmp_path)
    assert dialect["sep"] == ";" and "files" not in dialect


def test_parquet_has_no_dialect(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    df, dialect = read_with_dialect(tmp_path / "x.parquet", {"sep": ";"})
    assert dialect is None and df["a"].tolist() == [1]


def test_bom_only_says_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(codecs.BOM_UTF8 + "a,b\n1,\xff\n".encode("latin-1"))
    with pytest.raises(EdgeopsError, match="byte order mark but is not UTF-8"):
        read_files(path)
