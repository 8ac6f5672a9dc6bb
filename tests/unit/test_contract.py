"""Contract evolution (edgeops.contract): on real seasonal data (Seattle weather, see
tests/fixtures/seattle-weather/README.md) a contract inferred from winter days meets summer days
from the devices. The proposal widens what a new regime needs, counts the rows each change admits,
and flags faults (a stuck sensor, far-out or impossible readings) without ever admitting them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from edgeops import contract
from edgeops.monitor.store import feedback_frame, rows_frame, write_part
from edgeops.schema import infer_schema, schema_from_params
from tests.conftest import BIN, REPO, init_project, tool_env

WEATHER = REPO / "tests/fixtures/seattle-weather/seattle-weather.csv"


def _seasons() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.read_csv(WEATHER, parse_dates=["date"])
    month = df["date"].dt.month
    winter = df[month.isin([12, 1, 2])].reset_index(drop=True)
    summer = df[month.isin([6, 7, 8])].reset_index(drop=True)
    return winter, summer


def test_summer_rows_from_the_devices_get_a_widened_range_with_the_rows_it_admits() -> None:
    winter, summer = _seasons()
    schema = infer_schema(winter, "weather")
    days = summer.iloc[:200]
    data = pd.concat([winter, days], ignore_index=True)
    proposal = contract.propose(schema, data, ["line-1"] * len(days))
    assert proposal.offered and not proposal.faults
    by = {c.column: c for c in proposal.changes}
    assert set(by) == {"temp_max", "temp_min"}  # rain and wind stay within winter's ranges
    tmax = by["temp_max"]
    old_max = schema.column("temp_max").max
    assert tmax.old == [schema.column("temp_max").min, old_max]
    assert tmax.rows == int((days["temp_max"] > old_max).sum()) == tmax.production_rows
    assert tmax.new[0] == tmax.old[0] and tmax.new[1] >= days["temp_max"].max()
    assert "admits" in "\n".join(proposal.lines())
    text = proposal.markdown()
    assert "| temp_max |" in text and "approve" in text


def test_a_stuck_sensor_and_impossible_readings_are_flagged_and_never_offered() -> None:
    winter, summer = _seasons()
    schema = infer_schema(winter, "weather")
    days = summer.iloc[:200].copy()
    days.loc[days.index[:31], "temp_min"] = 14.0  # stuck: 31 days in a row, inside summer's range
    days.loc[days.index[40:46], "temp_max"] = 999.0  # out of physics
    days.loc[days.index[50:56], "wind"] = -5.0  # a speed below zero
    devices = ["line-1"] * 100 + ["line-2"] * 100
    proposal = contract.propose(schema, pd.concat([winter, days], ignore_index=True), devices)
    kinds = {(f.column, f.kind): f for f in proposal.faults}
    assert set(kinds) == {
        ("temp_min", "stuck"),
        ("temp_max", "far_outside"),
        ("wind", "impossible_sign"),
    }
    assert kinds[("temp_min", "stuck")].rows == 31 and kinds[("temp_min", "stuck")].devices == {
        "line-1": 31
    }
    assert not proposal.offered  # never put to a person as a change to approve
    tmax = next(c for c in proposal.changes if c.column == "temp_max")
    assert tmax.new[1] < 999.0  # the range a regime would need leaves the fault out
    assert (
        "not offered" in proposal.markdown() and "ingest.production.include" in proposal.markdown()
    )


def test_a_clean_source_breaks_nothing() -> None:
    winter, _ = _seasons()
    schema = infer_schema(winter, "weather")
    assert not contract.propose(schema, winter, []).broken


def test_apply_writes_the_ranges_and_keeps_every_comment(tmp_path: Path) -> None:
    winter, summer = _seasons()
    params = tmp_path / "params.yaml"
    schema = infer_schema(winter, "weather")
    cols = (
        "\n".join(
            "      - {" + ", ".join(f"{k}: {v}" for k, v in c.to_dict().items()) + "}"
            for c in schema.columns
        )
        .replace("[", "[")
        .replace("'", "")
    )
    params.write_text(
        "# the company's own note\nvalidate:\n  schema:\n    target: weather   # the label\n"
        f"    min_rows: 10\n    columns:\n{cols}\ntrain:\n  seed: 1  # kept\n"
    )
    proposal = contract.propose(
        schema, pd.concat([winter, summer], ignore_index=True), ["d"] * len(summer)
    )
    assert contract.apply(params, proposal) == [c.column for c in proposal.changes]
    text = params.read_text()
    assert "# the company's own note" in text and "# the label" in text and "# kept" in text
    after = schema_from_params(yaml.safe_load(text))
    for change in proposal.changes:
        assert [after.column(change.column).min, after.column(change.column).max] == change.new
    assert not contract.propose(after, pd.concat([winter, summer], ignore_index=True), []).broken


def _store_days(store: Path, days: pd.DataFrame, target: str = "line-1") -> None:
    """The devices' labelled rows as `edgeops monitor` stores them."""
    feats = days[["precipitation", "temp_max", "temp_min", "wind"]].astype(object)
    items = [
        {
            "id": i + 1,
            "ts": 1.7e9 + i,
            "request_id": f"r{i}",
            "row": 0,
            "model_version": "v1",
            "features": feats.iloc[i].to_dict(),
            "label": "sun",
            "probabilities": [0.2] * 5,
            "feedback": None,
            "feedback_ts": None,
        }
        for i in range(len(days))
    ]
    series = store / target / "abcdef0123456789"
    write_part(series, "rows", 1, len(items), rows_frame(items))
    fb = [
        {
            "id": i + 1,
            "request_id": f"r{i}",
            "row": 0,
            "feedback": w,
            "feedback_ts": 1.8e9,
            "seq": i,
        }
        for i, w in enumerate(days["weather"])
    ]
    write_part(series, "feedback", 1, len(fb), feedback_frame(fb))


@pytest.fixture
def weather_project(tmp_path: Path) -> Path:
    """A csv project on winter days, its contract applied by `schema infer --apply`."""
    winter, _ = _seasons()
    project = init_project(tmp_path / "weather", "--source", "csv", "--name", "weather")
    winter.to_csv(project / "data/external/days.csv", index=False)
    params = project / "params.yaml"  # one device may bring as many rows as the source here
    params.write_text(params.read_text().replace("max_target_share: 0.1", "max_target_share: 1.0"))
    run = subprocess.run(
        [str(BIN / "edgeops"), "schema", "infer", "-t", "weather", "--apply"],
        cwd=project,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    return project


def _infer(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "edgeops"), "schema", "infer", "--with-production", *args],
        cwd=project,
        env=tool_env(),
        capture_output=True,
        text=True,
    )


def test_schema_infer_with_production_proposes_and_applies_the_change(
    weather_project: Path,
) -> None:
    _, summer = _seasons()
    before = (weather_project / "params.yaml").read_text()
    assert "nothing to change" in _infer(weather_project).stderr  # no device rows yet
    _store_days(weather_project / "data/production", summer.iloc[:120])
    shown = _infer(weather_project)
    assert shown.returncode == 0, shown.stderr
    assert "propose temp_max" in shown.stdout and "from the devices" in shown.stdout
    assert (weather_project / "params.yaml").read_text() == before  # shown, not written
    done = _infer(weather_project, "--apply")
    assert done.returncode == 0, done.stderr
    schema = schema_from_params(yaml.safe_load((weather_project / "params.yaml").read_text()))
    assert schema.column("temp_max").max >= summer["temp_max"].iloc[:120].max()
    assert "nothing to change" in _infer(weather_project).stderr


def test_schema_infer_with_production_refuses_to_apply_faults(weather_project: Path) -> None:
    _, summer = _seasons()
    days = summer.iloc[:120].copy()
    days.loc[days.index[10:16], "temp_max"] = 999.0
    _store_days(weather_project / "data/production", days)
    before = (weather_project / "params.yaml").read_text()
    run = _infer(weather_project, "--apply")
    assert run.returncode == contract_exit_faults()
    assert "FAULT temp_max" in run.stdout and "nothing written" in run.stderr
    assert (weather_project / "params.yaml").read_text() == before


def contract_exit_faults() -> int:
    from edgeops.schema_commands import EXIT_FAULTS

    return EXIT_FAULTS
