"""The gate judges the new regime: a challenger better overall but worse on the production rows
is refused, with the figures in the reason (issue 23, done-when 2).

Real bundles (trained, exported to ONNX, signed), a real agent holding the champion, the deploy
path a user runs (`edgeops deploy`): the plant's source rows, and held-out labelled rows of a hot
summer (the simulator's ``hot_summer`` regime) as the production rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from edgeops.deploy import operations
from edgeops.deploy.gate import EXIT_REJECTED
from edgeops.errors import EdgeopsError
from edgeops.sources.simulator import simulate
from tests.agent_process import DEPLOY_TOKEN, Agents
from tests.bundles import REPO, make_bundle, plant_split

pytestmark = pytest.mark.integration


def test_a_challenger_better_overall_but_worse_on_the_production_rows_is_refused(
    tmp_path: Path, signing_keys: Path
) -> None:
    plant_train, source_test = plant_split()
    summer = simulate(rows=1600, seed=21, scenario="hot_summer")
    summer_train, summer_test = summer.iloc[:1200], summer.iloc[1200:]
    source_test.to_parquet(tmp_path / "test.parquet")
    summer_test.to_parquet(tmp_path / "test_production.parquet")
    mixed = pd.concat([plant_train, summer_train], ignore_index=True)
    # the champion learned the summer; the challenger, a stronger model, only the plant's rows
    champion = make_bundle(
        tmp_path / "v1", signing_keys, "1.0.0", model="logistic_regression", train_df=mixed
    )
    challenger = make_bundle(tmp_path / "v2", signing_keys, "2.0.0", model="hist_gradient_boosting")
    agents = Agents(tmp_path, signing_keys / "signing.pub")
    try:
        agent = agents.start({"probation_requests": 5})
        (tmp_path / "deploy.token").write_text(DEPLOY_TOKEN + "\n")
        (tmp_path / "targets.yaml").write_text(
            f"public_key: {signing_keys / 'signing.pub'}\ntargets:\n"
            f"  - {{name: line-1, url: '{agent.url}', canary: true, "
            f"token_file: '{tmp_path / 'deploy.token'}'}}\n"
        )
        ctx = operations.DeployContext.load(
            REPO / "params.yaml",
            targets=tmp_path / "targets.yaml",
            registry=tmp_path / "registry.json",
            audit=tmp_path / "audit.jsonl",
            test_data=tmp_path / "test.parquet",
        )
        ctx.production_test_data = tmp_path / "test_production.parquet"
        ctx.gate_report = tmp_path / "gate.json"
        ctx.cfg.update(watch_seconds=0.5)
        assert ctx.cfg["guard_metrics"] == ["balanced_accuracy"]  # the shipped default
        operations.deploy(ctx, champion, None, reason="first", log=lambda m: None)

        messages: list[str] = []
        with pytest.raises(EdgeopsError) as refused:
            operations.deploy(ctx, challenger, None, reason="drift", log=messages.append)
        report = json.loads((tmp_path / "gate.json").read_text())
        # control: the same stronger model trained on the summer too is no worse anywhere
        learned = make_bundle(
            tmp_path / "v3",
            signing_keys,
            "3.0.0",
            model="hist_gradient_boosting",
            train_df=mixed,
        )
        operations.deploy(ctx, learned, None, reason="drift", log=lambda m: None)
        control = json.loads((tmp_path / "gate.json").read_text())
    finally:
        agents.stop_all()

    assert refused.value.exit_code == EXIT_REJECTED
    assert not report["promote"] and report["champion"]["version"] == "1.0.0"
    sets = report["sets"]
    assert sorted(sets) == ["all", "production", "source"]
    assert [sets[k]["rows"] for k in ("source", "production", "all")] == [
        len(source_test),
        len(summer_test),
        len(source_test) + len(summer_test),
    ]

    def fig(name: str, metric: str) -> tuple[float, float]:
        f = sets[name]["judged"][metric]
        return f["challenger"], f["champion"]

    # better overall: on the source's rows and on all rows, on both metrics, by far ...
    for name in ("source", "all"):
        assert sets[name]["verdict"] == "ok"
        for metric in ("roc_auc", "balanced_accuracy"):
            ch, cp = fig(name, metric)
            assert ch > cp + 0.03, (name, metric, ch, cp)
    # ... and even on the summer's ROC AUC (a one-metric gate would promote it), but its
    # decisions on the summer rows are worse
    ch, cp = fig("production", "roc_auc")
    assert ch > cp
    ch, cp = fig("production", "balanced_accuracy")
    assert ch < cp - 0.02 and sets["production"]["verdict"] == "worse"
    reason = (
        f"worse on the production rows: balanced_accuracy {ch:.4f} < champion {cp:.4f} "
        "- tolerance 0.005"
    )
    assert report["reason"] == reason
    assert reason in str(refused.value)
    # `edgeops deploy` prints the three rows with their verdicts before the refusal
    printed = "\n".join(messages)
    assert "gate figures (this run / champion)" in printed
    for title, verdict in (
        ("the source's rows", "ok"),
        ("the production rows", "worse"),
        ("all rows", "ok"),
    ):
        line = next(x for x in printed.splitlines() if x.startswith(title))
        assert line.split()[-1] == verdict and f"{len(summer_test):,}" in printed
    assert f"{ch:.4f} / {cp:.4f}" in printed
    assert f"gate: refuse: {reason}" in printed

    assert control["promote"], control["reason"]
    assert {got["verdict"] for got in control["sets"].values()} == {"ok"}
    assert control["reason"].startswith("no worse than the champion (tolerance 0.005) on any set")
