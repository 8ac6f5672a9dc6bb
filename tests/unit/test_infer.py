"""`edgeops schema infer`: a proposal that is right the first time, and passes on its own data."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from edgeops.cli import app
from edgeops.errors import EdgeopsError
from edgeops.infer import Proposal, model_slug, propose
from edgeops.monitor.quality import check_contract
from edgeops.schema import CATEGORICAL, NUMERIC, TIMESTAMP, Schema, schema_from_dict
from edgeops.sources.csv import read_files
from edgeops.stages.ingest import drop_columns
from edgeops.stages.split import check_workable, rows_per_class, split, workable_rows
from tests.unit.conftest import REPO


def reviewed(proposal: Proposal) -> Schema:
    """The proposal as a person pastes it into params.yaml and the pipeline reads it."""
    return schema_from_dict(yaml.safe_load(proposal.to_yaml("proposed\nfor review")))


def assert_passes_on_its_own_data(df: pd.DataFrame, proposal: Proposal) -> pd.DataFrame:
    """ingest's drop, then the contract validate checks (exact column set, rows, every column)."""
    schema = reviewed(proposal)
    stored, _ = drop_columns(df, schema)
    assert sorted(stored.columns) == sorted(schema.names)  # validate: exact column set
    report = check_contract(stored, schema, require_target=True, min_rows=schema.min_rows)
    assert report["success"], report["failures"]
    return stored


def machines(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small export: an order number, free-text remarks, readings, a ja/nein label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Auftrag Nr": np.arange(5000, 5000 + n),
            "Zeitstempel": pd.date_range("2026-01-05 06:00", periods=n, freq="15min"),
            "Lufttemperatur K": rng.normal(298.0, 2.0, n).round(1),
            "Maschinentyp": rng.choice(["Gerät A", "Wärmetauscher B", "Öl-Pumpe"], n),
            "Bemerkung": [f"Kontrolle {i}: Lärm an Spindel {i % 7}" for i in range(n)],
            "Ausfall": np.where(np.arange(n) % 3 == 0, "ja", "nein"),
        }
    )


# --- the proposal --------------------------------------------------------------------------------


def test_ids_and_free_text_are_proposed_under_drop_with_the_reason() -> None:
    df = machines()
    p = propose(df, "Ausfall", source="export")
    assert p.schema.drop == ("Auftrag Nr", "Bemerkung")
    assert "Auftrag Nr" not in p.schema.names and "Bemerkung" not in p.schema.names
    assert p.dropped["Auftrag Nr"].startswith("ID-like")
    assert p.dropped["Bemerkung"].startswith("free text")
    text = p.to_yaml()
    assert re.search(r"- Auftrag Nr +# ID-like", text)
    assert re.search(r"- Bemerkung +# free text", text)
    schema = reviewed(p)
    assert [c.name for c in schema.features] == ["Lufttemperatur K", "Maschinentyp"]
    assert schema.column("Zeitstempel").type == TIMESTAMP
    assert schema.column("Maschinentyp").categories == ("Gerät A", "Wärmetauscher B", "Öl-Pumpe")
    assert p.model_name == "export-ausfall"
    assert_passes_on_its_own_data(df, p)


@pytest.mark.parametrize(
    ("name", "values", "why"),
    [
        ("record_id", list(range(100)), "named like an identifier"),
        ("OrderID", [f"A{i:04d}" for i in range(100)], "named like an identifier"),
        ("Seriennummer", [f"S{i}" for i in range(100)], "named like an identifier"),
        ("Unnamed: 0", list(range(100)), "named like an identifier"),  # a pandas index export
        ("counter", list(range(7, 107)), "counting up"),
        ("serial", [f"SN-{i * 7919 % 10007:05d}" for i in range(100)], "different value"),
        ("empty", [None] * 100, "empty in every row"),
    ],
)
def test_id_like_columns(name: str, values: list[Any], why: str) -> None:
    df = machines(100).drop(columns=["Auftrag Nr", "Bemerkung"])
    df[name] = values
    p = propose(df, "Ausfall")
    assert p.schema.drop == (name,)
    assert why in p.dropped[name]
    assert_passes_on_its_own_data(df, p)


def test_measurements_and_repeating_codes_are_not_ids() -> None:
    df = machines(100).drop(columns=["Auftrag Nr", "Bemerkung"])
    rng = np.random.default_rng(1)
    df["Drehzahl"] = rng.permutation(np.arange(1000, 3000, 20))  # unique whole numbers, unordered
    df["Linie Nr"] = np.arange(100) % 3 + 1  # named like an ID, but 3 values
    df["machine_id"] = np.where(np.arange(100) % 2, "M1", "M2")
    p = propose(df, "Ausfall")
    assert p.schema.drop == ()
    assert p.schema.column("Drehzahl").type == NUMERIC
    assert p.schema.column("machine_id").categories == ("M1", "M2")
    assert any("'Linie Nr' is named like an identifier but repeats" in n for n in p.notes)


def test_user_drops_and_id_columns() -> None:
    df = machines()
    p = propose(df, "Ausfall", drop=["Maschinentyp"], id_columns=["Auftrag Nr"])
    assert p.dropped["Auftrag Nr"] == "an ID column (--id-columns)"
    assert p.dropped["Maschinentyp"] == "listed with --drop"
    with pytest.raises(EdgeopsError, match=r"--drop 'Typ' is not a column of the data"):
        propose(df, "Ausfall", drop=["Typ"])
    with pytest.raises(EdgeopsError, match=r"--id-columns 'Ausfall' is the target"):
        propose(df, "Ausfall", id_columns=["Ausfall"])
    with pytest.raises(EdgeopsError, match="no feature columns left"):
        propose(df, "Ausfall", drop=["Lufttemperatur K", "Maschinentyp"])


def test_numbers_with_placeholders_are_dropped_saying_how_to_fix_the_export() -> None:
    df = machines(100)
    df["Druck"] = [f"{1 + i / 100:.2f}" if i % 10 else "-" for i in range(100)]
    p = propose(df, "Ausfall")
    assert "numbers, but also ['-']" in p.dropped["Druck"]
    assert "empty cells" in p.dropped["Druck"]


@pytest.mark.parametrize(
    ("labels", "minority", "positive"),
    [
        (["ja", "nein"], "nein", "ja"),  # the word wins, frequent or not
        (["Nein", "Ja"], "Nein", "Ja"),
        (["yes", "no"], "yes", "yes"),
        (["OK", "Fehler"], "Fehler", "Fehler"),
        (["running", "Ausfall"], "running", "Ausfall"),
        ([0, 1], 0, 1),
        ([True, False], True, True),
        (["true", "false"], "false", "true"),
        (["good", "bad"], "bad", "bad"),  # no word: the minority
        ([1, 2], 2, 2),  # 1 is not "yes" next to 2: the minority
    ],
)
def test_positive_class(labels: list[Any], minority: Any, positive: Any) -> None:
    major = next(v for v in labels if v != minority)
    df = pd.DataFrame(
        {"x": np.arange(60) % 7 * 1.5, "y": [minority if i % 3 == 0 else major for i in range(60)]}
    )
    p = propose(df, "y")
    assert p.schema.positive_class == positive
    schema = reviewed(p)  # through YAML: "yes" stays the string 'yes', not True
    assert schema.positive_class == positive
    assert type(schema.positive_class) is type(positive)
    assert_passes_on_its_own_data(df, p)


def test_more_than_two_classes_get_no_positive_class() -> None:
    df = pd.DataFrame({"x": np.arange(90) * 0.5, "y": ["a", "b", "c"] * 30})
    p = propose(df, "y")
    assert p.schema.positive_class is None
    assert "positive_class" not in p.to_yaml()
    assert p.schema.min_rows == 45


def test_min_rows_never_above_the_rows_seen() -> None:
    df = pd.DataFrame({"x": np.arange(24) * 1.0, "y": ["a", "b"] * 12})
    assert propose(df, "y").schema.min_rows == 20  # the workable minimum, above half (12)
    df = pd.DataFrame({"x": np.arange(20) * 1.0, "y": ["a", "b"] * 10})
    assert propose(df, "y").schema.min_rows == 20  # = the rows seen
    df = pd.DataFrame({"x": np.arange(2000) * 1.0, "y": ["a", "b"] * 1000})
    assert propose(df, "y").schema.min_rows == 1000
    df = pd.DataFrame({"x": np.arange(8) * 1.0, "y": ["a", "b"] * 4})
    assert propose(df, "y", test_size=0.5).schema.min_rows == 8  # 4 per class at 0.5


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        (["a", None, "b", "a"] * 10, "the target 'y' is empty in 10 of 40 rows"),
        ([0.5, 1.5, 2.5, 3.5] * 10, "holds measurements"),
        ([f"c{i}" for i in range(60)], "60 distinct values: too many classes"),
        (["a"] * 40, "one class only ('a')"),
    ],
)
def test_target_problems(y: list[Any], expected: str) -> None:
    df = pd.DataFrame({"x": np.arange(len(y)) * 1.0, "y": y})
    with pytest.raises(EdgeopsError, match=re.escape(expected)):
        propose(df, "y")


def test_a_float_target_of_whole_numbers_gets_int_classes() -> None:
    df = pd.DataFrame({"x": np.arange(40) * 1.0, "y": [0.0, 1.0] * 20})
    p = propose(df, "y")
    assert p.schema.classes == [0, 1] and all(type(c) is int for c in p.schema.classes)
    assert "categories: [0, 1]" in p.to_yaml()
    assert_passes_on_its_own_data(df, p)


def _awkward(n: int = 80) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(3)
    i = np.arange(n)
    label = np.where(i % 4 == 0, "Fehler", "OK")
    nulls = pd.DataFrame(
        {
            "temp": np.where(i % 3 == 0, np.nan, rng.normal(20, 1, n)),
            "typ": np.where(i % 5 == 0, None, np.where(i % 2, "A", "B")),
            "ts": pd.Series(pd.date_range("2026-01-01", periods=n, freq="h")).where(i % 7 != 0),
            "label": label,
        }
    )
    negatives = pd.DataFrame(
        {
            "below": -rng.uniform(1, 50, n),
            "across": rng.uniform(-5, 5, n),
            "at_zero": np.where(i % 2, 0.0, -0.0),
            "label": label,
        }
    )
    single = pd.DataFrame(
        {
            "zero": np.zeros(n),
            "minus": np.full(n, -7.5),
            "big": np.full(n, 1e12),
            "tiny": 1e-9 + i * 1e-12,
            "one_cat": ["nur ein Wert"] * n,
            "flag": i % 2 == 0,
            "label": label,
        }
    )
    umlauts = pd.DataFrame(
        {
            "Maschinentyp": rng.choice(["Gerät A", "Wärmetauscher B", "Öl-Pumpe", " führend"], n),
            "Stufe": rng.choice([1, 2, 3], n),
            "Druck bar": rng.uniform(1, 2, n),
            "label": np.where(i % 4 == 0, "ja", "nein"),
        }
    )
    timestamps = pd.DataFrame(
        {
            "Zeit": pd.date_range("2026-03-29 00:00", periods=n, freq="37min"),
            "Tag": pd.date_range("2026-01-01", periods=n, freq="D"),
            "wert": rng.normal(0, 1, n),
            "label": i % 4 == 0,
        }
    )
    return {
        "nulls": nulls,
        "negatives": negatives,
        "single_values": single,
        "umlauts": umlauts,
        "timestamps": timestamps,
    }


@pytest.mark.parametrize("case", list(_awkward()))
def test_the_proposal_passes_on_awkward_data(case: str) -> None:
    df = _awkward()[case]
    assert_passes_on_its_own_data(df, propose(df, "label", source=case))


def test_the_proposal_passes_on_data_read_from_an_excel_export(tmp_path: Path) -> None:
    df = machines(80)
    text = df.to_csv(index=False, sep=";", decimal=",", date_format="%d.%m.%Y %H:%M")
    (tmp_path / "export.csv").write_bytes(text.replace("\n", "\r\n").encode("cp1252"))
    back = read_files(tmp_path / "export.csv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    stored = assert_passes_on_its_own_data(back, propose(back, "Ausfall"))
    assert stored["Maschinentyp"].isin(["Gerät A", "Wärmetauscher B", "Öl-Pumpe"]).all()


def test_the_proposal_passes_great_expectations_too() -> None:
    """The same check with the validate stage itself (GX), on the awkward frames at once."""
    from edgeops.stages.validate import failure_lines, validate

    cases = _awkward()
    df = pd.concat([cases["nulls"], cases["umlauts"].drop(columns="label")], axis=1)
    df["minus"] = cases["single_values"]["minus"]
    df["zero"] = cases["single_values"]["zero"]
    p = propose(df, "label")
    stored, _ = drop_columns(df, reviewed(p))
    summary = validate(stored, reviewed(p))
    assert summary["success"], failure_lines(summary)


@pytest.mark.parametrize(
    ("source", "target", "slug"),
    [
        ("plant", "failure", "plant-failure"),
        ("Export Größe 2026", "Ausfall", "export-groesse-2026-ausfall"),
        ("Übersicht", "Öl", "uebersicht-oel"),
        ("Café", "y", "cafe-y"),
        (None, "Quality Class", "quality-class"),
        ("a" * 80, "y", "a" * 64),
        ("", "§§", "model"),
    ],
)
def test_model_slug(source: str | None, target: str, slug: str) -> None:
    assert model_slug(source, target) == slug
    assert re.fullmatch(r"[a-z0-9-]+", model_slug(source, target))


# --- small data ----------------------------------------------------------------------------------


def test_rows_needed() -> None:
    assert rows_per_class(0.2) == 10
    assert rows_per_class(0.8) == 10
    assert rows_per_class(0.25) == 8
    assert rows_per_class(0.5) == 4
    assert rows_per_class(0.1) == 20
    assert workable_rows(3, 0.2) == 30


def test_five_rows_give_one_clear_message() -> None:
    y = pd.Series(["ja", "nein", "nein", "ja", "nein"], name="Ausfall")
    with pytest.raises(EdgeopsError) as err:
        check_workable(y, 0.2)
    msg = str(err.value)
    assert "too few rows to train and test" in msg
    assert "every class of 'Ausfall' needs at least 10 rows" in msg
    assert "classes ['nein', 'ja'] of 'Ausfall' have fewer than 10 rows ('nein': 3, 'ja': 2)" in msg
    assert "at least 20 rows in all (5 now)" in msg
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "Ausfall": y})
    with pytest.raises(EdgeopsError, match="too few rows to train and test"):
        propose(df, "Ausfall")


def test_only_the_short_classes_are_named() -> None:
    y = pd.Series(["a"] * 50 + ["b"] * 12 + ["c"] * 3, name="y")
    with pytest.raises(EdgeopsError) as err:
        check_workable(y, 0.2)
    msg = str(err.value)
    assert "classes ['c'] of 'y' have fewer than 10 rows ('c': 3)" in msg
    assert "at least 72 rows in all (65 now)" in msg
    with pytest.raises(EdgeopsError, match=r"fewer than 4 rows \('c': 3\)"):
        check_workable(y, 0.5)  # 50/50 needs 4 per class
    check_workable(pd.Series(["a"] * 10 + ["b"] * 10), 0.2)  # exactly enough
    check_workable(pd.Series(["a"] * 4 + ["b"] * 4), 0.5)
    with pytest.raises(EdgeopsError, match=r"classes \[1\] of 'y' have fewer than 2 rows"):
        check_workable(pd.Series([0] * 100 + [1], name="y"), 0.2)
    with pytest.raises(EdgeopsError, match=r"has one class only \(0\) in 3 rows"):
        check_workable(pd.Series([0, 0, 0], name="y"), 0.2)


def test_split_on_five_rows_is_one_message_not_a_traceback(plant_df, plant_schema) -> None:
    small = plant_df.head(5).copy()
    small.loc[small.index[:2], "failure"] = 1
    for time_column in (None, "timestamp"):
        with pytest.raises(EdgeopsError, match="too few rows to train and test"):
            split(small, plant_schema, time_column=time_column)


def test_a_time_split_needs_every_class_on_both_sides(plant_df, plant_schema) -> None:
    plant_df["failure"] = 0
    plant_df.loc[plant_df.index[:300], "failure"] = 1  # failures only early on
    with pytest.raises(EdgeopsError) as err:
        split(plant_df, plant_schema, test_size=0.2, time_column="timestamp")
    msg = str(err.value)
    assert "leaves classes [1] of 'failure' out of the test set" in msg
    assert "split.time_column: null" in msg


# --- the command ---------------------------------------------------------------------------------

runner = CliRunner()


def infer(*args: Any) -> Any:
    return runner.invoke(app, ["schema", "infer", *[str(a) for a in args]])


def excel_export(tmp_path: Path, n: int = 60) -> Path:
    df = machines(n)
    text = df.to_csv(index=False, sep=";", decimal=",", date_format="%d.%m.%Y %H:%M")
    path = tmp_path / "Export Linie 1.csv"
    path.write_bytes(text.replace("\n", "\r\n").encode("cp1252"))
    return path


def test_cli_proposes_drops_and_says_what_it_detected(tmp_path: Path) -> None:
    path = excel_export(tmp_path)
    result = infer(path, "--target", "Ausfall", "--params", tmp_path / "none.yaml")
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert f"read {path}: 60 rows x 6 columns" in err
    assert "csv: encoding cp1252 (not UTF-8: byte 0xe4 on line 2), sep ';', decimal ','" in err
    assert "dates %d.%m.%Y %H:%M in [Zeitstempel]" in err
    assert "drop 'Auftrag Nr': ID-like" in err and "drop 'Bemerkung': free text" in err
    assert "positive_class 'ja'" in err
    assert "timestamps are not features: ['Zeitstempel']" in err
    assert "bundle.model_name: export-linie-1-ausfall" in err
    assert result.stdout.startswith(f"# proposed from {path} (60 rows)")
    schema = schema_from_dict(yaml.safe_load(result.stdout))
    assert schema.drop == ("Auftrag Nr", "Bemerkung")
    assert schema.positive_class == "ja"
    assert schema.column("Maschinentyp").type == CATEGORICAL


def test_cli_dialect_flags_win(tmp_path: Path) -> None:
    path = excel_export(tmp_path)
    result = infer(path, "-t", "Ausfall", "--sep", ",", "--params", tmp_path / "none.yaml")
    assert result.exit_code == 2
    assert "the columns collapse into one" in result.stderr
    assert "--sep ';'" in result.stderr
    result = infer(path, "-t", "Ausfall", "--encoding", "latin-1", "--params", tmp_path / "x")
    assert result.exit_code == 0, result.stderr
    assert "encoding iso8859-1" in result.stderr


def test_cli_five_rows_is_one_clear_message(tmp_path: Path) -> None:
    path = excel_export(tmp_path, n=5)
    result = infer(path, "-t", "Ausfall", "--params", tmp_path / "none.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "too few rows to train and test" in errors[0]
    assert "  fix: collect more rows (at least 20" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_apply_writes_params_and_keeps_comments(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_text()
    (tmp_path / "data").mkdir()
    path = excel_export(tmp_path / "data")
    result = infer(path, "-t", "Ausfall", "--sep", ";", "--params", params, "--apply")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert f"updated {params}: validate.schema, bundle.model_name, ingest.source" in result.stderr
    after = params.read_text()
    # every comment outside the replaced schema is still there
    old_schema = before[before.index("  schema:\n") : before.index("\nsplit:")]
    for line in before.splitlines():
        if "#" in line and line not in old_schema:
            comment = line[line.index("#") :]
            assert comment in after, comment
    assert "\n\nsplit:\n" in after  # the blank line between sections too
    assert re.search(r"- Auftrag Nr +# ID-like", after)
    loaded = yaml.safe_load(after)
    assert loaded["ingest"]["source"] == "csv"
    assert loaded["ingest"]["csv"]["path"] == "data/Export Linie 1.csv"
    assert loaded["ingest"]["csv"]["sep"] == ";"
    assert loaded["ingest"]["csv"]["decimal"] is None  # detected, as ingest will
    assert loaded["bundle"]["model_name"] == "export-linie-1-ausfall"
    assert loaded["train"] == yaml.safe_load(before)["train"]  # other sections untouched
    schema = schema_from_dict(loaded["validate"]["schema"])
    assert schema.positive_class == "ja" and schema.drop == ("Auftrag Nr", "Bemerkung")

    # without PATH: the source just written, read as ingest reads it
    result = infer("-t", "Ausfall", "--params", params)
    assert result.exit_code == 0, result.stderr
    assert "read data/Export Linie 1.csv [ingest.csv.path]" in result.stderr
    assert "as set: sep" in result.stderr


def test_cli_reads_an_sql_table(tmp_path: Path) -> None:
    db = tmp_path / "plant.db"
    with sqlite3.connect(db) as conn:
        machines().to_sql("readings", conn, index=False)
    conn.close()
    result = infer(
        "--sql",
        f"sqlite:///{db}",
        "--table",
        "readings",
        "-t",
        "Ausfall",
        "--params",
        tmp_path / "none.yaml",
    )
    assert result.exit_code == 0, result.stderr
    assert "read table readings: 60 rows x 6 columns" in result.stderr
    schema = schema_from_dict(yaml.safe_load(result.stdout))
    assert schema.column("Zeitstempel").type == TIMESTAMP
    assert "bundle.model_name: readings-ausfall" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["x.csv", "--sql", "sqlite:///x.db", "--table", "t"], "either a PATH or --sql"),
        (["--table", "t"], "--table and --query read a database"),
        (["--sql", "sqlite:///x.db"], "exactly one of --table or --query"),
        (["--sql", "sqlite:///x.db", "--table", "t", "--sep", ";"], "--sep apply to CSV files"),
    ],
)
def test_cli_bad_combinations(tmp_path: Path, args: list[str], expected: str) -> None:
    result = infer(*args, "-t", "y", "--params", tmp_path / "none.yaml")
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_help_has_an_example() -> None:
    result = runner.invoke(app, ["schema", "infer", "--help"])
    assert result.exit_code == 0
    assert "edgeops schema infer data/external/ --target failure" in result.stdout
    for flag in (
        "--sql",
        "--table",
        "--query",
        "--drop",
        "--id-columns",
        "--sep",
        "--decimal",
        "--encoding",
        "--date-format",
        "--apply",
    ):
        assert flag in result.stdout


AWKWARD_TEXT = [
    "Temp, °C",
    "a: b",
    "#hash",
    "yes",
    "no",
    "off",
    "007",
    "1.5",
    "null",
    "~",
    "Gerät A",
    " führend",
    "[x]",
    "{y}",
    "'quote'",
    '"dq"',
    "Y",
    "2026-01-05",
]


def test_awkward_names_and_categories_survive_the_yaml_and_apply(tmp_path: Path) -> None:
    n = len(AWKWARD_TEXT) * 4
    df = pd.DataFrame(
        {
            name: [AWKWARD_TEXT[(i + k) % len(AWKWARD_TEXT)] for i in range(n)]
            for k, name in enumerate(AWKWARD_TEXT[:6])
        }
    )
    df["label"] = ["ja", "nein"] * (n // 2)
    p = propose(df, "label")
    schema = reviewed(p)
    assert schema.names == list(df.columns)
    for name in AWKWARD_TEXT[:6]:
        assert set(schema.column(name).categories) == set(AWKWARD_TEXT)
    assert_passes_on_its_own_data(df, p)

    from edgeops.schema_commands import apply_to_params

    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_to_params(params, p, {"csv": {"sep": ";", "date_format": "%d.%m.%Y"}})
    loaded = yaml.safe_load(params.read_text())
    assert schema_from_dict(loaded["validate"]["schema"]) == schema
    assert loaded["ingest"]["csv"]["sep"] == ";"
    assert loaded["ingest"]["csv"]["date_format"] == "%d.%m.%Y"


def test_cli_dialect_flags_need_a_csv_source(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)  # ingest.source: simulator
    result = infer("-t", "failure", "--sep", ";", "--params", params)
    assert result.exit_code == 2
    assert "--sep apply to CSV files, but ingest.source is 'simulator'" in result.stderr
