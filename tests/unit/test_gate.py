"""The deploy gate's decision: a trivial baseline on the same test rows, floors, the champion."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edgeops.deploy import gate
from edgeops.deploy.gate import DEFAULT_OVER_BASELINE, baseline, decide, limits
from edgeops.errors import EdgeopsError
from edgeops.stages.evaluate import scores


@pytest.fixture(scope="module")
def gate_cfg(params: dict[str, Any]) -> dict[str, Any]:
    """The gate params as the deploy commands pass them (params.yaml, deploy.gate + the metric)."""
    return {**params["deploy"]["gate"], "primary_metric": params["evaluate"]["primary_metric"]}


@pytest.fixture(scope="module")
def four_classes() -> dict[str, Any]:
    """A 4-class problem: a fitted model, the test labels and the classes."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=2000,
        n_features=10,
        n_informative=6,
        n_redundant=2,
        n_classes=4,
        n_clusters_per_class=1,
        random_state=3,
    )
    labels = np.asarray(["bearing", "none", "seal", "tool"], dtype=object)[y]
    X_train, X_test, y_train, y_test = train_test_split(
        X, labels, test_size=0.4, stratify=labels, random_state=0
    )
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    return {"model": model, "X": X_test, "y": y_test, "classes": list(model.classes_)}


def test_the_default_gate_params(gate_cfg) -> None:
    floors, margins = limits(gate_cfg)
    assert margins == DEFAULT_OVER_BASELINE == {"balanced_accuracy": 0.1, "roc_auc": 0.1}
    assert floors == {}


def test_the_baseline_is_the_majority_class_dummy(four_classes) -> None:
    y, classes = four_classes["y"], four_classes["classes"]
    base = baseline(y, classes)
    assert base["balanced_accuracy"] == 0.25 and base["roc_auc"] == 0.5
    assert base["n_test"] == len(y)
    majority = pd.Series(y).value_counts().idxmax()
    assert base["accuracy"] == round(float(np.mean(y == majority)), 6)

    y2 = np.asarray(["nein"] * 90 + ["ja"] * 10, dtype=object)
    binary = baseline(y2, ["ja", "nein"], "ja")
    assert binary["balanced_accuracy"] == 0.5 and binary["roc_auc"] == 0.5
    assert binary["positive_class"] == "ja" and binary["pr_auc"] == 0.1 and binary["f1"] == 0.0


def test_a_good_4_class_model_passes_the_default_gate(four_classes, gate_cfg) -> None:
    m = four_classes
    metrics = scores(m["y"], m["model"].predict_proba(m["X"]), m["classes"])
    assert metrics["balanced_accuracy"] > 0.6  # well above 1/4: the model learns
    promote, reason = decide(metrics, None, gate_cfg, baseline(m["y"], m["classes"]))
    assert promote, reason
    assert reason.startswith("first deployment: roc_auc ") and "(baseline 0.5000)" in reason


@pytest.mark.parametrize("model", ["random", "dummy"])
def test_a_model_no_better_than_the_dummy_is_refused(four_classes, gate_cfg, model) -> None:
    from sklearn.dummy import DummyClassifier

    m = four_classes
    y, n = m["y"], len(m["y"])
    if model == "random":
        proba = np.random.default_rng(0).dirichlet(np.ones(4), size=n)
    else:
        proba = DummyClassifier(strategy="stratified", random_state=0).fit(m["X"], y)
        proba = proba.predict_proba(m["X"])
    metrics = scores(y, proba, m["classes"])
    promote, reason = decide(metrics, None, gate_cfg, baseline(y, m["classes"]))
    assert not promote
    ba = metrics["balanced_accuracy"]
    assert reason.startswith("not clearly better than the baseline: ")
    assert f"balanced_accuracy {ba:.4f} < baseline 0.2500 + margin 0.1" in reason
    assert f"roc_auc {metrics['roc_auc']:.4f} < baseline 0.5000 + margin 0.1" in reason
    assert reason.endswith(f"(majority-class dummy on the same {n} test rows)")


def test_later_deployments_also_compare_with_the_champion(four_classes, gate_cfg) -> None:
    m = four_classes
    metrics = scores(m["y"], m["model"].predict_proba(m["X"]), m["classes"])
    base = baseline(m["y"], m["classes"])
    better = {**metrics, "roc_auc": metrics["roc_auc"] - 0.001}
    worse = {**metrics, "roc_auc": metrics["roc_auc"] - 0.05}
    assert decide(better, metrics, gate_cfg, base)[0]
    promote, reason = decide(worse, metrics, gate_cfg, base)
    assert not promote and f"< champion {metrics['roc_auc']:.4f} - tolerance 0.005" in reason
    # the baseline is checked first, whatever the champion
    weak = {**metrics, "balanced_accuracy": 0.3}
    promote, reason = decide(weak, {**metrics, "roc_auc": 0.0}, gate_cfg, base)
    assert not promote and "balanced_accuracy 0.3000 < baseline 0.2500 + margin 0.1" in reason


def test_absolute_floors_and_margins_are_configurable(four_classes, gate_cfg) -> None:
    m = four_classes
    metrics = scores(m["y"], m["model"].predict_proba(m["X"]), m["classes"])
    base = baseline(m["y"], m["classes"])
    cfg = {**gate_cfg, "floors": {"roc_auc": 0.99, "f1": 0.1}}
    promote, reason = decide(metrics, None, cfg, base)
    assert not promote
    assert reason == f"below the absolute floors: roc_auc {metrics['roc_auc']:.4f} < floor 0.99"
    # margins off: a model at the baseline passes a first deployment without floors
    at_base = dict(base)
    assert decide(at_base, None, {**gate_cfg, "over_baseline": {}}, base)[0]
    assert not decide(at_base, None, gate_cfg, base)[0]
    # params without over_baseline get the default margins
    assert limits({"tolerance": 0.0})[1] == DEFAULT_OVER_BASELINE
    assert limits({"over_baseline": None})[1] == {}


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"over_baseline": {"rocauc": 0.1}}, "deploy.gate.over_baseline: unknown metric 'rocauc'"),
        ({"floors": {"f1": "high"}}, "deploy.gate.floors.f1 must be a number"),
        ({"floors": [0.7]}, "deploy.gate.floors must map metric names to numbers"),
    ],
)
def test_bad_gate_params_are_named(cfg, message) -> None:
    with pytest.raises(EdgeopsError, match=message):
        limits(cfg)


def test_the_report_states_the_baseline_and_the_positive_class(monkeypatch) -> None:
    """run_gate with no champion on the targets: the bundle's positive class and the baseline."""
    rng = np.random.default_rng(1)
    y = np.where(rng.random(400) < 0.2, "ja", "nein").astype(object)
    p_ja = np.clip((y == "ja") * 0.6 + rng.random(400) * 0.5, 0, 1)
    proba = np.column_stack([p_ja, 1 - p_ja])
    bundle = SimpleNamespace(
        version="1.0.0",
        manifest={"positive_class": "ja"},
        model=SimpleNamespace(classes=["ja", "nein"]),
    )
    monkeypatch.setattr(gate, "active_versions", lambda targets: {"line-1": None})
    monkeypatch.setattr(gate, "predict_proba", lambda b, df: proba)
    df = pd.DataFrame({"failure": y})
    cfg = {"tolerance": 0.005, "floors": {}, "primary_metric": "pr_auc"}
    report = gate.run_gate(bundle, [], None, df, "failure", cfg, public_key=None)
    assert report["promote"], report["reason"]
    assert report["positive_class"] == "ja" == report["challenger"]["metrics"]["positive_class"]
    b = report["baseline"]
    assert b["strategy"] == "prior" and b["margins"] == DEFAULT_OVER_BASELINE
    assert b["metrics"]["pr_auc"] == round(float(np.mean(y == "ja")), 6)  # the share of "ja"
    assert b["required"] == {"balanced_accuracy": 0.6, "roc_auc": 0.6}
    assert (
        report["challenger"]["metrics"]["pr_auc"]
        == scores(y, proba, ["ja", "nein"], "ja")["pr_auc"]
    )


def test_the_gate_scores_a_large_test_split_a_chunk_at_a_time(tmp_path, signing_keys, monkeypatch):
    """At 100M rows the test split has 20M rows: the device's value conversion runs per chunk,
    and the probabilities are those of the whole frame at once."""
    from edgeops.edge.bundle import load_public_key
    from tests.bundles import make_bundle, plant_split

    made = make_bundle(tmp_path / "bundle", signing_keys, "1.0.0")
    bundle = gate.verify_local(made, load_public_key(signing_keys / "signing.pub"))
    test = plant_split()[1]
    whole = gate.predict_proba(bundle, test)
    calls: list[int] = []
    chunk = gate._predict_chunk
    monkeypatch.setattr(gate, "_predict_chunk", lambda b, df: calls.append(len(df)) or chunk(b, df))
    monkeypatch.setattr(gate, "CHUNK_ROWS", 97)
    chunked = gate.predict_proba(bundle, test)
    assert max(calls) == 97 and sum(calls) == len(test) > 97
    assert chunked.shape == whole.shape == (len(test), len(bundle.model.classes))
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


# --- the champion comparison covers three sets: the source's rows, the production rows, all ---


def _sets(y_src, p_src, y_prod, p_prod, champ_src, champ_prod, classes, positive=None):
    """Real scores of a challenger and a champion on a source and a production set and on both
    (scikit-learn's warnings about an absent class silenced, as :func:`gate.score_sets` does)."""
    import warnings

    warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
    warnings.filterwarnings("ignore", "A single label was found in 'y_true' and 'y_pred'")
    sets = {}
    for name, (y, pc, pp) in {
        "source": (y_src, p_src, champ_src),
        "production": (y_prod, p_prod, champ_prod),
        "all": (
            np.concatenate([y_src, y_prod]),
            np.vstack([p_src, p_prod]),
            np.vstack([champ_src, champ_prod]),
        ),
    }.items():
        sets[name] = {
            "challenger": scores(y, pc, classes, positive),
            "champion": scores(y, pp, classes, positive),
        }
    return sets


def _flip(proba: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The same probabilities with the top class moved to another class on ``share`` of rows
    (rolled columns): decisions get worse on those rows."""
    rng = np.random.default_rng(seed)
    out = proba.copy()
    rows = rng.random(len(proba)) < share
    out[rows] = np.roll(out[rows], 1, axis=1)
    return out


def test_a_challenger_worse_on_the_guard_metric_only_is_refused(four_classes, gate_cfg) -> None:
    m = four_classes
    metrics = scores(m["y"], m["model"].predict_proba(m["X"]), m["classes"])
    base = baseline(m["y"], m["classes"])
    # better ROC AUC, worse decisions: the case (0.829 vs 0.800, BA 0.454 vs 0.494)
    challenger = {**metrics, "roc_auc": metrics["roc_auc"] + 0.03}
    challenger["balanced_accuracy"] = round(metrics["balanced_accuracy"] - 0.04, 6)
    promote, reason = decide(challenger, metrics, gate_cfg, base)
    ba, cb = challenger["balanced_accuracy"], metrics["balanced_accuracy"]
    assert not promote
    assert reason == (
        f"worse on the source's rows: balanced_accuracy {ba:.4f} < champion {cb:.4f} "
        "- tolerance 0.005"
    )
    # the guard is configurable: the primary metric alone, or another guard (accuracy, the same
    # as the champion's here), promotes it
    assert decide(challenger, metrics, {**gate_cfg, "guard_metrics": []}, base)[0]
    assert decide(challenger, metrics, {**gate_cfg, "guard_metrics": ["accuracy"]}, base)[0]


def test_a_set_below_min_rows_is_not_judged_and_the_reason_says_so(four_classes, gate_cfg):
    m = four_classes
    proba = m["model"].predict_proba(m["X"])
    src, prod = slice(0, 700), slice(700, 712)  # 12 production rows
    y = m["y"]
    worse = proba.copy()  # 3 of the 12 production rows decided otherwise: too few to move all
    worse[700:703] = np.roll(worse[700:703], 1, axis=1)
    sets = _sets(y[src], proba[src], y[prod], worse[prod], proba[src], proba[prod], m["classes"])
    judged = gate.judge_sets(sets, gate_cfg)
    assert judged["production"]["rows"] == 12 and judged["production"]["verdict"] == "not judged"
    for f in judged["production"]["judged"].values():
        assert f["verdict"] == "not judged" and f["why"] == "12 rows < min_rows 30"
    s = sets["source"]
    promote, reason = decide(
        s["challenger"], s["champion"], gate_cfg, baseline(y[src], m["classes"]), sets=sets
    )
    assert promote, reason
    assert "not judged: the production rows roc_auc (12 rows < min_rows 30)" in reason
    # the same 12 rows with min_rows 10 are judged, and refuse the challenger
    promote, reason = decide(
        s["challenger"],
        s["champion"],
        {**gate_cfg, "min_rows": 10},
        baseline(y[src], m["classes"]),
        sets=sets,
    )
    assert not promote and "worse on the production rows: balanced_accuracy" in reason
    # no set large enough: the gate cannot tell, so the champion stays
    promote, reason = decide(
        s["challenger"],
        s["champion"],
        {**gate_cfg, "min_rows": 10_000},
        baseline(y[src], m["classes"]),
        sets=sets,
    )
    assert not promote and reason.startswith("nothing to compare with the champion on: ")
    assert reason.endswith("(more test rows, or a lower deploy.gate.min_rows)")


def test_a_metric_undefined_on_a_set_is_not_judged_with_its_reason(gate_cfg) -> None:
    """Binary: production rows of one class only have no ROC AUC; balanced accuracy decides."""
    rng = np.random.default_rng(2)
    y_src = np.where(rng.random(400) < 0.3, "ja", "nein").astype(object)
    p = np.clip((y_src == "ja") * 0.5 + rng.random(400) * 0.5, 0, 1)
    src = np.column_stack([p, 1 - p])
    y_prod = np.asarray(["nein"] * 60, dtype=object)
    q = rng.random(60) * 0.6
    champ_prod = np.column_stack([q * 0.5, 1 - q * 0.5])  # every row "nein": right
    chall_prod = np.column_stack([q, 1 - q])  # rows over 0.5 go "ja": wrong
    classes = ["ja", "nein"]
    sets = _sets(y_src, src, y_prod, chall_prod, src, champ_prod, classes, "ja")
    judged = gate.judge_sets(sets, gate_cfg)["production"]
    assert judged["absent_classes"] == ["ja"]
    assert judged["judged"]["roc_auc"] == {
        "challenger": None,
        "champion": None,
        "verdict": "not judged",
        "why": "undefined: class 'ja' absent from these rows",
    }
    ba = judged["judged"]["balanced_accuracy"]
    assert ba["verdict"] == "worse" and ba["challenger"] < ba["champion"] == 1.0
    s = sets["source"]
    promote, reason = decide(
        s["challenger"], s["champion"], gate_cfg, baseline(y_src, classes, "ja"), sets=sets
    )
    assert not promote
    assert f"worse on the production rows: balanced_accuracy {ba['challenger']:.4f} < " in reason
    # f1 about the absent positive class would be 0 for both: undefined, never a silent tie
    assert gate.undefined_reason("f1", sets["production"]["challenger"]) == (
        "undefined: class 'ja' absent from these rows"
    )
    assert gate.undefined_reason("f1", sets["source"]["challenger"]) is None


def test_a_class_absent_from_the_production_rows_multi_class(four_classes, gate_cfg) -> None:
    """4 classes, no 'seal' in the production rows (no snow in summer): ROC AUC is not judged
    there, balanced accuracy is the recall of the 3 classes present, and nothing crashes."""
    m = four_classes
    proba = m["model"].predict_proba(m["X"])
    y = m["y"]
    src = np.arange(len(y)) < 500
    prod = ~src & (y != "seal")
    worse = _flip(proba, 0.3, seed=4)
    sets = _sets(y[src], proba[src], y[prod], worse[prod], proba[src], proba[prod], m["classes"])
    got = gate.judge_sets(sets, gate_cfg)
    p = got["production"]
    assert p["absent_classes"] == ["seal"] and p["rows"] == int(prod.sum()) >= 30
    assert p["judged"]["roc_auc"]["verdict"] == "not judged"
    assert p["judged"]["roc_auc"]["why"] == "undefined: class 'seal' absent from these rows"
    ba = p["judged"]["balanced_accuracy"]
    assert ba["verdict"] == "worse"
    assert ba["why"] == "the recall of the classes present (absent: seal)"
    recalls = [
        np.mean(np.asarray(m["classes"])[worse[prod].argmax(1)][y[prod] == c] == c)
        for c in ("bearing", "none", "tool")
    ]
    assert ba["challenger"] == pytest.approx(np.mean(recalls), abs=1e-6)  # 'seal' not counted
    assert got["source"]["verdict"] == "ok" and got["all"]["judged"]["roc_auc"]["verdict"] != (
        "not judged"
    )
    s = sets["source"]
    promote, reason = decide(
        s["challenger"], s["champion"], gate_cfg, baseline(y[src], m["classes"]), sets=sets
    )
    assert not promote and reason.startswith("worse on the production rows: balanced_accuracy")


def test_the_figures_render_three_rows_with_their_verdicts(four_classes, gate_cfg) -> None:
    from edgeops.orchestration import approval, summary

    m = four_classes
    proba = m["model"].predict_proba(m["X"])
    y = m["y"]
    src = np.arange(len(y)) < 500
    prod = ~src & (y != "seal")
    worse = _flip(proba, 0.3, seed=4)
    sets = _sets(y[src], proba[src], y[prod], worse[prod], proba[src], proba[prod], m["classes"])
    report = {
        "promote": False,
        "reason": "worse on the production rows",
        "comparison": dict(
            zip(("metrics", "tolerance", "min_rows"), gate.comparison(gate_cfg), strict=True)
        ),
        "sets": {k: {**v, **sets[k]} for k, v in gate.judge_sets(sets, gate_cfg).items()},
        "champion": {"version": "1.0.0"},
    }
    report = json.loads(json.dumps(report, sort_keys=True))  # as reports/gate.json holds it
    md = gate.figures_markdown(report)
    rows = [line for line in md.splitlines() if line.startswith("| the") or "| all rows" in line]
    assert [r.split(" | ")[0] for r in rows] == [
        "| the source's rows",
        "| the production rows",
        "| all rows",
    ]
    f = report["sets"]["production"]["judged"]["balanced_accuracy"]
    assert f"| {f['challenger']:.4f} | {f['champion']:.4f} | **worse** |" in rows[1]
    assert "- the production rows: roc_auc: undefined: class 'seal' absent" in md
    text = gate.figures_text(report)
    assert text.splitlines()[0].split()[:2] == ["set", "rows"] and len(text.splitlines()) >= 4
    assert f"{f['challenger']:.4f} / {f['champion']:.4f}" in text
    # the run's summary and the approval request show the same table
    assert md.rstrip("\n") in summary.markdown({"gate": report})
    check = {"golden_max_abs_diff": 0.0, "probation": {"requests": 5, "errors": 0}}
    assert md.rstrip("\n") in approval.request_markdown("2.0.0", report, "line-1", check, 600)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"guard_metrics": ["bal_acc"]}, "deploy.gate.guard_metrics: unknown metric 'bal_acc'"),
        ({"guard_metrics": "balanced_accuracy"}, "guard_metrics must be a list"),
        ({"min_rows": 0}, "deploy.gate.min_rows must be a whole number >= 1"),
        ({"tolerance": -0.1}, "deploy.gate.tolerance must be a number >= 0"),
    ],
)
def test_bad_comparison_params_are_named(cfg, message) -> None:
    with pytest.raises(EdgeopsError, match=message):
        gate.comparison(cfg)
