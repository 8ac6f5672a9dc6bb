"""Which devices' labels a training run trusts: a lying device is quarantined, not joined; a
person releases it; no device outweighs the source's rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from edgeops.errors import EdgeopsError
from edgeops.sources.field_labels import LabelTrust, judge


def labelled(
    target: str,
    n: int,
    agree: float,
    first: int = 1,
    confidence: float = 0.9,
    seed: int = 0,
    log: str = "ab" * 8,
) -> pd.DataFrame:
    """``n`` labelled rows of one device whose labels agree with the prediction at ``agree``."""
    rng = np.random.default_rng(seed)
    predicted = rng.integers(0, 2, n)
    same = rng.random(n) < agree
    label = np.where(same, predicted, 1 - predicted)
    proba = [
        json.dumps([1 - confidence, confidence] if p else [confidence, 1 - confidence])
        for p in predicted
    ]
    return pd.DataFrame(
        {
            "_target": target,
            "_log": log,
            "_id": np.arange(first, first + n),
            "_ts": 1.7e9 + np.arange(n),
            "_label": predicted.astype(str),
            "_feedback": label.astype(str),
            "_probabilities": proba,
        }
    )


def test_a_device_whose_labels_contradict_the_model_and_the_others_is_quarantined() -> None:
    stored = pd.concat(
        [
            labelled("line-1", 3000, 0.93, seed=1),
            labelled("line-2", 2000, 0.95, seed=2, first=1),
            labelled("line-2", 1000, 0.02, seed=3, first=2001),
        ],
        ignore_index=True,
    )
    keep, report = judge(stored, LabelTrust(max_target_share=1.0), 50_000)
    assert report["line-1"]["joined"] == 3000 and report["line-1"]["quarantined"] == []
    bad = report["line-2"]["disagreeing"]
    assert [(q["first"], q["last"], q["rows"]) for q in bad] == [
        (2001, 2500, 500),
        (2501, 3000, 500),
    ]
    assert bad[0]["agreement"] < 0.05 and bad[0]["expected"] == 0.9 and bad[0]["others"] > 0.9
    assert "agree 2% with the model's predictions; the model expects 90%" in bad[0]["why"]
    # the device is held whole (its rows not released): a person releases what they trust
    held = report["line-2"]["quarantined"]
    assert [(q["first"], q["last"], q["rows"]) for q in held] == [(1, 3000, 3000)]
    assert report["line-2"]["joined"] == 0 and not keep[stored["_target"] == "line-2"].any()


def test_honest_devices_in_a_new_regime_are_not_quarantined() -> None:
    """Drift makes the model less sure and less right, on every device alike: all join."""
    stored = pd.concat(
        [
            labelled("line-1", 2000, 0.75, confidence=0.8, seed=4),
            labelled("line-2", 2000, 0.72, confidence=0.8, seed=5),
        ],
        ignore_index=True,
    )
    keep, report = judge(stored, LabelTrust(max_target_share=1.0), 50_000)
    assert keep.all() and all(r["quarantined"] == [] for r in report.values())


def test_a_device_alone_is_judged_against_the_model_and_too_few_rows_are_not_judged() -> None:
    keep, report = judge(labelled("line-1", 600, 0.1, seed=6), LabelTrust(), 50_000)
    assert not keep.any() and report["line-1"]["others_agreement"] is None
    keep, report = judge(labelled("line-1", 99, 0.0, seed=7), LabelTrust(), 50_000)
    assert keep.all()  # fewer than quarantine.min_rows: no verdict either way


def test_a_release_lets_the_rows_up_to_it_join_and_judges_later_ones() -> None:
    stored = pd.concat(
        [labelled("line-1", 2000, 0.95, seed=8), labelled("line-2", 1000, 0.02, seed=9)],
        ignore_index=True,
    )
    trust = LabelTrust.from_params(
        {
            "max_target_share": 1.0,
            "released": [{"target": "line-2", "log": "ab" * 8, "through": 1000}],
        }
    )
    keep, report = judge(stored, trust, 50_000)
    assert keep.all() and report["line-2"]["quarantined"] == []
    later = pd.concat(
        [stored, labelled("line-2", 500, 0.02, seed=10, first=1001)], ignore_index=True
    )
    keep, report = judge(later, trust, 50_000)
    assert [(q["first"], q["last"]) for q in report["line-2"]["quarantined"]] == [(1001, 1500)]
    assert keep[(later["_target"] == "line-2") & (later["_id"] <= 1000)].all()


def test_one_device_is_capped_at_a_share_of_the_source_keeping_its_newest_rows() -> None:
    stored = labelled("line-1", 3000, 0.95, seed=11)
    keep, report = judge(stored, LabelTrust(max_target_share=0.1), 20_000)
    assert keep.sum() == 2000 and report["line-1"]["capped"] == 1000
    assert stored["_id"][keep].min() == 1001  # the newest 2,000


@pytest.mark.parametrize(
    "cfg",
    [
        {"max_target_share": 2},
        {"quarantine": {"gap": "x"}},
        {"quarantine": []},
        {"released": [{"target": "x"}]},
        {"quarantine": {"rows": True}},
    ],
)
def test_bad_settings_are_one_clear_error(cfg) -> None:
    with pytest.raises(EdgeopsError, match="ingest.production"):
        LabelTrust.from_params(cfg)


def test_labels_status_names_a_held_device_and_release_lets_it_join(tmp_path, signing_keys) -> None:
    """The CLI a person uses: status names the held device and why; release writes the release
    into params.yaml (its comments kept) and the audit log; the next ingest takes the rows."""
    import subprocess

    import yaml

    from edgeops.deploy.registry import AuditLog
    from edgeops.monitor.store import feedback_frame, rows_frame, write_part
    from edgeops.sources.production import add_production
    from edgeops.sources.simulator import simulate
    from tests.conftest import BIN, REPO, tool_env
    from tests.unit.test_monitor import SCHEMA, _items

    params = REPO / "params.yaml"
    (tmp_path / "params.yaml").write_text(params.read_text())
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy/targets.yaml").write_text(
        yaml.safe_dump(
            {
                "public_key": str(signing_keys / "signing.pub"),
                "targets": [{"name": "line-1", "url": "http://127.0.0.1:9", "token_env": "X"}],
            }
        )
    )
    store = tmp_path / "data/production"
    for target, first, label in (("line-1", 1, "0"), ("line-2", 1001, "1")):  # model says "0"
        series = store / target / ("ab" * 8)
        write_part(series, "rows", first, first + 299, rows_frame(_items(first, 300)))
        fb = [
            {
                "id": i,
                "request_id": f"r{i}",
                "row": 0,
                "feedback": label,
                "feedback_ts": 1.8e9,
                "seq": i,
            }
            for i in range(first, first + 300)
        ]
        write_part(series, "feedback", first, first + 299, feedback_frame(fb))

    def edgeops(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "edgeops"), "labels", *args],
            cwd=tmp_path,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    status = edgeops("status")
    assert status.returncode == 0, status.stderr
    assert "line-2: QUARANTINED: rows 1001..1300" in status.stderr, status.stderr
    assert "agree 0% with the model's predictions" in status.stderr
    assert "line-1: QUARANTINED" not in status.stderr
    cfg = yaml.safe_load((tmp_path / "params.yaml").read_text())["ingest"]["production"]
    cfg = {**cfg, "path": str(store)}
    _, keys, report = add_production(simulate(rows=5000, seed=1), cfg, SCHEMA)
    assert report["line-2"]["joined"] == 0 and set(keys["target"]) == {"line-1"}

    refused = edgeops("release", "line-1", "--reason", "x")
    assert (
        refused.returncode == 2 and "no labelled rows of line-1 are quarantined" in refused.stderr
    )
    released = edgeops("release", "line-2", "--reason", "labels checked – the model was wrong")
    assert released.returncode == 0, released.stderr
    text = (tmp_path / "params.yaml").read_text()
    assert "# join them to the source's rows" in text  # the file's comments are kept
    cfg = yaml.safe_load(text)["ingest"]["production"]
    assert cfg["released"] == [{"target": "line-2", "log": "ab" * 8, "through": 1300}]
    _, keys, report = add_production(
        simulate(rows=5000, seed=1), {**cfg, "path": str(store)}, SCHEMA
    )
    assert report["line-2"]["joined"] == 300 and report["line-2"]["quarantined"] == []
    (entry,) = [
        e
        for e in AuditLog(tmp_path / "deploy/audit.jsonl").read()
        if e["event"] == "labels_released"
    ]
    assert entry["reason"] == "labels checked – the model was wrong" and entry["target"] == "line-2"
