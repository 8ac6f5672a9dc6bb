"""The performance verdict: judged over the classes present in the feedback (the others named,
with their counts), the primary and the guard metrics, a drop only when a figure got worse,
and a summary whose verdict line agrees with every figure of its table.

Real data: the Seattle daily weather (tests/fixtures/seattle-weather), a model trained on two
thirds of the days outside May-September, its test split the other third (the figures a manifest
records), the summer days as the monitored window: no snow in it."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edgeops.errors import EdgeopsError
from edgeops.monitor import decision as dec
from edgeops.monitor.performance import (
    COMPARED,
    TestRows,
    judged_scores,
    per_class_figures,
    performance,
)
from edgeops.monitor.settings import MonitorSettings
from edgeops.monitor.summary import markdown
from edgeops.stages.evaluate import scores
from tests.conftest import REPO

WEATHER = REPO / "tests/fixtures/seattle-weather/seattle-weather.csv"
FEATURES = ["precipitation", "temp_max", "temp_min", "wind"]
SUMMER = (5, 6, 7, 8, 9)


def weather() -> pd.DataFrame:
    """The days, each with its part: train, test (both outside summer) or summer."""
    df = pd.read_csv(WEATHER)
    d = pd.to_datetime(df["date"])
    df = df.assign(year=d.dt.year, month=d.dt.month)
    test = np.random.default_rng(0).random(len(df)) < 1 / 3
    df["part"] = np.where(df["month"].isin(SUMMER), "summer", np.where(test, "test", "train"))
    return df


def summer(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["part"] == "summer"]


def fitted(target: pd.Series, df: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = df["part"] == "train"
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(df.loc[train, FEATURES], target[train])


def deployed(target: pd.Series, df: pd.DataFrame) -> dict[str, Any]:
    """A model of the train days, its test figures (as its manifest records them) and rows."""
    model = fitted(target, df)
    classes = list(model.classes_)
    test = df["part"] == "test"
    proba = model.predict_proba(df.loc[test, FEATURES])
    return {
        "model": model,
        "classes": classes,
        "manifest": scores(target[test].to_numpy(), proba, classes),
        "test_rows": TestRows(target[test].to_numpy(dtype=object), proba, "the test days"),
    }


def window(d: dict[str, Any], rows: pd.DataFrame, labels: pd.Series) -> tuple[pd.DataFrame, Any]:
    """The agent's log: feedback as text (as JSON carries it), the model's probabilities."""
    proba = d["model"].predict_proba(rows[FEATURES])
    return pd.DataFrame({"_feedback": labels.astype(str).to_numpy()}), proba


def judge(d: dict[str, Any], rows: pd.DataFrame, labels: pd.Series, **kw: Any) -> dict[str, Any]:
    primary = kw.pop("primary", "roc_auc")
    settings = MonitorSettings(**kw)
    win, proba = window(d, rows, labels)
    return performance(
        win, proba, d["classes"], d["manifest"], primary, settings, None, lambda: d["test_rows"]
    )


def summary_of(perf: dict[str, Any]) -> str:
    decision, reasons = dec.target_decision(2000, 1000, None, perf)
    target = {"decision": decision, "reasons": reasons, "version": "v1", "performance": perf}
    result = {"decision": decision, "reasons": reasons, "model": "m", "targets": {"t": target}}
    return markdown(result)


def assert_summary_agrees(perf: dict[str, Any]) -> None:
    """The verdict line and the table: every metric judged (with its fall vs max_drop) or
    shown-not-judged with the reason; "ok" never beside a judged metric fallen past max_drop."""
    text = summary_of(perf)
    line = next(x for x in text.splitlines() if x.startswith("Performance: "))
    rows = [x for x in text.splitlines() if x.startswith("| ") and x.split()[1] in COMPARED]
    fallen = []
    for row in rows:
        name, prod, test, fell, judged = [c.strip() for c in row.strip("|").split("|")]
        assert name in COMPARED and float(prod) == pytest.approx(perf["production"][name], abs=1e-4)
        if judged.startswith(("primary: ", "guard: ")) and "not judged" not in judged:
            assert name in line  # its figures are stated in the verdict line
            if float(fell) >= perf["max_drop"]:
                fallen.append(name)
                assert "**degraded**" in judged
            else:
                assert judged.split(": ")[1].startswith("ok")
        else:
            assert "not judged" in judged
    assert sorted(r.split(" | ")[0][2:] for r in rows) == sorted(perf["production"])
    assert line.startswith("Performance: degraded" if fallen else "Performance: ok")
    for name in fallen:
        assert re.search(rf"{name} [0-9.]+ vs test [0-9.]+ \(fell [0-9.]+; max drop", line)


def test_a_class_absent_in_summer_is_named_and_the_other_four_are_judged() -> None:
    df = weather()
    d = deployed(df["weather"], df)
    days = summer(df)
    perf = judge(d, days, days["weather"])
    assert perf["class_counts"]["snow"] == 0 and perf["labelled_rows"] == len(days)
    assert perf["judged_classes"] == ["drizzle", "fog", "rain", "sun"]
    assert perf["too_rare"] == {"snow": 0}
    assert perf["verdict"] in ("ok", "degraded")  # a verdict, never "not enough" here
    assert "too rare to judge (fewer than 10 labelled rows): 'snow' 0" in perf["reason"]
    assert "not enough" not in perf["reason"] and "need" not in perf["reason"]
    # the test figures are the test rows of the same four classes, scored the same way
    t = d["test_rows"]
    four = np.asarray([v != "snow" for v in t.y])
    same = judged_scores(t.y[four], t.proba[four], d["classes"], ["drizzle", "fog", "rain", "sun"])
    for k in COMPARED:
        assert perf["test"][k] == pytest.approx(same[k], abs=1e-6), k
    # balanced accuracy over the four: the manifest's per-class recalls give it exactly
    from_manifest = per_class_figures(d["manifest"], ["drizzle", "fog", "rain", "sun"])
    assert from_manifest["balanced_accuracy"] == pytest.approx(same["balanced_accuracy"])
    assert from_manifest["accuracy"] == pytest.approx(same["accuracy"])
    # ... and differs from the five-class figure, which would not be a fair comparison
    assert abs(d["manifest"]["balanced_accuracy"] - same["balanced_accuracy"]) > 0.01
    assert_summary_agrees(perf)


def test_a_rare_class_is_left_out_with_its_count_and_its_rows() -> None:
    df = weather()
    d = deployed(df["weather"], df)
    # the summers of 2013-15: no snow, 6 days of drizzle, 6 of rain: fog and sun are judged
    days = summer(df)[lambda x: x["year"] >= 2013]
    perf = judge(d, days, days["weather"])
    rare = {"drizzle": 6, "rain": 6, "snow": 0}
    assert perf["too_rare"] == rare and perf["judged_classes"] == ["fog", "sun"]
    assert perf["judged_rows"] == len(days) - 12 and perf["verdict"] in ("ok", "degraded")
    for c, n in rare.items():
        assert f"'{c}' {n}" in perf["reason"]


def test_without_the_test_split_the_manifest_figures_still_judge_the_guard() -> None:
    df = weather()
    d = deployed(df["weather"], df)
    days = summer(df)
    win, proba = window(d, days, days["weather"])

    def gone() -> TestRows:
        raise EdgeopsError("the test split data/prepared/test.parquet is not here", fix="dvc pull")

    perf = performance(
        win, proba, d["classes"], d["manifest"], "roc_auc", MonitorSettings(), None, gone
    )
    assert perf["metrics"]["roc_auc"]["judged"] is False
    assert (
        "needs the test split: the test split data/prepared/test.parquet is not here"
        in (perf["metrics"]["roc_auc"]["note"])
    )
    assert perf["metrics"]["balanced_accuracy"]["judged"] is True
    assert perf["verdict"] in ("ok", "degraded") and "roc_auc not judged" in perf["reason"]
    assert_summary_agrees(perf)


def test_a_binary_target_with_one_class_absent_has_no_verdict_and_says_why() -> None:
    df = weather()
    snow = (df["weather"] == "snow").map({True: "snow", False: "no snow"})
    d = deployed(snow, df)
    days = summer(df)
    perf = judge(d, days, snow[days.index])
    assert perf["verdict"] == "not_enough_labels"
    assert perf["reason"] == (
        f"fewer than two classes present: 1 with at least 10 labelled rows ('no snow' "
        f"{len(days)}); too rare to judge (fewer than 10 labelled rows): 'snow' 0: no verdict "
        "(a binary target's roc_auc, pr_auc and f1 need both classes)"
    )
    assert "production" not in perf  # nothing compared, nothing shown as if it were
    assert "Performance: not_enough_labels: fewer than two classes" in summary_of(perf)


def test_too_few_labels_overall_says_exactly_that() -> None:
    df = weather()
    d = deployed(df["weather"], df)
    days = summer(df).head(150)
    perf = judge(d, days, days["weather"])
    assert perf["verdict"] == "not_enough_labels"
    assert perf["reason"] == "not enough feedback: 150 labelled rows (need 200)"


def test_a_rise_is_never_a_drop() -> None:
    df = weather()
    sun = (df["weather"] == "sun").map({True: "sun", False: "other"})
    d = deployed(sun, df)
    # the test figures were taken on noisy labels (a third flipped): the window's clean feedback
    # scores far better than the manifest says; with max_drop 0 any fall at all would count
    rng = np.random.default_rng(0)
    t = d["test_rows"]
    noisy = np.where(rng.random(len(t.y)) < 1 / 3, np.where(t.y == "sun", "other", "sun"), t.y)
    d["manifest"] = scores(noisy, t.proba, d["classes"])
    later = summer(df)
    perf = judge(d, later, sun[later.index], max_drop=0.0)
    assert all(v < 0 for v in perf["drop"].values()), perf["drop"]
    assert perf["verdict"] == "ok" and "rose" in perf["reason"] and "fell" not in perf["reason"]
    assert dec.target_decision(2000, 1000, None, perf)[0] == dec.KEEP
    assert "a rise is no drop" in summary_of(perf)
    assert_summary_agrees(perf)


def test_a_guard_metric_drop_retrains_while_the_primary_is_fine() -> None:
    df = weather()
    sun = (df["weather"] == "sun").map({True: "sun", False: "other"})
    d = deployed(sun, df)
    # the test days again, their temp_max sensor reading 6 degrees low: a linear model's scores
    # all move by the same amount, so the ranking (ROC AUC) is exactly the test's, its labels not
    later = df[df["part"] == "test"]
    offset = later.assign(temp_max=later["temp_max"] - 6.0)
    before = judge(d, later, sun[later.index])
    perf = judge(d, offset, sun[later.index])
    assert perf["production"]["roc_auc"] == pytest.approx(before["production"]["roc_auc"])
    assert perf["metrics"]["roc_auc"]["judged"] and not perf["metrics"]["roc_auc"]["degraded"]
    assert perf["metrics"]["balanced_accuracy"]["degraded"], perf["metrics"]
    assert perf["verdict"] == "degraded" and perf["reason"].startswith("balanced_accuracy ")
    decision, reasons = dec.target_decision(2000, 1000, None, perf)
    assert decision == dec.RETRAIN and reasons[0].startswith("performance: balanced_accuracy")
    assert_summary_agrees(perf)
    # without the guard, the same window keeps the model (and says what it did not judge)
    alone = judge(d, offset, sun[later.index], guard_metrics=())
    assert alone["verdict"] == "ok"
    assert "shown, not judged" in alone["metrics"]["balanced_accuracy"]["note"]
    assert_summary_agrees(alone)


def test_judged_over_every_class_the_figures_are_evaluates() -> None:
    df = weather()
    d = deployed(df["weather"], df)
    t = d["test_rows"]
    mine = judged_scores(t.y, t.proba, d["classes"], d["classes"])
    for k in COMPARED:
        assert mine[k] == pytest.approx(d["manifest"][k], abs=1e-6), k


def test_a_class_left_out_is_a_fair_comparison_over_many_seeds() -> None:
    """Windows from the test split's own distribution, one class never labelled: the window's
    figures match the test figures over the same classes (drop ~ 0, never degraded); against
    the all-class figures the worst class's absence would read as a rise."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    drops: dict[str, list[float]] = {"balanced_accuracy": [], "roc_auc": []}
    unfair = []
    for seed in range(20):
        x, y = make_classification(
            4000, 6, n_informative=4, n_classes=4, n_clusters_per_class=1, random_state=seed
        )
        y = np.asarray(["a", "b", "c", "d"], dtype=object)[y]
        model = LogisticRegression(max_iter=1000).fit(x[:1500], y[:1500])
        classes = list(model.classes_)
        pt = model.predict_proba(x[1500:2750])
        manifest = scores(y[1500:2750], pt, classes)
        worst = min(classes, key=lambda c: manifest["per_class"][c]["recall"])
        keep = y[2750:] != worst
        win = pd.DataFrame({"_feedback": y[2750:][keep]})
        rows = TestRows(y[1500:2750], pt, "test")
        perf = performance(
            win,
            model.predict_proba(x[2750:][keep]),
            classes,
            manifest,
            "roc_auc",
            MonitorSettings(),
            None,
            lambda rows=rows: rows,
        )
        assert perf["verdict"] == "ok" and perf["too_rare"] == {worst: 0}, perf["reason"]
        for k in drops:
            drops[k].append(perf["drop"][k])
        unfair.append(manifest["balanced_accuracy"] - perf["production"]["balanced_accuracy"])
    assert abs(np.mean(drops["balanced_accuracy"])) < 0.015
    assert abs(np.mean(drops["roc_auc"])) < 0.01
    # the unfair comparison (all-class test figures): a "rise" from leaving the worst class out
    assert np.mean(unfair) < -0.015 and abs(np.mean(drops["balanced_accuracy"])) < abs(
        np.mean(unfair)
    )


def test_guard_metrics_setting() -> None:
    assert MonitorSettings.from_params({}).guard_metrics == ("balanced_accuracy",)
    perf = {"performance": {"guard_metrics": ["f1", "pr_auc"]}}
    assert MonitorSettings.from_params({"monitor": perf}).guard_metrics == ("f1", "pr_auc")
    assert (
        MonitorSettings.from_params(
            {"monitor": {"performance": {"guard_metrics": None}}}
        ).guard_metrics
        == ()
    )
    with pytest.raises(EdgeopsError, match="monitor.performance.guard_metrics must be a list"):
        MonitorSettings.from_params({"monitor": {"performance": {"guard_metrics": ["bal_acc"]}}})
