"""The deploy gate's decision: a trivial baseline on the same test rows, floors, the champion."""

from __future__ import annotations

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
