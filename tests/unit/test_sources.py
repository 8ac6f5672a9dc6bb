"""Where data comes from: the demo plant simulator, CSV/Parquet files, SQL databases."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeops.errors import EdgeopsError
from edgeops.sources import SOURCES, load_source, read_source
from edgeops.sources.csv import read_files, read_with_dialect
from edgeops.sources.simulator import SCENARIOS, simulate
from edgeops.sources.sql import read_sql
from tests.unit.conftest import PLANT_FEATURES

# --- the simulator -------------------------------------------------------------------------------


def test_simulator_columns_and_types() -> None:
    df = simulate(rows=2000, seed=1)
    assert list(df.columns) == ["timestamp", *PLANT_FEATURES, "failure"]
    assert len(df) == 2000
    assert pd.api.types.is_datetime64_any_dtype(df["timestamp"])
    assert df["timestamp"].is_monotonic_increasing and df["timestamp"].is_unique
    assert set(df["failure"].unique()) == {0, 1}
    assert set(df["machine_type"]) == {"L", "M", "H"}


def test_simulator_same_seed_same_frame_other_seed_differs() -> None:
    a = simulate(rows=2000, seed=3)
    pd.testing.assert_frame_equal(a, simulate(rows=2000, seed=3))
    assert not a.equals(simulate(rows=2000, seed=4))
    assert not a.equals(simulate(rows=2000, seed=3, scenario="hot_summer"))


def test_simulator_failure_rate_and_sensor_dropouts() -> None:
    df = simulate(rows=20_000, seed=11)
    assert 0.02 <= df["failure"].mean() <= 0.07
    assert 0.005 <= df["vibration_mm_s"].isna().mean() <= 0.015
    assert 0.001 <= df["air_temp_k"].isna().mean() <= 0.01
    other = df.drop(columns=["vibration_mm_s", "air_temp_k"])
    assert not other.isna().any().any()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_stays_inside_the_demo_schema(plant_schema, scenario: str) -> None:
    """Drift scenarios shift the data but still pass the reviewed contract's ranges."""
    df = simulate(rows=4000, seed=5, scenario=scenario)
    assert list(df.columns) == plant_schema.names
    for col in plant_schema.columns:
        s = df[col.name].dropna()
        if col.type == "numeric":
            assert s.between(col.min, col.max).all(), col.name
        elif col.type == "categorical":
            assert set(s.unique()) <= set(col.categories), col.name
        assert df[col.name].isna().mean() <= col.max_null_share, col.name


def test_hot_summer_raises_air_temperature_by_6_kelvin() -> None:
    base = simulate(rows=3000, seed=2)
    hot = simulate(rows=3000, seed=2, scenario="hot_summer")
    assert hot["air_temp_k"].mean() - base["air_temp_k"].mean() == pytest.approx(6.0, abs=0.05)
    assert hot["process_temp_k"].mean() - base["process_temp_k"].mean() == pytest.approx(
        6.0, abs=0.05
    )
    pd.testing.assert_series_equal(hot["torque_nm"], base["torque_nm"])
    pd.testing.assert_series_equal(hot["machine_type"], base["machine_type"])


def test_biased_sensor_reads_torque_15_percent_high_but_failures_are_unchanged() -> None:
    base = simulate(rows=3000, seed=2)
    biased = simulate(rows=3000, seed=2, scenario="biased_sensor")
    assert biased["torque_nm"].mean() / base["torque_nm"].mean() == pytest.approx(1.15, abs=0.002)
    np.testing.assert_allclose(biased["torque_nm"], base["torque_nm"] * 1.15, atol=0.012)
    # the sensor is wrong, the machine is not: the same machines fail
    pd.testing.assert_series_equal(biased["failure"], base["failure"])
    pd.testing.assert_series_equal(biased["air_temp_k"], base["air_temp_k"])


def test_new_product_mix_shifts_machine_types_and_product_lines() -> None:
    base = simulate(rows=4000, seed=2)["machine_type"].value_counts(normalize=True)
    mixed_df = simulate(rows=4000, seed=2, scenario="new_product_mix")
    mixed = mixed_df["machine_type"].value_counts(normalize=True)
    assert base["L"] == pytest.approx(0.5, abs=0.03)
    assert base["H"] == pytest.approx(0.2, abs=0.03)
    assert mixed["L"] == pytest.approx(0.2, abs=0.03)
    assert mixed["H"] == pytest.approx(0.5, abs=0.03)
    lines = mixed_df["product_line"].value_counts(normalize=True)
    assert lines["spindle"] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"scenario": "winter"}, "'winter'"),
        ({"scenario": "Baseline"}, "'Baseline'"),
        ({"rows": 0}, "rows must be >= 1, got 0"),
        ({"rows": -5}, "got -5"),
    ],
)
def test_simulator_bad_arguments(kwargs, expected: str) -> None:
    with pytest.raises(EdgeopsError) as err:
        simulate(**kwargs)
    assert expected in str(err.value)
    if "scenario" in kwargs:
        assert "hot_summer" in str(err.value)  # the fix lists the scenarios there are


# --- CSV / Parquet files -------------------------------------------------------------------------


def test_read_a_csv_file_gives_back_the_frame(tmp_path: Path) -> None:
    df = simulate(rows=300, seed=1)
    df.to_csv(tmp_path / "plant.csv", index=False)
    back = read_files(tmp_path / "plant.csv")
    # timestamps come back as datetimes (not text), as the schema's timestamp type needs
    assert pd.api.types.is_datetime64_any_dtype(back["timestamp"])
    pd.testing.assert_frame_equal(back, df, check_dtype=False, check_exact=False)


def test_read_a_parquet_file(tmp_path: Path) -> None:
    df = simulate(rows=300, seed=1)
    df.to_parquet(tmp_path / "plant.parquet", index=False)
    pd.testing.assert_frame_equal(read_files(str(tmp_path / "plant.parquet")), df)


def test_read_a_folder_stacks_csv_and_parquet_in_name_order(tmp_path: Path) -> None:
    # written in another order than their names sort in
    pd.DataFrame({"id": [5, 6], "v": ["e", "f"]}).to_csv(tmp_path / "c_last.csv", index=False)
    pd.DataFrame({"id": [1, 2], "v": ["a", "b"]}).to_parquet(tmp_path / "a_first.parquet")
    pd.DataFrame({"id": [3, 4], "v": ["c", "d"]}).to_csv(tmp_path / "b_middle.csv", index=False)
    (tmp_path / "README.txt").write_text("not data\n")
    (tmp_path / "sub").mkdir()
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "sub" / "ignored.csv", index=False)

    df = read_files(tmp_path)
    assert df["id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert df["v"].tolist() == list("abcdef")
    assert df.index.tolist() == list(range(6))


def test_csv_timestamps_and_plain_text(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "when,day,code,bad_date,zone\n"
        "2026-01-05 06:00:00,2026-01-05,A-1,2026-13-45,2026-01-05T06:00:00+01:00\n"
        "2026-01-05T06:01:30.5,,B-2,2026-01-01,2026-01-05T06:01:00+01:00\n"
    )
    df = read_files(tmp_path / "t.csv")
    assert df["when"].tolist() == [
        pd.Timestamp("2026-01-05 06:00:00"),
        pd.Timestamp("2026-01-05 06:01:30.5"),
    ]
    assert pd.api.types.is_datetime64_any_dtype(df["day"])
    assert df["day"].isna().tolist() == [False, True]
    # not timestamps (or not valid ones): left as text
    assert df["code"].tolist() == ["A-1", "B-2"]
    assert df["bad_date"].tolist() == ["2026-13-45", "2026-01-01"]
    assert df["zone"].dtype == object


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text("a,b,c\n"), "has a header but no rows"),
        (lambda p: p.write_text("\n\n"), "could not be read"),
        (lambda p: p.write_bytes(b"a,b\n\x81\x8d,1\n"), "neither UTF-8"),
    ],
    ids=["missing", "zero_bytes", "header_only", "blank_lines", "undecodable"],
)
def test_read_files_errors_on_a_bad_csv(tmp_path: Path, make, expected: str) -> None:
    path = tmp_path / "plant.csv"
    make(path)
    with pytest.raises(EdgeopsError, match=expected) as err:
        read_files(path)
    assert str(path) in str(err.value)


def test_read_files_errors_on_a_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "plant.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(EdgeopsError, match="could not be read"):
        read_files(path)


def test_read_files_rejects_other_file_types(tmp_path: Path) -> None:
    path = tmp_path / "plant.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(EdgeopsError, match=r"is not a \.csv or \.parquet file"):
        read_files(path)


def test_read_files_folder_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x\n")
    with pytest.raises(EdgeopsError, match="holds no .csv or .parquet files"):
        read_files(tmp_path)


def test_read_files_folder_with_mismatched_columns(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "1.csv", index=False)
    pd.DataFrame({"a": [3], "c": [4]}).to_csv(tmp_path / "2.csv", index=False)
    with pytest.raises(EdgeopsError) as err:
        read_files(tmp_path)
    msg = str(err.value)
    assert "2.csv" in msg and "1.csv" in msg
    assert "missing ['b']" in msg and "extra ['c']" in msg


def test_read_files_folder_with_one_empty_file(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "1.csv", index=False)
    (tmp_path / "2.csv").write_bytes(b"")
    with pytest.raises(EdgeopsError, match=r"2\.csv is empty"):
        read_files(tmp_path)


# --- the same rows, however they were exported ---------------------------------------------------


def _export_rows() -> pd.DataFrame:
    """Readings as a Swiss plant exports them: names and categories with spaces and umlauts."""
    return pd.DataFrame(
        {
            "Zeitstempel": pd.to_datetime(
                ["2026-01-05 06:00", "2026-01-05 06:15", "2026-01-31 23:59", "2026-02-01 00:00"]
            ),
            "Lufttemperatur K": [297.8, 298.15, None, -3.5],
            "Drehzahl U/min": [1450, 12, 2000000, 1500],
            "Maschinentyp": ["Gerät A", "Wärmetauscher B", "Gerät A", "Öl-Pumpe"],
            "Stufe": [1, 2, 3, 1],
            "Ausfall": ["ja", "nein", "nein", "ja"],
        }
    )


def _excel_export(df: pd.DataFrame) -> str:
    """``df`` as German/Swiss Excel writes it: ';', decimal comma, thousands dots, dd.mm.yyyy."""
    lines = [";".join(df.columns)]
    for row in df.itertuples(index=False):
        cells = [
            row[0].strftime("%d.%m.%Y %H:%M"),
            "" if pd.isna(row[1]) else repr(row[1]).replace(".", ","),
            f"{row[2]:,}".replace(",", "."),
            row[3],
            str(row[4]),
            row[5],
        ]
        lines.append(";".join(cells))
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8-sig"])
def test_an_excel_export_reads_like_a_utf8_csv_and_an_sql_table(tmp_path: Path, encoding) -> None:
    df = _export_rows()
    excel = tmp_path / "excel.csv"
    excel.write_bytes(_excel_export(df).encode(encoding))
    plain = tmp_path / "plain.csv"
    df.to_csv(plain, index=False)  # UTF-8, ',', '.', ISO timestamps, LF
    db = tmp_path / "plant.db"
    with sqlite3.connect(db) as conn:
        df.to_sql("readings", conn, index=False)
    conn.close()

    from_excel, dialect = read_with_dialect(excel)
    from_plain = read_files(plain)
    from_sql = read_sql(f"sqlite:///{db}", table="readings")
    pd.testing.assert_frame_equal(from_excel, from_plain)
    pd.testing.assert_frame_equal(from_excel, from_sql)
    pd.testing.assert_frame_equal(from_excel, df)
    assert from_excel["Maschinentyp"].tolist() == [
        "Gerät A",
        "Wärmetauscher B",
        "Gerät A",
        "Öl-Pumpe",
    ]
    assert from_excel["Stufe"].dtype == "int64"  # whole numbers stay ints
    assert dialect == {
        "encoding": encoding,
        "encoding_note": "not UTF-8: byte 0xe4 on line 2"
        if encoding == "cp1252"
        else "UTF-8 with BOM",
        "sep": ";",
        "decimal": ",",
        "thousands": ".",
        "dates": {"Zeitstempel": "%d.%m.%Y %H:%M"},
        "line_endings": "CRLF",
        "set": [],
    }


def test_read_source_reports_the_dialect_and_uses_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a|b\n1|x\n2|y\n")
    df, detected = read_source({"source": "csv", "csv": {"path": str(path)}})
    assert detected["csv"]["sep"] == "|" and df["a"].tolist() == [1, 2]
    with pytest.raises(EdgeopsError, match="collapse into one"):
        read_source({"source": "csv", "csv": {"path": str(path), "sep": ";"}})
    assert read_source({"source": "simulator", "simulator": {"rows": 10}})[1] == {}


def test_ingest_drops_the_schema_drop_columns(tmp_path: Path, params) -> None:
    from edgeops.schema import schema_from_dict
    from edgeops.stages.ingest import drop_columns, read

    raw = copy.deepcopy(params["validate"]["schema"])
    raw["drop"] = ["note", "record_id", "vibration_mm_s", "not_in_the_data"]
    schema = schema_from_dict(raw)
    df = simulate(rows=50, seed=1)
    df.insert(0, "record_id", range(len(df)))
    df["note"] = "Lärm an Spindel"
    df.to_csv(tmp_path / "plant.csv", index=False)
    got, detected = read({"source": "csv", "csv": {"path": str(tmp_path / "plant.csv")}})
    kept, dropped = drop_columns(got, schema)
    # dropped and not a schema column: gone; vibration_mm_s is also a column: kept (not a feature)
    assert dropped == ["record_id", "note"]
    assert list(kept.columns) == schema.names
    assert detected["csv"]["dates"] == {"timestamp": "ISO 8601"}
    again, none = drop_columns(kept, schema)  # nothing left to drop
    assert none == [] and list(again.columns) == schema.names


# --- SQL databases -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plant_db(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A real SQLite file with 300 simulated readings in table ``readings``."""
    df = simulate(rows=300, seed=9)
    path = tmp_path_factory.mktemp("sql") / "plant.db"
    with sqlite3.connect(path) as conn:
        df.to_sql("readings", conn, index=False)
    conn.close()
    return path, df


def test_read_sql_table(plant_db) -> None:
    path, df = plant_db
    back = read_sql(f"sqlite:///{path}", table="readings")
    assert pd.api.types.is_datetime64_any_dtype(back["timestamp"])  # SQLite keeps text
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_read_sql_query(plant_db) -> None:
    path, df = plant_db
    back = read_sql(
        f"sqlite:///{path}",
        query="SELECT machine_type, torque_nm FROM readings "
        "WHERE failure = 1 ORDER BY torque_nm DESC",
    )
    expected = df.loc[df["failure"] == 1, "torque_nm"].sort_values(ascending=False)
    assert list(back.columns) == ["machine_type", "torque_nm"]
    assert back["torque_nm"].tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"table": "readings", "query": "SELECT 1"}, "exactly one of 'query' or 'table'"),
        ({}, "exactly one of 'query' or 'table'"),
        ({"table": "readings; DROP TABLE readings"}, "is not a plain table name"),
        ({"table": "nope"}, "no such table: nope"),
        ({"query": "SELEKT * FROM readings"}, "could not run the query"),
        ({"query": "SELECT * FROM readings WHERE 1 = 0"}, "returned no rows"),
    ],
    ids=["both", "neither", "injection", "no_table", "bad_sql", "no_rows"],
)
def test_read_sql_errors(plant_db, kwargs, expected: str) -> None:
    path, df = plant_db
    with pytest.raises(EdgeopsError, match=expected):
        read_sql(f"sqlite:///{path}", **kwargs)
    assert len(read_sql(f"sqlite:///{path}", table="readings")) == len(df)  # table untouched


def test_read_sql_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(EdgeopsError, match="does not exist"):
        read_sql(f"sqlite:///{path}", table="readings")
    assert not path.exists()


def test_read_sql_without_url() -> None:
    with pytest.raises(EdgeopsError, match="ingest.sql.url is not set"):
        read_sql(None, table="readings")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ml:secret@127.0.0.1:1/plant",
        "postgresql+psycopg://ml:secret@127.0.0.1:1/plant",
        "postgresql://:secret@127.0.0.1:1/plant",  # no user name
        "postgresql://ml:secret@127.0.0.1:notaport/plant",  # a typo in the port
        "postgresql:/ml:secret@127.0.0.1/plant",  # too malformed to parse
        "nodriver+x://ml:secret@127.0.0.1:1/plant",  # an unknown dialect
    ],
)
def test_read_sql_never_shows_the_password(url: str) -> None:
    """Connecting fails (no server or no driver here): the message must not leak the password."""
    with pytest.raises(EdgeopsError) as err:
        read_sql(url, table="readings")
    msg = str(err.value)
    assert "secret" not in msg
    assert "127.0.0.1" in msg  # still says which database


# --- load_source: ingest.source picks the reader -------------------------------------------------


def test_load_source_simulator() -> None:
    cfg = {"source": "simulator", "simulator": {"rows": 200, "seed": 5, "scenario": "hot_summer"}}
    pd.testing.assert_frame_equal(
        load_source(cfg), simulate(rows=200, seed=5, scenario="hot_summer")
    )
    # no source named: the simulator
    pd.testing.assert_frame_equal(
        load_source({"simulator": {"rows": 50, "seed": 1}}), simulate(rows=50, seed=1)
    )


def test_load_source_csv_and_sql(tmp_path: Path, plant_db) -> None:
    db, df = plant_db
    df.to_csv(tmp_path / "plant.csv", index=False)
    from_csv = load_source({"source": "csv", "csv": {"path": str(tmp_path)}})
    from_sql = load_source(
        {"source": "sql", "sql": {"url": f"sqlite:///{db}", "table": "readings", "query": None}}
    )
    pd.testing.assert_frame_equal(from_csv, from_sql, check_dtype=False)
    assert len(from_csv) == len(df)


def test_load_source_csv_without_path() -> None:
    with pytest.raises(EdgeopsError, match="ingest.csv.path is not set"):
        load_source({"source": "csv", "csv": {"path": None}})


def test_load_source_unknown_source() -> None:
    with pytest.raises(EdgeopsError, match="'excel'") as err:
        load_source({"source": "excel"})
    for name in SOURCES:
        assert name in str(err.value)


def test_the_ingest_stage_logs_and_records_the_dialect_and_the_drops(
    tmp_path: Path, run_cmd
) -> None:
    import json
    import sys

    import yaml

    df = _export_rows()
    lines = _excel_export(df).split("\r\n")  # with an order number in front of each row
    lines = ["Auftrag Nr;" + lines[0]] + [f"{i};{line}" for i, line in enumerate(lines[1:-1])]
    (tmp_path / "export.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    params = {
        "ingest": {
            "source": "csv",
            "csv": {"path": "export.csv"},
            "production": {"include": False},
        },
        "validate": {
            "schema": {
                "target": "Ausfall",
                "min_rows": 4,
                "drop": ["Auftrag Nr"],
                "columns": [
                    {"name": "Zeitstempel", "type": "timestamp"},
                    {"name": "Lufttemperatur K", "type": "numeric", "max_null_share": 0.5},
                    {"name": "Drehzahl U/min", "type": "numeric"},
                    {
                        "name": "Maschinentyp",
                        "type": "categorical",
                        "categories": ["Gerät A", "Wärmetauscher B", "Öl-Pumpe"],
                    },
                    {"name": "Stufe", "type": "numeric"},
                    {"name": "Ausfall", "type": "categorical", "categories": ["ja", "nein"]},
                ],
            }
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    proc = run_cmd([sys.executable, "-m", "edgeops.stages.ingest"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "edgeops ingest: csv: encoding cp1252 (not UTF-8: byte 0xe4 on line 2), sep ';', "
        "decimal ',', thousands '.', dates %d.%m.%Y %H:%M in [Zeitstempel]"
    ) in proc.stderr
    assert "dropped ['Auftrag Nr'] (validate.schema.drop): not stored" in proc.stderr
    report = json.loads((tmp_path / "reports/ingest.json").read_text())
    assert report["csv"]["encoding"] == "cp1252" and report["csv"]["sep"] == ";"
    assert report["dropped"] == ["Auftrag Nr"]
    stored = pd.read_parquet(tmp_path / "data/raw/dataset.parquet")
    assert "Auftrag Nr" not in stored.columns
    pd.testing.assert_frame_equal(stored, df)
