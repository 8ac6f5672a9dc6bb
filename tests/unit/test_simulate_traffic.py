"""The pure parts of ``edgeops simulate --target``: rows, feedback choice, label flip, the heap's
timing (with a fake clock and a fake agent), error handling, and the CLI's option checks."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from edgeops.cli import app
from edgeops.deploy.targets import AgentError
from edgeops.errors import EdgeopsError
from edgeops.monitor import simulate as traffic
from tests.unit.conftest import PLANT_FEATURES, REPO


class FakeClock:
    """Time that moves only when someone sleeps (or a request takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class FakeAgent:
    """Records every call with the fake time; fails the requests listed in ``fail``."""

    def __init__(
        self,
        clock: FakeClock,
        fail: dict[int, int | None] | None = None,
        feedback_seconds: float = 0.0,
    ) -> None:
        self.clock, self.feedback_seconds = clock, feedback_seconds
        self.fail = fail or {}  # predict call number -> HTTP status (None: unreachable)
        self.calls: list[tuple[str, float, Any]] = []
        self.n_predict = 0

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        i = self.n_predict
        self.n_predict += 1
        if i in self.fail:
            raise AgentError("fake", "boom", self.fail[i])
        self.calls.append(("predict", self.clock(), rows))
        self.clock.now += 0.01  # a request takes 10 ms
        return {"request_id": f"r{i}", "model_version": "1.0.0", "predictions": []}

    def feedback(self, request_id: str, label: Any, row: int | None = None) -> dict[str, Any]:
        self.calls.append(("feedback", self.clock(), (request_id, label, row)))
        self.clock.now += self.feedback_seconds
        return {"updated": 1}

    def of(self, kind: str) -> list[tuple[str, float, Any]]:
        return [c for c in self.calls if c[0] == kind]


def run(n: int = 20, **kw: Any) -> tuple[dict[str, Any], FakeAgent, FakeClock, list[str]]:
    clock = FakeClock()
    agent = FakeAgent(clock, kw.pop("fail", None), kw.pop("feedback_seconds", 0.0))
    rows = [{"x": i} for i in range(n)]
    labels = [i % 2 for i in range(n)]
    messages: list[str] = []
    kw.setdefault("classes", [0, 1])
    summary = traffic.send_traffic(
        agent, rows, labels, clock=clock, sleep=clock.sleep, log=messages.append, **kw
    )
    return summary, agent, clock, messages


# ---- values and rows -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float64("nan"), None),
        (float("nan"), None),
        (None, None),
        (pd.NA, None),
        (np.int64(3), 3),
        (np.float32(1.5), 1.5),
        ("L", "L"),
        (0, 0),
        (np.bool_(True), True),
    ],
)
def test_plain_gives_json_values(value: Any, expected: Any) -> None:
    out = traffic.plain(value)
    assert out == expected and type(out) is type(expected)


def test_build_rows_sends_only_the_features_as_json(params: dict[str, Any]) -> None:
    rows, labels, classes = traffic.build_rows(params, "baseline", 2000, seed=3)
    assert len(rows) == len(labels) == 2000
    assert all(list(r) == PLANT_FEATURES for r in rows)
    assert classes == [0, 1] and set(labels) <= {0, 1} and 0 < sum(labels) < 2000
    assert all(type(y) is int for y in labels)
    assert any(r["vibration_mm_s"] is None for r in rows)  # ~1 % missing: NaN -> null
    json.dumps(rows, allow_nan=False)  # strict JSON: no NaN, no numpy scalars
    assert {r["machine_type"] for r in rows} == {"L", "M", "H"}


def test_build_rows_follows_the_scenario_and_seed(params: dict[str, Any]) -> None:
    base, _, _ = traffic.build_rows(params, "baseline", 500, seed=3)
    hot, _, _ = traffic.build_rows(params, "hot_summer", 500, seed=3)
    assert base == traffic.build_rows(params, "baseline", 500, seed=3)[0]
    mean = lambda rs: np.nanmean([r["air_temp_k"] or np.nan for r in rs])  # noqa: E731
    assert mean(hot) - mean(base) == pytest.approx(6.0, abs=0.5)
    with pytest.raises(EdgeopsError, match="unknown simulator scenario"):
        traffic.build_rows(params, "winter", 10, seed=3)


def test_build_rows_refuses_a_schema_the_simulator_cannot_fill(params: dict[str, Any]) -> None:
    schema = dict(params["validate"]["schema"])
    schema["columns"] = [*schema["columns"], {"name": "humidity", "type": "numeric"}]
    with pytest.raises(EdgeopsError, match="humidity"):
        traffic.build_rows({"validate": {"schema": schema}}, "baseline", 10, seed=3)


def test_random_seed_is_never_the_training_seed(monkeypatch) -> None:
    draws = iter([42, 42, 7])
    monkeypatch.setattr(random.SystemRandom, "randrange", lambda self, a, b: next(draws))
    assert traffic.random_seed() == 7


def test_the_module_imports_without_pandas_or_numpy(run_cmd, tmp_path: Path) -> None:
    code = "import sys, edgeops.monitor.simulate; print(sorted({'pandas', 'numpy'} & set(sys.modules)))"
    proc = run_cmd([sys.executable, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---- choice and flip -------------------------------------------------------------------------
def test_feedback_choice_is_exact_and_seeded() -> None:
    chosen = traffic.choose_feedback(1000, 0.2, random.Random(1))
    assert len(chosen) == 200 and chosen <= set(range(1000))
    assert chosen == traffic.choose_feedback(1000, 0.2, random.Random(1))
    assert chosen != traffic.choose_feedback(1000, 0.2, random.Random(2))
    assert traffic.choose_feedback(10, 0.0, random.Random(1)) == set()
    assert traffic.choose_feedback(10, 1.0, random.Random(1)) == set(range(10))


def test_label_flip_gives_another_class() -> None:
    rng = random.Random(0)
    assert all(traffic.maybe_flip(1, [0, 1], 1.0, rng) == (0, True) for _ in range(50))
    assert all(traffic.maybe_flip(1, [0, 1], 0.0, rng) == (1, False) for _ in range(50))
    flips = [traffic.maybe_flip("a", ["a", "b", "c"], 1.0, rng)[0] for _ in range(200)]
    assert set(flips) == {"b", "c"}
    share = sum(traffic.maybe_flip(0, [0, 1], 0.3, rng)[1] for _ in range(5000)) / 5000
    assert share == pytest.approx(0.3, abs=0.03)


def test_the_queue_gives_items_in_due_order() -> None:
    q = traffic.FeedbackQueue()
    for due, rid in [(5.0, "c"), (1.0, "a"), (3.0, "b"), (1.0, "a2")]:
        q.push(due, rid, None, 0)
    assert len(q) == 4 and q.next_due == 1.0 and q.last_due == 5.0
    assert [p.request_id for p in q.pop_due(3.0)] == ["a", "a2", "b"]
    assert q.pop_due(4.9) == [] and len(q) == 1
    assert [p.request_id for p in q.pop_due(5.0)] == ["c"] and q.next_due is None


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"rate": -1}, "--rate"),
        ({"feedback_share": 1.5}, "--feedback-share"),
        ({"feedback_delay": -2}, "--feedback-delay"),
        ({"batch": 0}, "--batch"),
        ({"label_flip": 2}, "--label-flip"),
        ({"label_flip": 0.5, "classes": [1]}, "two classes"),
    ],
)
def test_options_out_of_range_are_refused(option: dict[str, Any], message: str) -> None:
    with pytest.raises(EdgeopsError, match=message):
        run(**option)


# ---- timing: rate, delay, heap ---------------------------------------------------------------
def test_no_delay_sends_feedback_right_after_each_chosen_request() -> None:
    summary, agent, _, messages = run(20, feedback_share=0.5, seed=1)
    assert summary["requests"] == summary["rows"] == 20 and summary["errors"] == 0
    assert summary["feedback"] == len(agent.of("feedback")) == 10
    assert summary["model_versions"] == {"1.0.0": 20} and messages == []
    assert all(row is None for _, _, (_, _, row) in agent.of("feedback"))  # batch 1: per request
    labels = {f"r{i}": i % 2 for i in range(20)}
    assert all(label == labels[rid] for _, _, (rid, label, _) in agent.of("feedback"))


def test_rate_spaces_the_requests() -> None:
    _, agent, clock, _ = run(10, rate=4.0, feedback_share=0.0)
    times = [t for _, t, _ in agent.of("predict")]
    assert times == pytest.approx([1000.0 + i / 4.0 for i in range(10)])
    assert clock.now == pytest.approx(1000.0 + 9 / 4.0 + 0.01)


def test_delayed_feedback_is_interleaved_then_drained() -> None:
    summary, agent, clock, messages = run(10, rate=1.0, feedback_share=1.0, feedback_delay=3.0)
    predicted = {f"r{i}": t for i, (_, t, _) in enumerate(agent.of("predict"))}
    sent = {rid: t for _, t, (rid, _, _) in agent.of("feedback")}
    assert summary["feedback"] == 10 and set(sent) == set(predicted)
    for rid, t in sent.items():  # the delay counts from the answer (10 ms after the request)
        assert t - predicted[rid] == pytest.approx(3.01)
    kinds = [k for k, _, _ in agent.calls]
    last_predict = len(kinds) - 1 - kinds[::-1].index("predict")
    assert kinds.index("feedback") < last_predict  # feedback went out between the requests
    assert kinds[-4:] == ["feedback"] * 4  # due after the last request: sent at the end
    assert len(messages) == 1 and "waiting" in messages[0] and "4 pending" in messages[0]
    assert clock.now == pytest.approx(predicted["r9"] + 0.01 + 3.0)


def test_slow_feedback_posts_still_send_everything_that_is_due() -> None:
    # the posts take time: items fall due while others are sent, and the clock passes the end
    summary, agent, _, _ = run(
        40, batch=4, feedback_share=0.5, feedback_delay=0.5, feedback_seconds=0.02, seed=3
    )
    assert summary["feedback"] == len(agent.of("feedback")) == 20
    predicted = {f"r{i}": t + 0.01 for i, (_, t, _) in enumerate(agent.of("predict"))}
    assert all(t - predicted[rid] >= 0.5 for _, t, (rid, _, _) in agent.of("feedback"))


def test_batches_get_feedback_per_row() -> None:
    summary, agent, _, _ = run(10, batch=4, feedback_share=1.0)
    assert [len(rows) for _, _, rows in agent.of("predict")] == [4, 4, 2]
    posts = [args for _, _, args in agent.of("feedback")]
    assert posts[:4] == [("r0", 0, 0), ("r0", 1, 1), ("r0", 0, 2), ("r0", 1, 3)]
    assert [row for rid, _, row in posts if rid == "r2"] == [0, 1]
    assert summary["requests"] == 3 and summary["rows"] == 10 and summary["feedback"] == 10


def test_label_flip_counts_the_flipped_labels() -> None:
    summary, agent, _, _ = run(40, feedback_share=1.0, label_flip=1.0)
    assert summary["flipped"] == summary["feedback"] == 40
    truth = {f"r{i}": i % 2 for i in range(40)}
    assert all(label != truth[rid] for _, _, (rid, label, _) in agent.of("feedback"))
    same, _, _, _ = run(40, feedback_share=1.0, label_flip=0.5, seed=5)
    again, _, _, _ = run(40, feedback_share=1.0, label_flip=0.5, seed=5)
    assert 5 < same["flipped"] < 35 and same == {**again, "elapsed_s": same["elapsed_s"]}


# ---- errors ----------------------------------------------------------------------------------
def test_a_rejected_request_is_counted_and_the_run_goes_on() -> None:
    summary, agent, _, _ = run(10, feedback_share=1.0, fail={3: 422})
    assert summary["errors"] == 1 and summary["requests"] == 9 and summary["rows"] == 9
    assert summary["feedback"] == 9 and summary["last_error"] == "target fake: boom"
    assert "1 error(s) (last: target fake: boom)" in traffic.format_summary(summary, "x")


@pytest.mark.parametrize("status", [None, 401, 403])
def test_an_unreachable_agent_or_a_wrong_token_stops_the_run(status: int | None) -> None:
    with pytest.raises(EdgeopsError, match=r"boom; stopped after 2 of 10 request\(s\)"):
        run(10, fail={2: status})


def test_many_errors_in_a_row_stop_the_run() -> None:
    with pytest.raises(EdgeopsError, match="stopped after 1 of 30"):
        run(30, fail={i: 503 for i in range(1, 30)})


def test_the_summary_line() -> None:
    line = traffic.format_summary(
        {
            "requests": 3,
            "rows": 6,
            "feedback": 2,
            "flipped": 1,
            "errors": 0,
            "elapsed_s": 1.25,
            "model_versions": {"1.0.0": 2, "2.0.0": 1},
            "last_error": None,
        },
        "line-1",
    )
    assert line == (
        "line-1: 3 request(s), 6 row(s), feedback on 2 row(s), 1 flipped, 0 error(s), 1.2 s, "
        "model version(s) 1.0.0 (2), 2.0.0 (1)"
    )


# ---- the CLI's choice of mode ----------------------------------------------------------------
@pytest.mark.parametrize("args", [[], ["--out", "x.csv", "--target", "line-1"]])
def test_simulate_needs_exactly_one_of_out_and_target(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", *args, "--rows", "10"])
    assert result.exit_code == 2
    assert "--out FILE or --target NAME" in result.output
    assert "Traceback" not in result.output


def test_simulate_to_an_unknown_target_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "targets.yaml").write_text(
        "targets:\n  - {name: line-1, url: 'http://127.0.0.1:9'}\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--target",
            "nope",
            "--rows",
            "5",
            "--params",
            str(REPO / "params.yaml"),
            "--targets",
            str(tmp_path / "targets.yaml"),
        ],
    )
    assert result.exit_code == 2 and "unknown target(s) ['nope']" in result.output
    assert "Traceback" not in result.output


# ---- simulate --from: reading a company's own rows -------------------------------------------
def _plant_params() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())


def _own_rows(n: int = 40) -> pd.DataFrame:
    from edgeops.sources.simulator import simulate

    df = simulate(rows=n, seed=3).reset_index(drop=True)
    df.loc[2, "failure"] = None  # an unknown label: no feedback for that row
    return df


@pytest.mark.parametrize("kind", ["csv", "parquet", "sql"])
def test_own_rows_are_read_as_the_models_features_and_labels(tmp_path, kind) -> None:
    df, params = _own_rows(), _plant_params()
    if kind == "csv":
        source = tmp_path / "rows.csv"
        df.to_csv(source, sep=";", decimal=",", index=False)
    elif kind == "parquet":
        source = tmp_path / "rows.parquet"
        df.to_parquet(source, index=False)
    else:
        import sqlite3

        with sqlite3.connect(tmp_path / "plant.db") as conn:
            df.to_sql("readings", conn, index=False)
        params["ingest"]["sql"] = {"url": f"sqlite:///{tmp_path / 'plant.db'}", "table": "readings"}
        source = "sql"
    replay = traffic.load_replay(params, str(source), None, rows=30)
    assert len(replay.records) == len(replay.labels) == 30
    assert all(list(r) == PLANT_FEATURES for r in replay.records)
    assert replay.records[5]["torque_nm"] == pytest.approx(float(df.loc[5, "torque_nm"]))
    assert replay.labels[2] is None and replay.labels[:2] == [int(y) for y in df["failure"][:2]]
    assert all(isinstance(y, int) for y in replay.labels if y is not None)  # not 0.0 / 1.0
    assert (replay.dialect is not None) == (kind == "csv")
    if kind == "csv":
        assert "sep ';'" in replay.dialect and "decimal ','" in replay.dialect
    # the share is of the labelled rows, exactly, and never a row without a label
    chosen = traffic.choose_rows(replay.labels, 0.5, random.Random(1))
    assert len(chosen) == round(0.5 * 29) and 2 not in chosen


def test_own_rows_errors_name_the_problem(tmp_path) -> None:
    params, df = _plant_params(), _own_rows()
    path = tmp_path / "rows.csv"
    df.rename(columns={"failure": "broke"}).drop(columns=["air_temp_k"]).to_csv(path, index=False)
    with pytest.raises(EdgeopsError, match=r"no column\(s\) \['air_temp_k'\], which the model"):
        traffic.load_replay(params, str(path), "broke")
    df.rename(columns={"failure": "broke"}).to_csv(path, index=False)
    with pytest.raises(EdgeopsError, match="--label-column nope: .* has no such column"):
        traffic.load_replay(params, str(path), "nope")
    assert traffic.load_replay(params, str(path), None).labels is None  # no target: no labels
    assert traffic.load_replay(params, str(path), "broke").label_column == "broke"
    (tmp_path / "rows.txt").write_text("a,b\n")
    with pytest.raises(EdgeopsError, match="not a CSV or Parquet file"):
        traffic.load_replay(params, str(tmp_path / "rows.txt"), None)
    with pytest.raises(EdgeopsError, match="no such file or folder"):
        traffic.load_replay(params, str(tmp_path / "gone.csv"), None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "x.csv"], "give --target NAME"),
        (["--from", "x.csv", "-t", "a", "--out", "y.csv"], "give --target NAME"),
        (["--from", "x.csv", "-t", "a", "--feedback-delay", "2"], "--feedback-delay and"),
        (["--from", "x.csv", "-t", "a", "--rate", "-1"], "--rate must be >= 0"),
        (["--label-column", "y", "-t", "a"], "--label-column names the labels of --from"),
    ],
)
def test_replay_option_errors_come_before_anything_is_read(args, message) -> None:
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code == 2 and message in result.output, result.output
