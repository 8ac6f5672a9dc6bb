"""edgeops capacity: a plan derived from the measured profile (change the profile, the plan
changes), growth fits, a machine too small gets the warning and exit 3, bad input one message."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeops.capacity import STAGES, Need, Profile, fit_growth, fit_linear, plan
from edgeops.cli import app
from edgeops.errors import EdgeopsError

REPO = Path(__file__).resolve().parents[2]


def profile_data(train_b: float = 1.0) -> dict:
    """A profile of three runs: every stage 2 s fixed + linear, train growing as n**train_b."""
    runs = []
    for n in (10_000, 100_000, 1_000_000):
        stages = {}
        for s in STAGES:
            grow = (n / 1e6) ** (train_b if s == "train" else 1.0)
            stages[s] = {"wall_s": 2.0 + 10.0 * grow, "cpu_s": 1.0, "peak_rss_mb": 200 + 0.0004 * n}
        runs.append(
            {
                "rows": n,
                "stages": stages,
                "bytes": {"raw": 40 * n, "prepared": 40 * n, "models": 1_000_000},
            }
        )
    return {
        "machine": {"cores": 2, "memory_gb": 24},
        "features": 8,
        "threads": 2,
        "runs": runs,
        "services": {"inference_log_bytes_per_row": 300.0},
    }


def write(tmp_path: Path, data: dict, name: str = "profile.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_fits_recover_the_fixed_cost_and_the_exponent() -> None:
    rows = [10_000, 100_000, 1_000_000, 10_000_000]
    f = fit_growth(rows, [2 + 1e-6 * n**1.2 for n in rows])
    assert f.t0 == pytest.approx(2, abs=0.05)  # the fixed cost, without its own growth share
    assert f.b == pytest.approx(1.2, abs=0.02)
    assert f(10_000_000) == pytest.approx(2 + 1e-6 * 1e7**1.2, rel=0.05)
    m = fit_linear(rows, [100 + 0.0004 * n for n in rows])
    assert m.t0 == pytest.approx(100) and m.a == pytest.approx(0.0004)


def test_the_plan_comes_from_the_profile(tmp_path: Path) -> None:
    linear = plan(Profile.load(write(tmp_path, profile_data(1.0))), Need(rows=5_000_000))
    steeper = plan(
        Profile.load(write(tmp_path, profile_data(1.3), "p2.json")), Need(rows=5_000_000)
    )
    assert linear["stages"]["train"]["wall_s"] == pytest.approx(2 + 10 * 5, rel=0.02)
    assert linear["stages"]["train"]["growth_exponent"] == pytest.approx(1.0, abs=0.01)
    assert steeper["stages"]["train"]["wall_s"] > linear["stages"]["train"]["wall_s"] * 1.4
    assert steeper["stages"]["train"]["growth_exponent"] == pytest.approx(1.3, abs=0.01)
    assert linear["stages"]["ingest"] == steeper["stages"]["ingest"]  # only train changed
    assert linear["peak_stage_mb"] == pytest.approx(200 + 0.0004 * 5e6, rel=0.01)
    # more features: more time and memory per row; more devices: more disk
    wide = plan(Profile.load(write(tmp_path, profile_data())), Need(rows=5_000_000, features=16))
    assert wide["pipeline_s"] > linear["pipeline_s"] * 1.8
    fleet = plan(
        Profile.load(write(tmp_path, profile_data())),
        Need(rows=5_000_000, devices=10, requests_per_day=86_400),
    )
    assert fleet["disk"]["inference_log_per_device_per_day_mb"] == pytest.approx(86_400 * 300 / 1e6)
    assert fleet["plan"]["disk_first_year_gb"] > linear["plan"]["disk_first_year_gb"]
    assert linear["warnings"] == []


def test_a_machine_too_small_gets_the_warning_and_exit_3(tmp_path: Path) -> None:
    path = write(tmp_path, profile_data())
    small = plan(Profile.load(path), Need(rows=50_000_000, memory_gb=4, cores=1, window_hours=0.1))
    text = " | ".join(small["warnings"])
    assert "will not do: the largest stage needs" in text and "4 GB" in text
    assert "will not do: a retrain takes about" in text
    assert "extrapolated" in text  # 50x the largest run
    out = CliRunner().invoke(
        app, ["capacity", "--rows", "50000000", "--memory-gb", "4", "--profile", str(path)]
    )
    assert out.exit_code == 3, out.output
    assert "WARNING: will not do" in out.output and "Plan:" in out.output
    ok = CliRunner().invoke(
        app, ["capacity", "--rows", "5000000", "--memory-gb", "64", "--profile", str(path)]
    )
    assert ok.exit_code == 0, ok.output
    assert "train" in ok.output and "pipeline" in ok.output and "WARNING" not in ok.output


def test_the_committed_reference_profile_gives_a_plan() -> None:
    out = CliRunner().invoke(
        app,
        [
            "capacity",
            "--rows",
            "5000000",
            "--json",
            "--profile",
            str(REPO / "src/edgeops/capacity-profile.json"),
        ],
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert set(result["stages"]) == set(STAGES)
    assert result["pipeline_s"] > 0 and result["plan"]["ram_gb"] >= 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("runs"), "is not a capacity profile"),
        (lambda d: d.update(runs=d["runs"][:1]), "a fit needs 2 or more"),
    ],
)
def test_a_bad_profile_is_one_clear_error(tmp_path: Path, mutate, message: str) -> None:
    data = copy.deepcopy(profile_data())
    mutate(data)
    with pytest.raises(EdgeopsError) as err:
        Profile.load(write(tmp_path, data))
    assert message in str(err.value) and "make bench" in err.value.fix


def test_no_profile_and_bad_numbers_say_what_to_do(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["capacity", "--rows", "5", "--profile", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "make bench" in missing.output
    bad = CliRunner().invoke(
        app,
        [
            "capacity",
            "--rows",
            "1000",
            "--devices",
            "-1",
            "--profile",
            str(write(tmp_path, profile_data())),
        ],
    )
    assert bad.exit_code == 2 and "--devices" in bad.output


def test_growth_within_the_noise_of_the_fixed_cost_is_not_fitted_as_an_exponent():
    """A stage that takes 0.7 s up to 1M rows and 2.3 s at 10M: linear beyond its fixed cost,
    not n^6 (which predicted 34,000 h at 100M rows)."""
    from edgeops.capacity import fit_growth

    fit = fit_growth([10_000, 100_000, 1_000_000, 10_000_000], [0.7, 0.69, 0.72, 2.3])
    assert fit.b == 1.0
    assert 10 < fit(100_000_000) < 30


def test_a_stage_capped_in_rows_is_planned_at_its_cap(tmp_path: Path) -> None:
    """train fits a sample above train.max_rows, validate checks one, ingest writes the simulator's
    data a chunk at a time: their time or memory stops growing at the cap, and the plan says so."""
    from edgeops.capacity import stage_caps
    from edgeops.params import load_params

    caps = stage_caps(load_params(REPO / "params.yaml"))
    params = load_params(REPO / "params.yaml")
    assert (
        caps["time"]["train"]
        == caps["memory"]["train"]
        == round(params["train"]["max_rows"] / (1 - params["split"]["test_size"]))
    )
    assert caps["memory"]["validate"] == params["validate"]["sample_rows"]
    assert "ingest" in caps["memory"] and "ingest" not in caps["time"]
    assert stage_caps({"ingest": {"source": "csv"}, "train": {"max_rows": 0}}) == {
        "memory": {},
        "time": {},
    }

    data = profile_data()
    free = plan(Profile.load(write(tmp_path, data)), Need(rows=100_000_000))
    capped = plan(
        Profile.load(write(tmp_path, {**data, "caps": caps}, "capped.json")), Need(rows=100_000_000)
    )
    at_cap = plan(
        Profile.load(write(tmp_path, {**data, "caps": caps}, "capped.json")),
        Need(rows=caps["time"]["train"]),
    )
    assert capped["stages"]["train"] == at_cap["stages"]["train"]
    assert capped["stages"]["train"]["peak_rss_mb"] < free["stages"]["train"]["peak_rss_mb"]
    assert capped["stages"]["train"]["wall_s"] < free["stages"]["train"]["wall_s"]
    assert capped["stages"]["split"] == free["stages"]["split"]  # not capped: grows with the data
    assert ("train", "time", caps["time"]["train"]) in capped["capped"] and not free["capped"]
    # the plan predicts in the company's own params: a CSV source is read whole, max_rows 0 fits all
    own = stage_caps({"ingest": {"source": "csv"}, "train": {"max_rows": 0}})
    mine = plan(
        Profile.load(write(tmp_path, {**data, "caps": caps}, "capped.json")),
        Need(rows=100_000_000),
        own,
    )
    assert mine["stages"]["train"] == free["stages"]["train"] and not mine["capped"]
