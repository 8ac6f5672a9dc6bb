"""The inference log: every prediction, in SQLite (WAL) in the state directory.

Requests enqueue rows; one writer thread inserts them in batches, so logging adds microseconds
to a request, not a disk write. The queue is bounded: under overload rows are dropped and counted,
memory stays flat. Retention (by age and by row count) is purged in the background. Named fields
can be dropped or replaced by a salted hash before anything is written (data minimisation).

Two cursors let a collector read the log exactly once, feedback included:

* ``read(after)`` pages rows by ``id`` (AUTOINCREMENT: ids only grow and are never reused);
* ``read_feedback(after)`` pages feedback *events* by ``feedback_seq``: every ``feedback()`` call
  stamps the rows it updates with one new sequence number, so a label that arrives after its row
  was collected shows up again on the feedback cursor.

``log_id`` (random, stored in the ``meta`` table) names this database: a new id means the log was
reset (state directory wiped), so a collector's cursors no longer apply.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# one encoder, built once: json.dumps(obj, separators=...) builds a new one per call
compact_json = json.JSONEncoder(separators=(",", ":")).encode

SCHEMA = """
CREATE TABLE IF NOT EXISTS inference (
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
    feedback_ts REAL,
    feedback_seq INTEGER
);
CREATE INDEX IF NOT EXISTS inference_request ON inference(request_id);
CREATE INDEX IF NOT EXISTS inference_ts ON inference(ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# after the migration below: a database from before feedback_seq has no such column yet
SCHEMA_FEEDBACK_INDEX = (
    "CREATE INDEX IF NOT EXISTS inference_feedback_seq ON inference(feedback_seq)"
)
FEEDBACK_SEQ_KEY = "feedback_seq"  # meta: the last feedback seq handed out (survives purges)


class InferenceLog:
    """Append predictions, read them back by cursor, attach feedback, purge old rows."""

    def __init__(
        self, path: str | Path, *, retention_seconds: float = 30 * 86400, max_rows: int = 1_000_000,
        drop_fields: Sequence[str] = (), hash_fields: Sequence[str] = (), hash_salt: str = "",
        queue_size: int = 20_000, purge_interval: float = 60.0, batch_seconds: float = 0.05,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.retention_seconds = retention_seconds
        self.max_rows = max_rows
        self.drop_fields = set(drop_fields)
        self.hash_fields = set(hash_fields)
        self.hash_salt = hash_salt
        self.purge_interval = purge_interval
        self.batch_seconds = batch_seconds
        self._wake = threading.Event()
        self.dropped = 0
        self._queue: queue.Queue[tuple | None] = queue.Queue(maxsize=queue_size)
        self._db_lock = threading.Lock()
        self._conn = self._connect()
        self._stop = threading.Event()
        self._writer = threading.Thread(
            target=self._write_loop, name="inference-log-writer", daemon=True
        )
        self._purger = threading.Thread(
            target=self._purge_loop, name="inference-log-purger", daemon=True
        )
        self._writer.start()
        self._purger.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        # one write transaction: two processes opening an old database do not both migrate it
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(inference)")}
            if "feedback_seq" not in columns:
                conn.execute("ALTER TABLE inference ADD COLUMN feedback_seq INTEGER")
            conn.execute(SCHEMA_FEEDBACK_INDEX)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', ?)",
                (os.urandom(16).hex(),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK") if conn.in_transaction else None
            raise
        # read back: an existing database keeps its id
        self.log_id: str = conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()[0]
        self._rows = conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
        # the last seq handed out: the stored high-water mark, so that purging the rows that
        # held the highest seq never makes a seq come round again (a collector past it would
        # miss the feedback)
        in_rows = conn.execute("SELECT MAX(feedback_seq) FROM inference").fetchone()[0] or 0
        stored = conn.execute(
            "SELECT value FROM meta WHERE key = ?", (FEEDBACK_SEQ_KEY,)
        ).fetchone()
        self._feedback_seq = max(in_rows, int(stored[0]) if stored else 0)
        return conn

    # ---- writing -----------------------------------------------------------------------------
    def minimise(self, features: dict[str, Any]) -> dict[str, Any]:
        """Drop and hash the configured fields of one row."""
        if not self.drop_fields and not self.hash_fields:
            return features
        out = {}
        for k, v in features.items():
            if k in self.drop_fields:
                continue
            if k in self.hash_fields and v is not None:
                v = "sha256:" + hashlib.sha256(f"{self.hash_salt}{v}".encode()).hexdigest()[:16]
            out[k] = v
        return out

    def append(self, request_id: str, version: str, rows: Sequence[dict[str, Any]],
               labels: Sequence[Any], probabilities: Sequence[Sequence[float]], latency_ms: float) -> None:  # fmt: skip
        """Queue one request's rows; never blocks (drops and counts when the queue is full)."""
        try:
            self._queue.put_nowait(
                (time.time(), request_id, version, rows, labels, probabilities, latency_ms)
            )
        except queue.Full:
            self.dropped += len(rows)

    def _records(self, item: tuple) -> Iterable[tuple]:
        ts, request_id, version, rows, labels, probas, latency_ms = item
        for i, row in enumerate(rows):
            yield (
                ts, request_id, i, version, compact_json(self.minimise(row)),
                str(labels[i]), compact_json([round(p, 7) for p in probas[i]]), latency_ms,
            )  # fmt: skip

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            # let a batch gather (or flush() cut the wait short): one transaction and one GIL
            # hand-off per batch instead of per request keeps the log off the request path
            self._wake.wait(self.batch_seconds)
            self._wake.clear()
            batch = [item]
            while len(batch) < 2048:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(b is None for b in batch)
            records = [r for b in batch if b is not None for r in self._records(b)]
            if records:
                with self._db_lock:
                    try:
                        self._conn.execute("BEGIN")
                        self._conn.executemany(
                            "INSERT INTO inference (ts, request_id, row_index, model_version, features, "
                            "label, probabilities, latency_ms) VALUES (?,?,?,?,?,?,?,?)",
                            records,
                        )
                        self._conn.execute("COMMIT")
                        self._rows += len(records)
                    except sqlite3.Error:
                        self._conn.execute("ROLLBACK") if self._conn.in_transaction else None
                        self.dropped += len(records)
            for _ in batch:
                self._queue.task_done()
            if stop:
                return

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued row is written (used before feedback and reads)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.002)

    # ---- reading, feedback -------------------------------------------------------------------
    def read(self, after: int = 0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Rows with id > ``after``, oldest first; returns ``(rows, next_cursor)``."""
        self.flush()
        with self._db_lock:
            cur = self._conn.execute(
                "SELECT id, ts, request_id, row_index, model_version, features, label, probabilities, "
                "latency_ms, feedback, feedback_ts FROM inference WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            )
            rows = cur.fetchall()
        items = [
            {
                "id": r[0],
                "ts": r[1],
                "request_id": r[2],
                "row": r[3],
                "model_version": r[4],
                "features": json.loads(r[5]),
                "label": r[6],
                "probabilities": json.loads(r[7]),
                "latency_ms": r[8],
                "feedback": r[9],
                "feedback_ts": r[10],
            }  # fmt: skip
            for r in rows
        ]
        return items, (items[-1]["id"] if items else after)

    def feedback(self, request_id: str, label: str, row: int | None = None) -> int:
        """Attach a ground-truth label; return how many rows it was attached to.

        Every row this call updates gets the same new ``feedback_seq`` (one seq per call), so the
        event is visible on the feedback cursor (``read_feedback``) even when the row itself was
        collected long before. A call that matches no row uses no seq.
        """
        self.flush()
        sql = (
            "UPDATE inference SET feedback = ?, feedback_ts = ?, feedback_seq = ? "
            "WHERE request_id = ?"
        )
        with self._db_lock:
            seq = self._feedback_seq + 1
            args: list[Any] = [label, time.time(), seq, request_id]
            if row is not None:
                sql += " AND row_index = ?"
                args.append(row)
            try:
                self._conn.execute("BEGIN")
                n = self._conn.execute(sql, args).rowcount
                if n:
                    self._conn.execute(
                        "INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (FEEDBACK_SEQ_KEY, str(seq)),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK") if self._conn.in_transaction else None
                raise
            if n:
                self._feedback_seq = seq
            return n

    def read_feedback(self, after: int = 0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Feedback events with ``feedback_seq > after``, ordered by ``(seq, id)``; returns
        ``(items, next_cursor)``, items ``{id, request_id, row, feedback, feedback_ts, seq}``.

        The cursor is a seq, so a page always holds *whole* seqs: when the page is full
        (``limit`` rows) its last seq may have more rows than fit, and those rows are left to the
        next page (which starts after the previous seq); when that seq is the only one in the
        page, all of its rows are returned, even beyond ``limit``. Paging therefore never loses
        nor repeats a row. A row that gets feedback again moves to the new seq (its latest label).
        """
        cols = "id, request_id, row_index, feedback, feedback_ts, feedback_seq"
        with self._db_lock:
            rows = self._conn.execute(
                f"SELECT {cols} FROM inference WHERE feedback_seq > ? "
                "ORDER BY feedback_seq, id LIMIT ?",
                (after, limit),
            ).fetchall()
            if rows and len(rows) >= limit:
                last = rows[-1][5]
                if rows[0][5] == last:  # one seq fills the page: take all of its rows
                    rows = self._conn.execute(
                        f"SELECT {cols} FROM inference WHERE feedback_seq = ? ORDER BY id",
                        (last,),
                    ).fetchall()
                else:  # the last seq may go on beyond the page: leave it to the next one
                    rows = [r for r in rows if r[5] != last]
        items = [
            {"id": r[0], "request_id": r[1], "row": r[2], "feedback": r[3], "feedback_ts": r[4],
             "seq": r[5]}
            for r in rows
        ]  # fmt: skip
        return items, (items[-1]["seq"] if items else after)

    def last_id(self) -> int:
        """The highest row id ever handed out (0 before the first row).

        AUTOINCREMENT's counter, not MAX(id): it never goes back when retention purges the newest
        rows, so a collector's cursor is never "ahead" of a healthy log."""
        self.flush()
        with self._db_lock:
            row = self._conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'inference'"
            ).fetchone()
            return int(row[0]) if row else 0

    def last_feedback_seq(self) -> int:
        """The last feedback seq handed out (0 before any feedback); never goes back, even when
        the rows that held it were purged."""
        with self._db_lock:
            return self._feedback_seq

    def stats(self) -> dict[str, int]:
        """Rows, bytes on disk and dropped rows; cheap (no table scan), safe on the event loop."""
        rows = self._rows
        size = sum(
            p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file()
        )
        return {"rows": rows, "bytes": size, "dropped": self.dropped}

    # ---- retention ---------------------------------------------------------------------------
    def purge(self) -> int:
        """Delete rows older than the retention and beyond ``max_rows``; return how many."""
        cutoff = time.time() - self.retention_seconds
        with self._db_lock:
            n = self._conn.execute("DELETE FROM inference WHERE ts < ?", (cutoff,)).rowcount
            count = self._conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
            if count > self.max_rows:
                n += self._conn.execute(
                    "DELETE FROM inference WHERE id IN (SELECT id FROM inference ORDER BY id LIMIT ?)",
                    (count - self.max_rows,),
                ).rowcount
            self._rows = self._conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
        return n

    def _purge_loop(self) -> None:
        while not self._stop.wait(self.purge_interval):
            with contextlib.suppress(sqlite3.Error):
                self.purge()

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._writer.join(timeout=5)
        with self._db_lock:
            self._conn.close()
