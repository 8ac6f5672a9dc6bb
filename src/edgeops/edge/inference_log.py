"""The inference log: every prediction, in SQLite (WAL) in the state directory.

Requests enqueue rows; one writer thread inserts them in batches, so logging adds microseconds
to a request, not a disk write. The queue is bounded: under overload rows are dropped and counted,
memory stays flat. Retention (by age and by row count) is purged in the background. Named fields
can be dropped or replaced by a salted hash before anything is written (data minimisation).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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
    feedback_ts REAL
);
CREATE INDEX IF NOT EXISTS inference_request ON inference(request_id);
CREATE INDEX IF NOT EXISTS inference_ts ON inference(ts);
"""


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
        self._rows = conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
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
        """Attach a ground-truth label; return how many rows it was attached to."""
        self.flush()
        sql = "UPDATE inference SET feedback = ?, feedback_ts = ? WHERE request_id = ?"
        args: list[Any] = [label, time.time(), request_id]
        if row is not None:
            sql += " AND row_index = ?"
            args.append(row)
        with self._db_lock:
            return self._conn.execute(sql, args).rowcount

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
