"""Monitoring's pure parts: settings, the decision and cooldown, the store's exactly-once parts,
the production rows joining the training data, and their stable place in the split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from edgeops.deploy.registry import AuditLog
from edgeops.errors import EdgeopsError
from edgeops.monitor import decision as dec
from edgeops.monitor.settings import MonitorSettings
from edgeops.monitor.store import ProductionStore, cursor, feedback_frame, rows_frame, write_part
from edgeops.params import load_params
from edgeops.schema import schema_from_params
from edgeops.sources.production import add_production
from edgeops.sources.simulator import simulate
from edgeops.stages.split import hash_side, split_with_production
from tests.conftest import REPO

PARAMS = load_params(REPO / "params.yaml")
SCHEMA = schema_from_params(PARAMS)


def test_the_repo_settings_load_and_bad_ones_name_the_field() -> None:
    s = MonitorSettings.from_params(PARAMS)
    assert s.window_rows == 2000 and s.min_rows == 1000 and s.num_method == "wasserstein"
    with pytest.raises(EdgeopsError, match="exactly one of rows and hours"):
        MonitorSettings.from_params({"monitor": {"window": {"rows": 10, "hours": 2}}})
    with pytest.raises(EdgeopsError, match="monitor.drift.share must be between 0.0 and 1.0"):
        MonitorSettings.from_params({"monitor": {"drift": {"share": 2}}})
    with pytest.raises(EdgeopsError, match="below min_rows"):
        MonitorSettings.from_params({"monitor": {"window": {"rows": 10, "min_rows": 50}}})


def _drift(drifted: list[str]) -> dict:
    cols = {
        c: {
            "method": "wasserstein",
            "score": 0.5 if c in drifted else 0.01,
            "threshold": 0.15,
            "drifted": c in drifted,
        }
        for c in ("a", "b", "c", "d")
    }
    share = len(drifted) / 4
    return {
        "columns": cols,
        "drifted_columns": drifted,
        "share": share,
        "share_threshold": 0.1,
        "dataset_drift": bool(drifted),
    }


def test_a_small_window_is_not_enough_data_never_no_drift() -> None:
    decision, reasons = dec.target_decision(120, 1000, _drift([]), None)
    assert decision == dec.NOT_ENOUGH
    assert reasons == ["not enough data (n=120 < min 1000): no verdict on drift"]
    # an empty window (nothing logged since the deploy): no drift step ran, no verdict either
    assert dec.target_decision(0, 1000, None, None) == (
        dec.NOT_ENOUGH,
        ["not enough data (n=0 < min 1000): no verdict on drift"],
    )


def test_drift_or_a_performance_drop_each_decide_retrain() -> None:
    assert dec.target_decision(2000, 1000, _drift([]), None)[0] == dec.KEEP
    decision, reasons = dec.target_decision(2000, 1000, _drift(["b"]), None)
    assert (
        decision == dec.RETRAIN and "1 of 4 feature columns" in reasons[0] and "b (" in reasons[0]
    )
    perf = {"verdict": "degraded", "reason": "roc_auc 0.40 ... below"}
    decision, reasons = dec.target_decision(2000, 1000, _drift([]), perf)
    assert decision == dec.RETRAIN and reasons == ["performance: roc_auc 0.40 ... below"]


def test_the_cooldown_holds_a_retrain_back_and_then_lets_it_go(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    per = {
        "line-1": {"decision": dec.RETRAIN, "reasons": ["drift: x"]},
        "line-2": {"decision": dec.KEEP, "reasons": ["no drift above the thresholds"]},
    }
    assert dec.overall(per, 24, audit)["decision"] == dec.RETRAIN  # no trigger yet
    AuditLog(audit).append(dec.TRIGGER_EVENT, reason="drift")
    held = dec.overall(per, 24, audit)
    assert held["decision"] == dec.COOLDOWN and held["exit_code"] == 7 and not held["retrain"]
    assert held["reasons"][-1].startswith("cooldown: a retrain was started 0.0 h ago")
    later = dec.overall(per, 24, audit, now=time.time() + 25 * 3600)
    assert later["decision"] == dec.RETRAIN and later["exit_code"] == 5
    all_small = {"a": {"decision": dec.NOT_ENOUGH, "reasons": ["not enough data"]}}
    assert dec.overall(all_small, 24, audit)["exit_code"] == 6


def test_a_retrain_entry_dated_in_the_future_is_flagged_and_does_not_hold_retraining(
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit.jsonl"
    per = {"line-1": {"decision": dec.RETRAIN, "reasons": ["drift: x"]}}
    AuditLog(audit).append(dec.TRIGGER_EVENT, reason="drift")  # a real one, 30 h ago (below)
    future = json.loads(audit.read_text())
    lines = [json.dumps({**future, "at": "2027-06-01T00:00:00Z"})]
    audit.write_text(audit.read_text() + "\n".join(lines) + "\n")
    now = time.time() + 30 * 3600
    result = dec.overall(per, 24, audit, now=now)
    assert result["decision"] == dec.RETRAIN and result["retrain"], result["reasons"]
    assert any(
        "dated 2027-06-01T00:00:00Z" in r and "in the future" in r for r in result["reasons"]
    )
    # the real trigger still counts: within the cooldown of the real one, no retrain
    held = dec.overall(per, 24, audit, now=time.time() + 3600)
    assert held["decision"] == dec.COOLDOWN
    assert "a retrain was started 1.0 h ago" in held["reasons"][-1]
    # a few seconds ahead (another host's clock) is no future
    AuditLog(audit).append(dec.TRIGGER_EVENT, reason="drift")
    soon = dec.overall(per, 24, audit, now=time.time() - 60)
    assert soon["decision"] == dec.COOLDOWN


def test_an_unreachable_target_is_named_and_the_others_decide(tmp_path: Path) -> None:
    from edgeops.deploy.targets import AgentError

    gone = dec.unreachable(AgentError("line-3", "agent at http://10.0.0.3 is unreachable (x)"))
    assert gone["decision"] == dec.UNREACHABLE and gone["collected"] is None
    assert gone["reasons"] == ["agent at http://10.0.0.3 is unreachable (x)"]
    keep = {"line-1": {"decision": dec.KEEP, "reasons": ["no drift above the thresholds"]}}
    result = dec.overall({**keep, "line-3": gone}, 0, tmp_path / "audit.jsonl")
    assert result["decision"] == dec.KEEP and result["unreachable"] == ["line-3"]
    assert result["exit_code"] == dec.EXIT_UNREACHABLE  # keep, but a device needs a look
    assert "line-3: agent at http://10.0.0.3 is unreachable (x)" in result["reasons"]
    drift = {"line-1": {"decision": dec.RETRAIN, "reasons": ["drift: x"]}, "line-3": gone}
    result = dec.overall(drift, 0, tmp_path / "audit.jsonl")
    assert result["decision"] == dec.RETRAIN and result["exit_code"] == 5  # the retrain goes on
    assert result["reasons"] == ["line-1: drift: x", f"line-3: {gone['reasons'][0]}"]
    assert dec.overall(keep, 0, tmp_path / "audit.jsonl")["unreachable"] == []


def _items(first: int, n: int, feedback: str | None = None) -> list[dict]:
    df = simulate(rows=n, seed=first)
    feats = df[[c.name for c in SCHEMA.features]].astype(object).where(df.notna(), None)
    return [
        {
            "id": first + i,
            "ts": 1.7e9 + first + i,
            "request_id": f"r{first + i}",
            "row": 0,
            "model_version": "v1",
            "features": feats.iloc[i].to_dict(),
            "label": "0",
            "probabilities": [0.9, 0.1],
            "feedback": feedback,
            "feedback_ts": None,
        }
        for i in range(n)
    ]


def test_the_cursor_is_the_stored_parts_and_late_feedback_wins(tmp_path: Path) -> None:
    series = tmp_path / "store/line-1/abcdef0123456789"
    assert cursor(series, "rows") == 0
    write_part(series, "rows", 1, 50, rows_frame(_items(1, 50)))
    write_part(series, "rows", 51, 80, rows_frame(_items(51, 30)))
    (series / ".rows-000000000081-000000000090.parquet.x.tmp").write_bytes(b"half")  # a killed run
    assert cursor(series, "rows") == 80
    fb = [
        {"id": i, "request_id": f"r{i}", "row": 0, "feedback": "1", "feedback_ts": 1.8e9, "seq": s}
        for s, i in enumerate((3, 60, 3), 1)
    ]
    fb[2]["feedback"] = "0"  # a corrected label for row 3 arrives later
    write_part(series, "feedback", 1, 3, feedback_frame(fb))
    store = ProductionStore(tmp_path / "store")
    rows = store.read_rows("line-1")
    assert len(rows) == 80 and rows["_id"].is_unique
    labels = rows.set_index("_id")["_feedback"]
    assert labels[3] == "0" and labels[60] == "1" and labels.drop([3, 60]).isna().all()
    labelled = store.labelled()
    assert sorted(labelled["_id"]) == [3, 60] and set(labelled["_target"]) == {"line-1"}


def test_labelled_production_rows_join_the_source_shaped_like_it(tmp_path: Path) -> None:
    series = tmp_path / "store/line-1/abcdef0123456789"
    write_part(series, "rows", 1, 40, rows_frame(_items(1, 40)))
    fb = [
        {"id": i, "request_id": f"r{i}", "row": 0, "feedback": "1", "feedback_ts": 1.8e9, "seq": i}
        for i in range(1, 11)
    ]
    write_part(series, "feedback", 1, 10, feedback_frame(fb))
    source = simulate(rows=200, seed=3)
    cfg = {"include": True, "path": str(tmp_path / "store")}
    joined, keys, report = add_production(source, cfg, SCHEMA)
    assert report["line-1"]["joined"] == 10 and report["line-1"]["quarantined"] == []
    assert len(joined) == 210 and len(keys) == 10
    assert list(joined.columns) == list(source.columns)
    assert joined.dtypes.equals(source.dtypes)
    tail = joined.iloc[200:]
    assert (tail["failure"] == 1).all() and tail["timestamp"].notna().all()
    assert keys["key"].tolist() == [f"r{i}:0" for i in range(1, 11)]
    off, no_keys, _ = add_production(source, {**cfg, "include": False}, SCHEMA)
    assert off is source and no_keys.empty


def test_production_rows_keep_their_side_of_the_split_as_more_arrive() -> None:
    keys = [f"req{i}:0" for i in range(4000)]
    side = hash_side(keys, 0.2)
    assert 0.17 < sum(side) / len(side) < 0.23
    assert hash_side(keys[:1000], 0.2) == side[:1000]  # stable: a row never changes sides
    source = simulate(rows=3000, seed=1)
    prod = simulate(rows=500, seed=2)
    df = pd.concat([source, prod], ignore_index=True)
    prod = df.iloc[3000:].reset_index(drop=True)
    k = pd.DataFrame({"key": keys[:500]})
    train, test, held = split_with_production(df, k, SCHEMA, 0.2, 42, None)
    base_train, base_test, none = split_with_production(source, k.iloc[0:0], SCHEMA, 0.2, 42, None)
    # the source's rows are split exactly as without production rows: the champion's test rows
    # stay, and the holdout never holds a production row (a device's labels cannot move it)
    assert train.iloc[: len(base_train)].equals(base_train)
    assert test.equals(base_test) and none.empty and list(none.columns) == list(df.columns)
    assert len(held) == sum(side[:500]) and len(train) - len(base_train) == 500 - len(held)
    assert held.equals(prod[pd.Series(side[:500])].reset_index(drop=True))
    with pytest.raises(EdgeopsError, match="ingest outputs disagree"):
        split_with_production(
            source.iloc[:10], pd.DataFrame({"key": keys[:20]}), SCHEMA, 0.2, 1, None
        )


def test_decision_json_is_what_the_summary_renders() -> None:
    from edgeops.monitor.summary import markdown

    result = {
        "decision": "keep",
        "reasons": ["line-1: no drift above the thresholds"],
        "model": "m",
        "targets": {
            "line-1": {
                "decision": "keep",
                "version": "v1",
                "window": {"rows": 10, "by": "newest 10 rows"},
            }
        },
    }
    text = markdown(json.loads(json.dumps(result)))
    assert text.startswith("# Monitoring m: **keep**") and "## line-1: keep" in text
