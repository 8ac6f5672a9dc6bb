"""Drift over seeds, as `edgeops monitor` judges it (the regimes, Evidently in its worker).

Daily data: real public weather (tests/fixtures/seattle-weather), a model trained on winter days;
a season of 90 held-out winter days is not drift, 90 summer days are, with the settings
docs/monitoring.md recommends for daily data. The demo plant after a drift retrain (trained on
the plant's rows and the devices' labelled rows, a baseline stretch then the hot summer): windows
of either regime are not drift, a regime the model never saw (a recalibrated torque sensor, a new
product mix) is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeops.monitor.settings import MonitorSettings
from edgeops.params import load_params
from tests.drift_cases import (
    SEASON_DAYS,
    SUMMER,
    WINTER,
    deployed,
    held_out,
    judge_window,
    plant_rows,
    seattle,
    seattle_schema,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SEEDS = range(20)
#: the demo after `make demo`: 50,000 plant rows, a training split of 80 % plus the labelled
#: production rows (0.3 feedback share of 2 x 2,000 rows of traffic, about 1,000 of them in the
#: training split); as the issue measured it, about 44k training rows of which about 1k production.
#: Here: 43,000 source rows, 400 baseline then 1,000 hot-summer production rows
PLANT_SOURCE_ROWS, PLANT_PRODUCTION_ROWS, PLANT_WINDOW = 43_000, 1_000, 2_000
#: labelled baseline traffic before the hot summer, also among the production rows
PLANT_BASELINE_FIRST = 400


def daily_settings() -> MonitorSettings:
    """The settings docs/monitoring.md recommends for daily data (the section "Daily data")."""
    params = load_params(REPO / "params.yaml")
    params["monitor"]["window"] = {"rows": None, "hours": 90 * 24, "min_rows": 60}
    return MonitorSettings.from_params(params)


def test_daily_data_a_baseline_season_is_kept_and_a_season_change_is_drift(
    tmp_path: Path,
) -> None:
    settings = daily_settings()
    days = seattle()
    winter, summer = days[days["month"].isin(WINTER)], days[days["month"].isin(SUMMER)]
    baseline, season_change = [], []
    for seed in SEEDS:
        reference, held = held_out(winter, SEASON_DAYS, seed)
        case = deployed(tmp_path / str(seed), seattle_schema(), reference)
        baseline.append(judge_window(case, held, settings))
        season_change.append(
            judge_window(case, summer.sample(SEASON_DAYS, random_state=seed), settings)
        )
    flagged = sum(d["dataset_drift"] for d in baseline)
    found = sum(d["dataset_drift"] for d in season_change)
    print(f"\ndaily data, {len(SEEDS)} seeds: baseline seasons flagged {flagged}, summer {found}")
    assert flagged <= 2, [d["columns"] for d in baseline if d["dataset_drift"]]
    assert found >= 18, [d["columns"] for d in season_change if not d["dataset_drift"]]
    # a small window is judged above its noise: thresholds rose over the configured ones
    thresholds = baseline[0]["columns"]["temp_max"]["threshold"]
    assert thresholds > settings.num_threshold
    # a model trained on one regime: the reference is that regime, the whole split
    assert {d["regime"] for d in baseline} == {"all"}


def test_the_demo_plant_after_a_drift_retrain_keeps_both_learned_regimes(
    tmp_path: Path,
) -> None:
    import pandas as pd

    from tests.bundles import plant_schema

    settings = MonitorSettings.from_params(load_params(REPO / "params.yaml"))
    source = plant_rows(PLANT_SOURCE_ROWS, 42, "baseline")
    # the devices' labelled rows in the order they came: a baseline stretch, then the hot summer
    # (as in the demo: baseline traffic, then hot-summer traffic, both with feedback)
    production = pd.concat(
        [
            plant_rows(PLANT_BASELINE_FIRST, 6, "baseline"),
            plant_rows(PLANT_PRODUCTION_ROWS, 7, "hot_summer"),
        ]
    )
    case = deployed(tmp_path, plant_schema(), source, production)

    def judged(scenario: str, first_seed: int) -> list[dict]:
        return [
            judge_window(case, plant_rows(PLANT_WINDOW, first_seed + s, scenario), settings)
            for s in SEEDS
        ]

    baseline = judged("baseline", 1000)
    never_seen = judged("biased_sensor", 2000)  # the torque sensor reads 15 % high
    print(
        f"\nplant after a drift retrain, {len(SEEDS)} windows each: baseline flagged "
        f"{sum(d['dataset_drift'] for d in baseline)}, biased_sensor (never seen) "
        f"{sum(d['dataset_drift'] for d in never_seen)}"
    )
    assert sum(d["dataset_drift"] for d in baseline) <= 2
    # matched to the source's rows; against the hot-summer rows they are far
    assert {d["regime"] for d in baseline} == {"source"}
    production_share = [
        r["share"] for d in baseline for r in d["regimes"] if r["regime"] == "production"
    ]
    assert min(production_share) >= settings.drift_share
    assert sum(d["dataset_drift"] for d in never_seen) >= 19
    assert all("torque_nm" in d["drifted_columns"] for d in never_seen)
    # drifted against every regime: the reported one is the closest, and it is drifted too
    for d in never_seen:
        assert all(r["share"] >= settings.drift_share for r in d["regimes"])
    # the hot summer it was retrained on is no drift either: it matches the production rows the
    # source's rows do not explain (the whole of them is a mixture with the baseline rows, like
    # neither; a stretch of time of them is a few hours of the daily temperature cycle)
    learned = judged("hot_summer", 3000)
    other = judged("new_product_mix", 4000)  # another regime never seen
    print(
        f"hot_summer (learned) flagged {sum(d['dataset_drift'] for d in learned)}, "
        f"new_product_mix (never seen) {sum(d['dataset_drift'] for d in other)}"
    )
    assert sum(d["dataset_drift"] for d in learned) <= 2, [d["regimes"] for d in learned]
    assert {d["regime"] for d in learned} == {"production new"}
    assert sum(d["dataset_drift"] for d in other) >= 19
