"""Drift against what the deployed model learned: the training split records its production rows,
the reference samples each regime apart, thresholds follow the sizes, and the figures reported
are the ones Evidently computed against the matched regime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeops.monitor import decision as dec
from edgeops.monitor.drift import (
    PREDICTION,
    RegimeFrame,
    judge,
    judged_frame,
    kinds,
    matched,
    noise_threshold,
    regime_frames,
    run_drift,
)
from edgeops.monitor.reference import load_reference, new_rows
from edgeops.monitor.settings import MonitorSettings
from edgeops.monitor.summary import markdown
from edgeops.sources.simulator import simulate
from edgeops.stages.split import (
    SIDE_FILES,
    hash_side,
    production_rows,
    sides_of,
    split_with_production,
    write_part,
    write_sides,
)
from tests.drift_cases import (
    SEASON_DAYS,
    SUMMER,
    WINTER,
    deployed,
    held_out,
    page_figures,
    seattle,
    seattle_schema,
)
from tests.unit.test_monitor import PARAMS, SCHEMA

SETTINGS = MonitorSettings.from_params(PARAMS)


def test_the_training_split_records_how_many_of_its_last_rows_came_from_production(
    tmp_path: Path,
) -> None:
    df = simulate(rows=3000, seed=4)
    keys = pd.DataFrame({"key": [f"r{i}:0" for i in range(300)]})  # the last 300: production
    train, _, prod_test = split_with_production(df, keys, SCHEMA, 0.2, 42, None)
    in_train = len(keys) - len(prod_test)
    write_part(train, tmp_path / "train.parquet", in_train)
    assert production_rows(tmp_path / "train.parquet") == in_train
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "train.parquet"), train)
    # they are its last rows: the production rows that were not held out
    held = hash_side(keys["key"].tolist(), 0.2)
    kept = df.tail(len(keys))[[not h for h in held]].reset_index(drop=True)
    pd.testing.assert_frame_equal(train.tail(in_train).reset_index(drop=True), kept)
    # the streamed split records the same count
    df.to_parquet(tmp_path / "raw.parquet", index=False, row_group_size=700)
    sides = sides_of(tmp_path / "raw.parquet", keys, SCHEMA, 0.2, 42, None)
    write_sides(tmp_path / "raw.parquet", sides, tmp_path / "out", len(keys))
    assert production_rows(tmp_path / "out" / SIDE_FILES[0]) == in_train
    assert production_rows(tmp_path / "out" / SIDE_FILES[1]) is None
    # a split written before the record existed: none
    train.to_parquet(tmp_path / "old.parquet", index=False)
    assert production_rows(tmp_path / "old.parquet") is None


def _plant_case(tmp_path: Path, production: int, baseline_first: int = 0) -> tuple:
    from tests.bundles import plant_schema

    source = simulate(rows=3000, seed=1)
    prod = simulate(rows=production, seed=2, scenario="hot_summer") if production else None
    if baseline_first:
        prod = pd.concat([simulate(rows=baseline_first, seed=3), prod], ignore_index=True)
    return deployed(tmp_path, plant_schema(), source, prod), source, prod


def test_the_reference_samples_each_regime_apart(tmp_path: Path) -> None:
    case, source, prod = _plant_case(tmp_path, 600)
    features = [c.name for c in case.schema.features]
    ref = load_reference(case.bundle, features, "failure", 1000, 3, tmp_path, 200)
    # the production rows are all hot summer: none like the source, not split
    assert [(r.name, len(r.frame), r.rows_total) for r in ref.regimes] == [
        ("all", 1000, 3600),
        ("source", 1000, 3000),
        ("production", 600, 600),
    ]
    # each regime's rows are its own: the production rows are the hot summer's, in order
    pd.testing.assert_frame_equal(ref.regimes[2].frame, prod[[*features, "failure"]])
    assert ref.regimes[1].frame["air_temp_k"].max() <= source["air_temp_k"].max()
    assert len(ref.regimes[2].proba) == 600
    # the mixture is the uniform sample it always was (same seed, same rows)
    pd.testing.assert_frame_equal(ref.frame, ref.regimes[0].frame)
    # a regime below regime_min_rows is not judged apart: one regime, the whole split
    small = load_reference(case.bundle, features, "failure", 1000, 3, tmp_path, 601)
    assert [r.name for r in small.regimes] == ["all"]


def test_production_rows_of_two_regimes_are_split_by_what_they_look_like(tmp_path: Path) -> None:
    # a retrain on a baseline stretch then a hot summer: the production rows are a mixture
    case, _, prod = _plant_case(tmp_path, 600, baseline_first=300)
    features = [c.name for c in case.schema.features]
    ref = load_reference(case.bundle, features, "failure", 1000, 3, tmp_path, 200)
    by_name = {r.name: r for r in ref.regimes}
    assert list(by_name) == [
        "all",
        "source",
        "production",
        "production new",
        "production like source",
    ]
    new, like = by_name["production new"], by_name["production like source"]
    # the hot rows are the new ones, the baseline rows like the source's (a few at the edges)
    hot = prod.iloc[300:]["air_temp_k"].mean()
    assert abs(new.frame["air_temp_k"].mean() - hot) < 0.5
    assert 540 <= len(new.frame) <= 630 and 270 <= len(like.frame) <= 360
    assert len(new.frame) + len(like.frame) == 900 == new.rows_total + like.rows_total
    assert len(new.proba) == len(new.frame) and len(like.proba) == len(like.frame)
    # deterministic: the same split and seed give the same regimes
    again = load_reference(case.bundle, features, "failure", 1000, 3, tmp_path, 200)
    pd.testing.assert_frame_equal(again.regimes[3].frame, new.frame)
    # a part below regime_min_rows: the production rows are not split
    few = load_reference(case.bundle, features, "failure", 1000, 3, tmp_path, 301)
    assert [r.name for r in few.regimes] == ["all", "source", "production"]


@pytest.mark.parametrize("seed", range(5))
def test_production_rows_like_the_source_are_not_called_new(seed: int) -> None:
    from tests.bundles import plant_schema

    features = [c.name for c in plant_schema().features]
    source = simulate(rows=3000, seed=10 + seed)[features]
    same = simulate(rows=1000, seed=20 + seed)[features]
    hot = simulate(rows=1000, seed=30 + seed, scenario="hot_summer")[features]
    assert new_rows(source, same, seed).sum() < 50  # fewer than a regime's 200 rows
    assert new_rows(source, hot, seed).mean() > 0.9


def test_a_threshold_rises_above_the_noise_of_a_small_window_only() -> None:
    values = pd.Series(np.random.default_rng(0).normal(size=10_000))
    small = noise_threshold(values[:300], 90, "num", SETTINGS, 1, 4)
    large = noise_threshold(values, 2000, "num", SETTINGS, 1, 4)
    assert small > SETTINGS.num_threshold and large == SETTINGS.num_threshold
    off = dataclasses.replace(SETTINGS, false_alarm=0.0)
    assert noise_threshold(values[:300], 90, "num", off, 1, 4) == SETTINGS.num_threshold
    cats = pd.Series(np.random.default_rng(0).choice(list("abc"), size=300).astype(object))
    assert noise_threshold(cats, 60, "cat", SETTINGS, 1, 4) > SETTINGS.cat_threshold
    # a stricter false-alarm rate, or more columns to share it, raise it
    assert noise_threshold(values[:300], 90, "num", SETTINGS, 1, 8) > small


@pytest.mark.parametrize("window", [90, 250, 1000])
def test_unchanged_windows_are_rarely_flagged_at_any_size(window: int) -> None:
    """The decision's own per-regime judgement (what picks the regime and what Evidently then
    reports), over 40 seeds of plant rows from one week: a window of the same regime."""
    from tests.bundles import plant_schema
    from tests.drift_cases import plant_rows

    schema = plant_schema()
    week = plant_rows(30_000, 5, "baseline")
    columns = kinds(schema, [0, 1])
    flagged = 0
    for seed in range(40):
        ref = week.sample(2000, random_state=seed)
        cur = week.drop(ref.index).sample(window, random_state=10**6 + seed)  # apart from ref
        frame = judged_frame(ref, np.full((len(ref), 2), 0.5), schema, [0, 1])
        now = judged_frame(cur, np.full((len(cur), 2), 0.5), schema, [0, 1])
        flagged += judge(now, RegimeFrame("all", frame, 2000), columns, SETTINGS).share > 0
    assert flagged <= 2


def test_the_closest_regime_is_the_one_with_fewest_drifted_columns_then_lowest_scores() -> None:
    from edgeops.monitor.drift import Judged

    a = Judged("all", 10, 10, drifted=["x"], share=0.25, closeness=0.9)
    b = Judged("source", 10, 10, drifted=[], share=0.0, closeness=0.8)
    c = Judged("production", 10, 10, drifted=[], share=0.0, closeness=0.3)
    assert matched([a, b, c]).regime == "production"


def test_the_reported_figures_are_evidentlys_against_the_matched_regime(tmp_path: Path) -> None:
    """One Evidently run: its share, drifted columns, scores and thresholds are the ones the
    regime was chosen by; the prediction's drift is beside the share, not in it."""
    days = seattle()
    winter, summer = days[days["month"].isin(WINTER)], days[days["month"].isin(SUMMER)]
    reference, held = held_out(winter, SEASON_DAYS, 0)
    case = deployed(tmp_path, seattle_schema(), reference)
    schema = case.schema
    features = [c.name for c in schema.features]
    ref = load_reference(case.bundle, features, "weather", 10_000, 0, tmp_path)
    from edgeops.deploy.gate import predict_proba

    window = summer.sample(SEASON_DAYS, random_state=0).reset_index(drop=True)
    current = judged_frame(window, predict_proba(case.bundle, window), schema, ref.classes)
    regimes = regime_frames(ref, schema)
    html = tmp_path / "drift.html"
    _, drift = run_drift(current, regimes, schema, ref.classes, SETTINGS, html)
    j = matched([judge(current, r, kinds(schema, ref.classes), SETTINGS) for r in regimes])
    assert drift["regime"] == j.regime == "all"
    assert drift["drifted_columns"] == j.drifted and drift["share"] == round(j.share, 6)
    assert drift["dataset_drift"] and drift["share"] == 1.0
    for col in features:
        assert drift["columns"][col]["score"] == pytest.approx(j.scores[col], abs=1e-6)
        assert drift["columns"][col]["threshold"] == j.thresholds[col]
    assert PREDICTION not in drift["columns"] and drift["prediction"]["method"] == "jensenshannon"
    # the page shows the same figures: the share over the feature columns, the prediction apart
    page = page_figures(html)
    assert (page["columns"], page["drifted"]) == (len(features), len(drift["drifted_columns"]))
    assert page["share"] == pytest.approx(drift["share"], abs=0.005)
    assert set(page["scores"]) == set(features)
    for col in features:
        assert page["scores"][col] == pytest.approx(drift["columns"][col]["score"], abs=1e-5)
        assert page["detected"][col] == drift["columns"][col]["drifted"]
        assert page["thresholds"][col] == round(drift["columns"][col]["threshold"], 2)
    assert page["prediction"] is not None


def test_the_decision_and_summary_name_the_regime_the_window_matched() -> None:
    columns = {
        c: {"method": "wasserstein", "score": 0.5 if c == "a" else 0.01, "threshold": 0.15}
        for c in "abcd"
    }
    for c, v in columns.items():
        v["drifted"] = c == "a"
    regimes = [
        {"regime": "all", "rows": 10, "of": 10, "share": 0.5, "drifted_columns": ["a", "b"]},
        {"regime": "source", "rows": 8, "of": 8, "share": 0.25, "drifted_columns": ["a"]},
        {"regime": "production", "rows": 2, "of": 2, "share": 0.5, "drifted_columns": ["a", "c"]},
    ]
    drift = {
        "columns": columns,
        "drifted_columns": ["a"],
        "share": 0.25,
        "share_threshold": 0.1,
        "dataset_drift": True,
        "prediction": None,
        "regime": "source",
        "regimes": regimes,
        "reference": {"rows": 8, "of": 8, "regime": "source"},
    }
    decision, reasons = dec.target_decision(2000, 1000, drift, None)
    assert decision == dec.RETRAIN
    assert "against every regime of the training split, the closest the source's rows" in reasons[0]
    kept = {**drift, "drifted_columns": [], "share": 0.0, "dataset_drift": False}
    assert dec.target_decision(2000, 1000, kept, None)[1] == [
        "no drift above the thresholds (the window matched the source's rows of the training split)"
    ]
    text = markdown(
        {
            "decision": decision,
            "reasons": reasons,
            "targets": {"line-1": {"decision": decision, "version": "v1", "drift": drift}},
        }
    )
    assert "share 0.25, retrain at >= 0.1); against the regime source (8 of 8 rows)" in text
    assert "| source (matched) | 8 of 8 | 0.25 | a |" in text
    assert dec.regime_name("production new") == "the production rows unlike the source's"
