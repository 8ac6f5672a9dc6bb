"""The inference log on real SQLite: log id, the feedback cursor, migration of an old database,
damaged databases, the queue's bound in bytes, purges that shrink the file."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeops.edge import log_maintenance as maint
from edgeops.edge import log_records
from edgeops.edge.inference_log import InferenceLog, LogDamaged, compact_json, estimate_bytes
from edgeops.edge.log_records import BACKGROUND_NICE, transactions

# the schema before feedback_seq and the meta table
OLD_SCHEMA = """
CREATE TABLE inference (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    row_index INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    features TEXT NOT NULL,
    label TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    feedback TEXT,
    feedback_ts REAL
);
CREATE INDEX inference_request ON inference(request_id);
CREATE INDEX inference_ts ON inference(ts);
"""


@pytest.fixture
def open_log(tmp_path: Path) -> Iterator[Callable[..., InferenceLog]]:
    """Open an InferenceLog (default: ``tmp_path/log.db``); every one is closed at the end."""
    opened: list[InferenceLog] = []

    def _open(path: Path | None = None, **kw: Any) -> InferenceLog:
        log = InferenceLog(path or tmp_path / "log.db", **kw)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()


def add(log: InferenceLog, request_id: str, n: int) -> None:
    rows = [{"x": i} for i in range(n)]
    log.append(request_id, "1.0.0", rows, ["0"] * n, [[0.9, 0.1]] * n, 1.0)


def all_feedback(log: InferenceLog, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    """Every feedback event after ``after``, page by page, checking the cursor as it goes."""
    seen: list[dict[str, Any]] = []
    cursor = after
    while True:
        items, nxt = log.read_feedback(cursor, limit)
        if not items:
            assert nxt == cursor
            return seen
        assert nxt == items[-1]["seq"] > cursor
        assert all(item["seq"] > cursor for item in items)
        seen += items
        cursor = nxt


def test_log_id_is_stable_across_reopen_and_new_after_the_file_is_deleted(open_log, tmp_path):
    path = tmp_path / "log.db"
    first = open_log(path)
    assert isinstance(first.log_id, str) and len(first.log_id) == 32
    int(first.log_id, 16)  # hex
    add(first, "r1", 2)
    first.flush()
    first.close()
    again = open_log(path)
    assert again.log_id == first.log_id
    assert again.last_id() == 2
    again.close()
    for p in tmp_path.glob("log.db*"):  # the database and its WAL/SHM files: an agent reset
        p.unlink()
    fresh = open_log(path)
    assert fresh.log_id != first.log_id
    assert fresh.last_id() == 0 and fresh.last_feedback_seq() == 0
    assert open_log(tmp_path / "other.db").log_id not in (first.log_id, fresh.log_id)


def test_an_old_database_is_migrated_on_open(open_log, tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.executemany(
        "INSERT INTO inference (ts, request_id, row_index, model_version, features, label, "
        "probabilities, latency_ms, feedback, feedback_ts) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            (1e9, "old", 0, "0.9.0", '{"x":0}', "0", "[0.9,0.1]", 1.0, "1", 1e9 + 5),
            (1e9, "old", 1, "0.9.0", '{"x":1}', "1", "[0.2,0.8]", 1.0, None, None),
        ],
    )
    conn.commit()
    conn.close()

    log = open_log(path, retention_seconds=1e12)
    db = sqlite3.connect(path)
    columns = {r[1] for r in db.execute("PRAGMA table_info(inference)")}
    assert "feedback_seq" in columns
    indexes = {r[1] for r in db.execute("PRAGMA index_list(inference)")}
    assert "inference_feedback_seq" in indexes
    assert db.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone() == (log.log_id,)
    db.close()

    # the old rows are all still there, the old feedback too (it predates the cursor: no seq)
    items, cursor = log.read()
    assert [(i["request_id"], i["row"], i["feedback"]) for i in items] == [
        ("old", 0, "1"),
        ("old", 1, None),
    ]
    assert cursor == log.last_id() == 2
    assert log.read_feedback() == ([], 0) and log.last_feedback_seq() == 0

    # new rows continue the ids, new feedback gets seq 1
    add(log, "new", 1)
    assert log.feedback("old", "0", row=1) == 1
    assert log.last_id() == 3
    items, cursor = log.read_feedback()
    assert [(i["id"], i["feedback"], i["seq"]) for i in items] == [(2, "0", 1)] and cursor == 1

    # opening the migrated database again changes nothing
    log_id = log.log_id
    log.close()
    again = open_log(path, retention_seconds=1e12)
    assert again.log_id == log_id and again.last_feedback_seq() == 1
    assert again.read_feedback()[0] == items


def test_each_feedback_call_gets_a_new_seq(open_log):
    log = open_log()
    add(log, "a", 3)
    add(log, "b", 2)
    assert log.last_feedback_seq() == 0
    assert log.feedback("a", "1") == 3
    assert log.last_feedback_seq() == 1
    assert log.feedback("b", "0", row=1) == 1
    assert log.feedback("missing", "0") == 0  # matches nothing: uses no seq
    assert log.feedback("b", "1", row=0) == 1
    assert log.last_feedback_seq() == 3
    items = all_feedback(log)
    assert [(i["request_id"], i["row"], i["feedback"], i["seq"]) for i in items] == [
        ("a", 0, "1", 1),
        ("a", 1, "1", 1),
        ("a", 2, "1", 1),
        ("b", 1, "0", 2),
        ("b", 0, "1", 3),
    ]
    assert all(i["feedback_ts"] is not None for i in items)
    # the rows themselves (id cursor) carry the feedback too
    rows, _ = log.read()
    assert [r["feedback"] for r in rows] == ["1", "1", "1", "1", "0"]

    # a collector past seq 3 sees a corrected label again, on its new seq
    assert log.feedback("a", "0", row=2) == 1
    again, cursor = log.read_feedback(3)
    assert [(i["request_id"], i["row"], i["feedback"], i["seq"]) for i in again] == [
        ("a", 2, "0", 4)
    ]
    assert cursor == 4 == log.last_feedback_seq()


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 29, 30, 31, 500])
def test_read_feedback_pages_never_lose_or_repeat_rows(open_log, limit):
    log = open_log()
    # one feedback call on a 30-row request between calls on small requests
    sizes = {"s1": 2, "big": 30, "s2": 1, "s3": 3, "big2": 9, "s4": 1}
    for rid, n in sizes.items():
        add(log, rid, n)
    for rid in sizes:
        assert log.feedback(rid, "1") == sizes[rid]
    expected = sorted(
        ((i["id"], i["request_id"], i["row"]) for i in log.read()[0]),
        key=lambda t: (list(sizes).index(t[1]), t[0]),
    )
    items = all_feedback(log, limit=limit)
    assert [(i["id"], i["request_id"], i["row"]) for i in items] == expected
    assert len({i["id"] for i in items}) == sum(sizes.values())
    # a page holds whole seqs only: more than ``limit`` rows only when one seq is the whole page
    cursor = 0
    while True:
        page, nxt = log.read_feedback(cursor, limit)
        if not page:
            break
        seqs = {i["seq"] for i in page}
        assert len(page) <= limit or len(seqs) == 1, (limit, len(page), seqs)
        for seq in seqs:
            assert sum(i["seq"] == seq for i in page) == sum(i["seq"] == seq for i in items)
        cursor = nxt
    # starting in the middle: only the later seqs
    assert [i["seq"] for i in all_feedback(log, after=2, limit=limit)] == [
        i["seq"] for i in items if i["seq"] > 2
    ]


def test_feedback_seq_never_comes_round_again_after_a_purge(open_log, tmp_path):
    path = tmp_path / "log.db"
    log = open_log(path, max_rows=2)
    add(log, "old", 2)
    add(log, "new", 2)
    log.flush()
    assert log.feedback("new", "1") == 2  # seq 1
    assert log.feedback("old", "0") == 2  # seq 2: the highest seq is on the oldest rows
    assert log.purge() == 2
    assert all_feedback(log) == all_feedback(log, limit=1)
    assert [i["request_id"] for i in all_feedback(log)] == ["new", "new"]
    log.close()
    # reopened: a collector at cursor 2 must still see the next feedback
    again = open_log(path, max_rows=2)
    assert again.last_feedback_seq() == 2
    assert again.feedback("new", "0", row=0) == 1
    items, cursor = again.read_feedback(2)
    assert [(i["row"], i["seq"]) for i in items] == [(0, 3)] and cursor == 3


def test_concurrent_feedback_gets_distinct_seqs_and_is_all_collected(open_log):
    log = open_log()
    for k in range(40):
        add(log, f"r{k}", 3)
    log.flush()
    errors: list[BaseException] = []

    def give(ks: range) -> None:
        try:
            for k in ks:
                assert log.feedback(f"r{k}", "1") == 3
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=give, args=(range(t, 40, 4),)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    items = all_feedback(log, limit=5)
    assert len(items) == 120 and len({i["id"] for i in items}) == 120
    by_request: dict[str, set[int]] = {}
    for i in items:
        by_request.setdefault(i["request_id"], set()).add(i["seq"])
    assert all(len(seqs) == 1 for seqs in by_request.values())
    assert sorted(s for seqs in by_request.values() for s in seqs) == list(range(1, 41))
    assert log.last_feedback_seq() == 40


# ---- damage, memory and disk bounds (issue 12) -----------------------------------------------
def filled(open_log: Callable[..., InferenceLog], path: Path, requests: int, **kw: Any) -> str:
    """Write ``requests`` × 1,000 rows to a log at ``path``, close it; return its log id."""
    log = open_log(path, **kw)
    for k in range(requests):
        add(log, f"r{k}", 1000)
    log.flush()
    assert log.last_id() == 1000 * requests
    log.close()
    return log.log_id


def overwrite_middle_pages(path: Path, pages: int = 3) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(random.Random(12).randbytes(4096 * pages))


def damaged_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".damaged-*"))


@pytest.mark.parametrize(
    "damage", ["truncated_to_0", "random_pages_in_the_middle", "not_a_database"]
)
def test_a_damaged_database_is_moved_aside_and_a_new_log_started(
    open_log, tmp_path, damage, caplog
):
    path = tmp_path / "log.db"
    old_id = filled(open_log, path, 3)
    before = path.read_bytes()
    if damage == "truncated_to_0":
        path.write_bytes(b"")
    elif damage == "random_pages_in_the_middle":
        overwrite_middle_pages(path)
    else:
        path.write_text("timestamp,machine_type\n2026-11-21,L\n" * 200)
    damaged = path.read_bytes()
    assert damaged != before

    log = open_log(path)
    assert log.damaged_moved == 1 and damaged_files(path) == [log.damaged_path]
    assert log.damaged_path.read_bytes() == damaged  # kept as it was, for inspection
    assert log.log_id != old_id and log.last_id() == 0 and log.read() == ([], 0)
    add(log, "after", 2)
    assert [i["request_id"] for i in log.read()[0]] == ["after", "after"]
    message = next(
        r.getMessage() for r in caplog.records if "inference log damaged" in r.getMessage()
    )
    assert f"moved aside to {log.damaged_path}" in message and "a new log started" in message
    if damage == "truncated_to_0":
        assert "0 bytes: not a valid log" in message and "(0 rows readable)" in message
    # the new log is sound: opening it again keeps it
    new_id = log.log_id
    log.close()
    again = open_log(path)
    assert again.log_id == new_id and again.damaged_moved == 0 and again.last_id() == 2


def test_damage_found_while_running_moves_the_log_aside_once_and_reads_go_on(open_log, tmp_path):
    """Rows whose stored JSON no longer decodes (SQLite's quick_check cannot see it): the read
    that meets them raises LogDamaged naming the fix; the log is moved aside and a new one used."""
    path = tmp_path / "log.db"
    old_id = filled(open_log, path, 1)
    raw = path.read_bytes()
    at = raw.index(b'{"x":500}')
    path.write_bytes(raw[:at] + b"#" + raw[at + 1 :])

    log = open_log(path)
    assert log.damaged_moved == 0 and log.log_id == old_id  # quick_check found nothing
    with pytest.raises(LogDamaged) as err:
        log.read(0, 5000)
    assert "moved aside to" in str(err.value) and "read it again from cursor 0" in str(err.value)
    assert log.damaged_moved == 1 and log.log_id != old_id and damaged_files(path)
    assert log.read() == ([], 0)
    add(log, "after", 1)  # writes go on, into the new log
    assert [i["request_id"] for i in log.read()[0]] == ["after"]


def test_sqlite_corruption_met_at_runtime_is_log_damaged_and_writes_go_on(
    open_log, tmp_path, monkeypatch
):
    path = tmp_path / "log.db"
    filled(open_log, path, 3)
    overwrite_middle_pages(path)
    # as if the damage happened after the check at open
    monkeypatch.setattr(maint, "check_database", lambda p: None)
    log = open_log(path)
    with pytest.raises(LogDamaged) as err:
        log.read(0, 5000)
    assert "malformed" in str(err.value) and log.damaged_moved == 1
    add(log, "after", 1)
    assert [i["request_id"] for i in log.read()[0]] == ["after"]


def test_the_queue_is_bounded_in_bytes_and_drops_count_rows(open_log):
    rows = [{"x": 1.5, "machine_type": "L"} for _ in range(100)]
    one = estimate_bytes(rows, [[0.9, 0.1]] * 100)
    # the writer waits 30 s for a batch to gather: the first request stays queued
    log = open_log(queue_max_bytes=one + one // 2, batch_seconds=30)
    for rid in ("kept", "dropped"):
        log.append(rid, "1.0.0", rows, ["0"] * 100, [[0.9, 0.1]] * 100, 1.0)
    assert (log.queued_bytes, log.dropped, log.dropped_bytes) == (one, 100, one)
    items, _ = log.read(0, 5000)  # flush() cuts the wait short
    assert {i["request_id"] for i in items} == {"kept"} and log.queued_bytes == 0
    assert log.stats()["dropped"] == 100


def test_estimate_bytes_is_near_what_python_holds(open_log):
    """The estimate is within a factor of 1.5 of tracemalloc's figure, long strings included."""
    rnd = random.Random(3)
    cases = {
        "plant rows": lambda i: {
            "timestamp": f"2026-11-21T10:00:{i % 60:02d}",
            "machine_type": "L",
            "product_line": "pump",
            **{f"n{k}": rnd.random() for k in range(6)},
        },
        "long strings": lambda i: {"note": "x" * rnd.randint(500, 3000), "v": rnd.random()},
    }
    for name, make in cases.items():
        body = json.dumps({"rows": [make(i) for i in range(1000)]})
        tracemalloc.start()
        rows = json.loads(body)["rows"]
        probas = [[rnd.random(), rnd.random()] for _ in rows]
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        estimate = estimate_bytes(rows, probas)
        assert held / 1.5 < estimate < held * 1.5, (name, estimate, held)


def test_purge_to_a_byte_cap_shrinks_the_file(open_log, tmp_path):
    path = tmp_path / "log.db"
    filled(open_log, path, 20)
    log = open_log(path, max_bytes=1 << 30)
    before = log.bytes_on_disk
    assert log.purge() == 0 and log.bytes_on_disk == before
    log.max_bytes = before // 4
    purged = log.purge()
    after = log.bytes_on_disk  # the database, its WAL (truncated) and its 32 kB -shm
    assert 0 < purged < 20_000 and path.stat().st_size <= log.max_bytes, (before, after)
    assert after < before // 3
    items, _ = log.read(0, 5000)
    assert items[-1]["id"] == 20_000 and len(items) == 20_000 - purged  # the newest rows stay
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def test_purge_to_the_row_cap_shrinks_the_file_too(open_log, tmp_path):
    path = tmp_path / "log.db"
    filled(open_log, path, 10)
    log = open_log(path, max_rows=1000)
    before = log.bytes_on_disk
    assert log.purge() == 9000 and log.stats()["rows"] == 1000
    assert log.bytes_on_disk < before / 4, (before, log.bytes_on_disk)


def test_an_existing_database_is_switched_to_incremental_vacuum(open_log, tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.executemany(
        "INSERT INTO inference (ts, request_id, row_index, model_version, features, label, "
        "probabilities, latency_ms) VALUES (?,?,?,?,?,?,?,?)",
        [(1e12, "old", i, "0.9.0", '{"x":0}', "0", "[0.9,0.1]", 1.0) for i in range(500)],
    )
    conn.commit()
    assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    conn.close()
    log = open_log(path, retention_seconds=1e12)
    assert log.stats()["rows"] == 500 and log.damaged_moved == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # INCREMENTAL
    db.close()


def test_damaged_again_right_after_a_move_is_left_in_place_with_the_fix(
    open_log, tmp_path, monkeypatch
):
    """A new log damaged within a minute: the disk is at fault, moving file after file aside
    would not help; the read says so (predictions are not the log's concern)."""
    path = tmp_path / "log.db"
    filled(open_log, path, 3)
    overwrite_middle_pages(path)
    monkeypatch.setattr(maint, "check_database", lambda p: None)
    log = open_log(path)
    log._moved_at = time.monotonic()  # as if a damaged log had just been moved aside
    with pytest.raises(LogDamaged, match="check the disk"):
        log.read(0, 5000)
    assert log.damaged_moved == 0 and damaged_files(path) == []


def test_each_row_is_stored_as_the_compact_json_of_the_row_and_its_rounded_probabilities(
    open_log, tmp_path
):
    """The writer encodes in C (json's encoder, no Python per row): the text is exactly what
    ``compact_json`` gives, minimised fields included, for every kind of JSON value."""
    rnd = random.Random(7)
    values = [
        0.1 + 0.2,
        -1e-300,
        1e300,
        5e-324,
        12,
        -(2**70),
        True,
        False,
        None,
        "",
        "L",
        'quote " and \\ backslash',
        "ünïcödé \u2028",
        "x" * 300,
    ]
    requests = []
    for k in range(40):
        n = 1 if k % 4 == 0 else rnd.randint(2, 40)  # several chunks of a batch; one-row requests
        rows = [{f"c{j}": rnd.choice(values) for j in range(rnd.randint(0, 6))} for _ in range(n)]
        rows = [{**r, "secret": rnd.choice(values), "gone": 1} for r in rows]
        labels = [rnd.choice([0, 1, "yes", 2.5]) for _ in range(n)]
        probas = [[rnd.random(), rnd.random(), rnd.random()] for _ in range(n)]
        requests.append((f"r{k}", rows, labels, probas))
    log = open_log(tmp_path / "log.db", drop_fields=["gone"], hash_fields=["secret"], hash_salt="s")
    for rid, rows, labels, probas in requests:
        log.append(rid, "1.0.0", rows, labels, probas, 1.5)
    log.flush()
    with sqlite3.connect(tmp_path / "log.db") as conn:
        stored = conn.execute(
            "SELECT request_id, row_index, features, label, probabilities FROM inference ORDER BY id"
        ).fetchall()
    expected = [
        (
            rid,
            i,
            compact_json(log.minimise(row)),
            str(labels[i]),
            compact_json([round(p, 7) for p in probas[i]]),
        )
        for rid, rows, labels, probas in requests
        for i, row in enumerate(rows)
    ]
    assert stored == expected


def test_flush_waits_for_the_rows_queued_before_it_not_for_later_ones(open_log):
    log = open_log(batch_seconds=30)  # the writer only writes when flush() wakes it

    def stored(request_id: str) -> int:  # read the file itself: log.read() would flush first
        with contextlib.closing(sqlite3.connect(log.path)) as conn:
            query = "SELECT COUNT(*) FROM inference WHERE request_id = ?"
            return conn.execute(query, (request_id,)).fetchone()[0]

    add(log, "first", 3)
    time.sleep(0.2)
    assert stored("first") == 0  # queued, not written: the batch waits
    log.flush()
    assert stored("first") == 3
    stop = threading.Event()

    def keep_appending() -> None:
        while not stop.is_set():
            add(log, "later", 1)
            time.sleep(0.0005)

    appender = threading.Thread(target=keep_appending)
    appender.start()
    try:
        time.sleep(0.05)
        add(log, "mine", 1)
        started = time.monotonic()
        log.flush(timeout=10)
        took = time.monotonic() - started
        mine = stored("mine")
    finally:
        stop.set()
        appender.join()
    assert mine == 1 and took < 5, took


def test_close_writes_what_is_queued_and_an_append_after_it_is_counted_as_dropped(open_log):
    log = open_log(batch_seconds=30)
    add(log, "queued", 4)
    log.close()
    add(log, "too late", 2)  # e.g. a request still in flight while the agent stops
    assert log.dropped == 2 and log.queued_bytes == 0
    with contextlib.closing(sqlite3.connect(log.path)) as conn:
        rows = conn.execute("SELECT request_id, COUNT(*) FROM inference GROUP BY 1").fetchall()
    assert rows == [("queued", 4)]


@pytest.mark.skipif(sys.platform != "linux", reason="nice is per thread on Linux only")
def test_the_writer_and_the_purger_run_below_the_requests_cpu_priority(open_log):
    log = open_log()
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for thread in (log._writer, log._purger):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # each thread lowers its own as it starts
            nice = os.getpriority(os.PRIO_PROCESS, thread.native_id)
            if nice != mine:
                break
            time.sleep(0.01)
        assert nice == min(19, mine + BACKGROUND_NICE), (thread.name, nice, mine)


def test_a_batch_is_written_in_transactions_of_batch_rows_rows_at_most():
    def item(n: int) -> tuple:
        return (0.0, "r", "1.0.0", [{}] * n, [0] * n, [[1.0]] * n, 0.0, 0)

    batch = [item(n) for n in (3000, 3000, 10, 6000, 1)]
    groups = list(transactions(batch))
    assert [rows for _, rows in groups] == [3000, 3010, 6000, 1]  # one request is never split
    assert [len(items) for items, _ in groups] == [1, 2, 1, 1]
    assert [i for items, _ in groups for i in items] == batch
    assert list(transactions([])) == []


def test_an_unexpected_error_loses_its_batch_only_and_the_writer_goes_on(open_log, monkeypatch):
    log = open_log()
    records = log_records.records
    failed: list[str] = []

    def fail_once(item: tuple, minimiser: Any) -> Any:
        if not failed:
            failed.append(item[1])
            raise TypeError("not JSON serialisable")
        return records(item, minimiser)

    monkeypatch.setattr(log_records, "records", fail_once)
    add(log, "lost", 2)
    log.flush()
    add(log, "kept", 3)
    assert [i["request_id"] for i in log.read()[0]] == ["kept"] * 3
    assert failed == ["lost"] and log.stats()["dropped"] == 2 and log.queued_bytes == 0
