"""The inference log: every prediction, in SQLite (WAL) in the state directory.

Requests enqueue rows; one writer thread inserts them in batches, so logging adds microseconds
to a request, not a disk write; it writes in small chunks, below the requests' CPU priority, so
that a request never waits long for the GIL or the core (:mod:`log_records`). The queue is
bounded by an estimate of its bytes in memory: under overload rows are dropped and counted,
memory stays flat. Retention (by age, rows and bytes) is purged in the background and gives the
disk back. Named fields can be dropped or replaced by a salted hash before anything is written
(data minimisation).

A damaged database (found at open, or by SQLite while running) is moved aside as
``inference.db.damaged-<UTC time>`` and a new log is started (see :mod:`log_maintenance`): the
model is served regardless. A read that meets the damage raises :class:`LogDamaged`.

Two cursors let a collector read the log exactly once, feedback included:

* ``read(after)`` pages rows by ``id`` (AUTOINCREMENT: ids only grow and are never reused);
* ``read_feedback(after)`` pages feedback *events* by ``feedback_seq``: every ``feedback()`` call
  stamps the rows it updates with one new sequence number, so a label that arrives after its row
  was collected shows up again on the feedback cursor.

``log_id`` (random, stored in the ``meta`` table) names this database: a new id means the log was
reset (state directory wiped, or a damaged log moved aside), so a collector's cursors no longer
apply.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from edgeops.edge import log_maintenance as maint
from edgeops.edge import log_records as rec
from edgeops.edge.log_maintenance import FEEDBACK_SEQ_KEY, Damage, UndecodableRow, is_damage
from edgeops.edge.log_records import compact_json, estimate_bytes

log = logging.getLogger("edgeops.agent")
__all__ = ["InferenceLog", "LogDamaged", "compact_json", "estimate_bytes"]

MOVE_AGAIN_SECONDS = 60.0  # damaged again this soon after a move: the disk, not the file


class LogDamaged(Exception):
    """The inference log's database is damaged: ``str(exc)`` says what was done and the fix
    (the agent answers 503 ``log_damaged``)."""


class InferenceLog:
    """Append predictions, read them back by cursor, attach feedback, purge old rows.

    For metrics: ``dropped`` (rows) and ``dropped_bytes`` (their estimate) lost to overload,
    ``queued_bytes`` waiting in memory, ``damaged_moved`` (damaged databases moved aside since
    start, the last one ``damaged_path``), ``bytes_on_disk`` (the database, -wal and -shm).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_seconds: float = 30 * 86400,
        max_rows: int = 1_000_000,
        max_bytes: int = 1 << 30,
        drop_fields: Sequence[str] = (),
        hash_fields: Sequence[str] = (),
        hash_salt: str = "",
        queue_size: int = 20_000,
        queue_max_bytes: int = 64 << 20,
        purge_interval: float = 60.0,
        batch_seconds: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self.retention_seconds = retention_seconds
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.queue_max_bytes = queue_max_bytes
        self.drop_fields = set(drop_fields)
        self.hash_fields = set(hash_fields)
        self.hash_salt = hash_salt
        self.purge_interval = purge_interval
        self.batch_seconds = batch_seconds
        self._wake = threading.Event()
        self.dropped = self.dropped_bytes = self.queued_bytes = 0
        self._count_lock = threading.Lock()  # the counters above: request path + writer thread
        self.damaged_moved = 0
        self.damaged_path: Path | None = None
        self._moved_at = -MOVE_AGAIN_SECONDS
        self.queue_size = queue_size  # requests waiting, at most
        self._pending: list[tuple] = []  # requests waiting for the writer (under _count_lock)
        self._appended = self._written = 0  # requests queued, and written (or lost), so far
        self._closing = False
        self._db_lock = threading.Lock()
        self._conn = self._open()
        self._stop = threading.Event()
        self._writer = threading.Thread(
            target=self._write_loop, name="inference-log-writer", daemon=True
        )
        self._purger = threading.Thread(
            target=self._purge_loop, name="inference-log-purger", daemon=True
        )
        self._writer.start()
        self._purger.start()

    def _open(self) -> sqlite3.Connection:
        """Connect; a damaged database is first moved aside (a new log, a new ``log_id``)."""
        conn, moved = maint.open_checked(self.path)
        for path in moved:
            self._moved(path)
        return self._read_state(conn)

    def _moved(self, path: Path) -> None:
        self.damaged_path, self._moved_at = path, time.monotonic()
        self.damaged_moved += 1

    def _read_state(self, conn: sqlite3.Connection) -> sqlite3.Connection:
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

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn damage met inside the block into :class:`LogDamaged` (after moving the file aside
        and starting a new log); other errors pass. Enter it before taking the lock."""
        conn = self._conn
        try:
            yield
        except (sqlite3.DatabaseError, UndecodableRow) as exc:
            if not is_damage(exc):
                raise
            raise self._damaged(exc, conn) from None

    def _damaged(self, exc: BaseException, conn: sqlite3.Connection) -> LogDamaged:
        """Damage found while running: move the file aside and start a new log (unless it was
        just done: then the disk is at fault, and the fix is the operator's)."""
        with self._db_lock:
            if self._conn is conn and time.monotonic() - self._moved_at >= MOVE_AGAIN_SECONDS:
                damage = Damage(str(exc), maint.count_rows(conn))
                conn.close()
                try:
                    self._moved(maint.set_aside(self.path, damage))
                    self._conn = self._read_state(maint.connect(self.path))
                except (OSError, sqlite3.Error) as failed:  # reads fail until a restart
                    log.error("inference log: no new log could be started: %s", failed)
                    return LogDamaged(
                        f"the inference log {self.path} is damaged ({exc}) and no "
                        f"new log could be started ({failed}); predictions are "
                        "still served. Fix: check the disk, restart the agent"
                    )
            elif self._conn is conn:
                log.error("inference log %s damaged again (%s): left in place", self.path, exc)
                return LogDamaged(
                    f"the inference log {self.path} is damaged ({exc}) again, soon after a damaged "
                    "one was moved aside; predictions are still served. Fix: check the disk, then "
                    "restart the agent (it moves a damaged log aside and starts a new one)"
                )
        return LogDamaged(
            f"the inference log was damaged ({exc}): it was moved aside to {self.damaged_path} "
            f"and a new log started (log_id {self.log_id}); read it again from cursor 0"
        )

    # ---- writing -----------------------------------------------------------------------------
    def minimise(self, features: dict[str, Any]) -> dict[str, Any]:
        """Drop and hash the configured fields of one row."""
        if not self.drop_fields and not self.hash_fields:
            return features
        return rec.minimise(features, self.drop_fields, self.hash_fields, self.hash_salt)

    def append(
        self,
        request_id: str,
        version: str,
        rows: Sequence[dict[str, Any]],
        labels: Sequence[Any],
        probabilities: Sequence[Sequence[float]],
        latency_ms: float,
    ) -> None:
        """Queue one request's rows; never blocks (drops and counts them when the queue is over
        ``queue_max_bytes`` or ``queue_size`` requests, or the log is closing)."""
        nbytes = estimate_bytes(rows, probabilities)
        item = (time.time(), request_id, version, rows, labels, probabilities, latency_ms, nbytes)
        with self._count_lock:
            if (
                not self._closing
                and self.queued_bytes + nbytes <= self.queue_max_bytes
                and len(self._pending) < self.queue_size
            ):
                self.queued_bytes += nbytes
                self._pending.append(item)
                self._appended += 1
                return
        self._count_dropped(len(rows), nbytes)

    def _count_dropped(self, rows: int, nbytes: int) -> None:
        with self._count_lock:
            self.dropped += rows
            self.dropped_bytes += nbytes

    def _write_loop(self) -> None:
        """Every ``batch_seconds`` (or at once for flush() and close()), take what is queued and
        write it: one transaction per batch, not per request, keeps the log off the request path;
        taking the queue is one swap, never a loop over it holding the GIL."""
        rec.background_priority()
        while True:
            self._wake.wait(self.batch_seconds)
            self._wake.clear()
            with self._count_lock:  # after closing, nothing more is queued: this is the last
                closing = self._closing
                batch, self._pending = self._pending, []
            for items, rows in rec.transactions(batch):
                self._write(items, rows)
            if closing:
                return

    def _write(self, batch: list[tuple], rows: int) -> None:
        nbytes = sum(map(itemgetter(7), batch))
        try:
            self._insert(batch, rows, nbytes)
        except Exception:  # never the writer's end: these rows are lost, the next ones written
            log.exception("inference log: %d rows could not be written", rows)
            self._count_dropped(rows, nbytes)
        with self._count_lock:
            self.queued_bytes -= nbytes
            self._written += len(batch)

    def _insert(self, batch: list[tuple], rows: int, nbytes: int) -> None:
        """Write a batch in one transaction, pausing after each chunk of rows unless the batch
        is large (the writer is behind): see :mod:`edgeops.edge.log_records`."""
        minimiser = self.minimise if self.drop_fields or self.hash_fields else None
        with self._db_lock:
            conn = self._conn
            try:
                conn.execute("BEGIN")
                for chunk in rec.chunks(batch, rows, minimiser):
                    conn.executemany(rec.INSERT, chunk)
                    if rows < rec.PAUSE_UNTIL_ROWS:
                        rec.pause()
                conn.execute("COMMIT")
                self._rows += rows
                return
            except BaseException as exc:  # the rows are lost, the agent serves on
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK") if conn.in_transaction else None
                if not isinstance(exc, sqlite3.Error):
                    raise  # _write counts them
                error = exc
        self._count_dropped(rows, nbytes)
        if is_damage(error):
            self._damaged(error, conn)  # the next batches go to a new log

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every row queued before the call is written (used before feedback and
        reads)."""
        deadline = time.monotonic() + timeout
        target = self._appended
        while self._written < target and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.002)

    # ---- reading, feedback -------------------------------------------------------------------
    def read(self, after: int = 0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Rows with id > ``after``, oldest first; returns ``(rows, next_cursor)``."""
        self.flush()
        with self._guard():
            with self._db_lock:
                rows = self._conn.execute(
                    "SELECT id, ts, request_id, row_index, model_version, features, label, "
                    "probabilities, latency_ms, feedback, feedback_ts FROM inference WHERE id > ? "
                    "ORDER BY id LIMIT ?",
                    (after, limit),
                ).fetchall()
            try:
                items = rec.decode(rows)
            except ValueError as exc:  # SQLite read it, but it is not what was written
                raise UndecodableRow(f"a logged row does not decode: {exc}") from None
        return items, (items[-1]["id"] if items else after)

    def feedback(self, request_id: str, label: str, row: int | None = None) -> int:
        """Attach a ground-truth label; return how many rows it was attached to.

        Every row this call updates gets the same new ``feedback_seq`` (one seq per call), so the
        event is visible on the feedback cursor (``read_feedback``) even when the row itself was
        collected long before. A call that matches no row uses no seq.
        """
        return self.feedback_many([(request_id, label, row)])[0]

    def feedback_many(self, events: Sequence[tuple[str, str, int | None]]) -> tuple[int, list[int]]:
        """Attach many labels ``(request_id, label, row)`` in one transaction, all or none.

        Returns ``(rows updated, [])``; when an event matches no row, nothing is stored and
        the indexes of every such event are returned (``(0, [i, ...])``). Each event gets its own
        ``feedback_seq``, as if ``feedback()`` had been called for each in turn.
        """
        self.flush()
        base = (
            "UPDATE inference SET feedback = ?, feedback_ts = ?, feedback_seq = ? "
            "WHERE request_id = ?"
        )
        with self._guard(), self._db_lock:
            seq, now, total, unknown = self._feedback_seq, time.time(), 0, []
            try:
                self._conn.execute("BEGIN")
                for i, (request_id, label, row) in enumerate(events):
                    sql, args = base, [label, now, seq + 1, request_id]
                    if row is not None:
                        sql += " AND row_index = ?"
                        args.append(row)
                    n = self._conn.execute(sql, args).rowcount
                    if n:
                        seq, total = seq + 1, total + n
                    else:
                        unknown.append(i)
                if unknown:
                    self._conn.execute("ROLLBACK")
                    return 0, unknown
                if total:
                    self._conn.execute(
                        "INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (FEEDBACK_SEQ_KEY, str(seq)),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK") if self._conn.in_transaction else None
                raise
            self._feedback_seq = seq
            return total, []

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
        with self._guard(), self._db_lock:
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
            {
                "id": r[0],
                "request_id": r[1],
                "row": r[2],
                "feedback": r[3],
                "feedback_ts": r[4],
                "seq": r[5],
            }
            for r in rows
        ]
        return items, (items[-1]["seq"] if items else after)

    def last_id(self) -> int:
        """The highest row id ever handed out (0 before the first row).

        AUTOINCREMENT's counter, not MAX(id): it never goes back when retention purges the newest
        rows, so a collector's cursor is never "ahead" of a healthy log."""
        self.flush()
        with self._guard(), self._db_lock:
            row = self._conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'inference'"
            ).fetchone()
            return int(row[0]) if row else 0

    def last_feedback_seq(self) -> int:
        """The last feedback seq handed out (0 before any feedback); never goes back, even when
        the rows that held it were purged."""
        with self._db_lock:
            return self._feedback_seq

    @property
    def bytes_on_disk(self) -> int:
        """The database with its -wal and -shm (not the damaged ones moved aside)."""
        return maint.file_bytes(self.path)

    def stats(self) -> dict[str, int]:
        """Rows, bytes on disk, dropped rows and bytes, queued bytes, damaged logs moved aside;
        cheap (no table scan), safe on the event loop."""
        return {
            "rows": self._rows,
            "bytes": self.bytes_on_disk,
            "dropped": self.dropped,
            "dropped_bytes": self.dropped_bytes,
            "queued_bytes": self.queued_bytes,
            "damaged_moved": self.damaged_moved,
        }

    # ---- retention ---------------------------------------------------------------------------
    def purge(self) -> int:
        """Delete rows older than the retention, then the oldest beyond ``max_rows`` and
        ``max_bytes``, and give the space back to the disk; return how many rows went."""
        with self._guard():
            n = maint.purge(
                self._conn,
                self._db_lock,
                cutoff=time.time() - self.retention_seconds,
                max_rows=self.max_rows,
                max_bytes=self.max_bytes,
            )
            with self._db_lock:
                self._rows = self._conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
        return n

    def _purge_loop(self) -> None:
        rec.background_priority()
        while not self._stop.wait(self.purge_interval):
            with contextlib.suppress(sqlite3.Error, LogDamaged):  # damage: moved aside, new log
                self.purge()

    def close(self) -> None:
        """Write what is queued (for up to 5 s), stop the threads, close the database."""
        self._stop.set()
        with self._count_lock:
            self._closing = True
        self._wake.set()
        self._writer.join(timeout=5)
        with self._db_lock:
            self._conn.close()
