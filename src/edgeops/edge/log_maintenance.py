"""The inference log's SQLite file: schema and migration, kept sound and bounded on disk.

* :func:`connect` opens (creates, migrates) the database: WAL, incremental auto-vacuum.
* :func:`open_checked` first runs :func:`check_database` (``PRAGMA quick_check``, the expected
  table): a damaged file (a 0-byte file too: it is not a log) is moved aside as
  ``inference.db.damaged-<UTC time>`` (its -wal/-shm with it), kept for inspection, and a new
  database is started.
* :func:`is_damage` tells damage (SQLITE_CORRUPT, SQLITE_NOTADB, rows that no longer decode) from
  other errors (a locked database, a full disk), which must not move anything aside.
* :func:`use_incremental_vacuum` and :func:`purge`: retention by age, rows and bytes that gives
  the space back (``auto_vacuum=INCREMENTAL``, ``incremental_vacuum``, a TRUNCATE checkpoint).

    conn, moved = open_checked(path)    # moved: where damaged databases went (usually [])
    deleted = purge(conn, lock, cutoff=time.time() - 30 * 86400, max_rows=10**6, max_bytes=1 << 30)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("edgeops.agent")

SIDE_FILES = ("-wal", "-shm", "")  # in this order: a stale WAL must never meet a new database
DAMAGE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)
REQUIRED_COLUMNS = {
    "id",
    "ts",
    "request_id",
    "row_index",
    "model_version",
    "features",
    "label",
    "probabilities",
    "latency_ms",
}
PURGE_CHUNK = 5000  # rows per delete transaction: the WAL and the writer's wait stay small
BYTES_TARGET = 0.9  # over the byte cap, purge down to this share of it (not on every write)
JOURNAL_SIZE_LIMIT = 16 << 20  # the WAL is cut back to this after a checkpoint
FEEDBACK_SEQ_KEY = "feedback_seq"  # meta: the last feedback seq handed out (survives purges)

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


class UndecodableRow(Exception):
    """A row whose stored JSON no longer decodes: the file was damaged under SQLite."""


@dataclass
class Damage:
    """Why a database is not a sound inference log, and how many rows could still be read."""

    reason: str
    rows: int | None = None

    def describe(self) -> str:
        return f"{self.rows} rows readable" if self.rows is not None else "rows unreadable"


def connect(path: Path) -> sqlite3.Connection:
    """Open the inference log database (WAL, incremental vacuum), creating or migrating it."""
    from edgeops.atomic import private_file

    private_file(path)  # the logged rows: 0600 whatever started the agent (-wal, -shm follow)
    for suffix in ("-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.chmod(f"{path}{suffix}", 0o600)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new database: before its first table
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        conn.executescript(SCHEMA)
        _migrate(conn)
        use_incremental_vacuum(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    # one write transaction: two processes opening an old database do not both migrate it
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(inference)")}
        if "feedback_seq" not in columns:
            conn.execute("ALTER TABLE inference ADD COLUMN feedback_seq INTEGER")
        conn.execute(SCHEMA_FEEDBACK_INDEX)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', ?)", (os.urandom(16).hex(),)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK") if conn.in_transaction else None
        raise


def is_damage(exc: BaseException) -> bool:
    """True for errors that mean the file is damaged, not busy, locked or out of space."""
    if isinstance(exc, UndecodableRow):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in DAMAGE_CODES
    # text that is not UTF-8 has no SQLite code: Python raises it while decoding the column
    return "Could not decode to UTF-8" in str(exc)


def count_rows(conn: sqlite3.Connection) -> int | None:
    """The rows of ``inference`` that can still be counted, or None."""
    try:
        return conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
    except sqlite3.Error:
        return None


def check_database(path: Path) -> Damage | None:
    """Why ``path`` is not a sound inference log, or None (sound, empty of tables, or absent)."""
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        return Damage("the file is 0 bytes: not a valid log (truncated?)", 0)
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=30)
        found = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        if found != ["ok"]:
            return Damage("quick_check: " + "; ".join(found), count_rows(conn))
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:  # created but never written (the agent stopped at once): a new log
            return None
        if "inference" not in tables:
            return Damage(f"no inference table (tables: {sorted(tables)}): not an inference log")
        columns = {r[1] for r in conn.execute("PRAGMA table_info(inference)")}
        if REQUIRED_COLUMNS - columns:
            missing = sorted(REQUIRED_COLUMNS - columns)
            return Damage(f"the inference table lacks {missing}", count_rows(conn))
        return None
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return Damage(str(exc), count_rows(conn) if conn is not None else None)
    finally:
        if conn is not None:
            conn.close()


def move_aside(path: Path) -> Path:
    """Rename ``path`` and its -wal/-shm to ``<path>.damaged-<UTC time>[...]``; return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while any(Path(f"{target}{s}").exists() for s in SIDE_FILES):
        target, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    for suffix in SIDE_FILES:
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{target}{suffix}")
            os.chmod(f"{target}{suffix}", 0o600)  # logged rows, damaged or not: the owner's only
    return target


def set_aside(path: Path, damage: Damage) -> Path:
    """Move a damaged database aside and say so in the agent's log; return where it went."""
    moved = move_aside(path)
    log.error(
        "inference log damaged (%s): moved aside to %s (%s), a new log started",
        damage.reason,
        moved,
        damage.describe(),
    )
    return moved


def open_checked(path: Path) -> tuple[sqlite3.Connection, list[Path]]:
    """:func:`connect`, after moving a damaged database aside; also returns where it went."""
    moved = []
    damage = check_database(path)
    if damage:
        moved.append(set_aside(path, damage))
    try:
        return connect(path), moved
    except sqlite3.DatabaseError as exc:  # damage that quick_check let through: once more, anew
        if not is_damage(exc):
            raise
        moved.append(set_aside(path, Damage(str(exc))))
        return connect(path), moved


def file_bytes(path: Path) -> int:
    """The size of the database with its -wal and -shm (0 for missing files)."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


def use_incremental_vacuum(conn: sqlite3.Connection, path: Path) -> None:
    """Switch an existing database to ``auto_vacuum=INCREMENTAL`` (a one-time VACUUM), so that
    purges can give disk back. New databases get the mode before their first table."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    size = file_bytes(path)
    free = shutil.disk_usage(path.parent).free
    if free < 2 * size + (64 << 20):  # VACUUM writes a copy (temp file) and a WAL as large
        log.warning(
            "inference log: not switched to incremental vacuum (%d MB free, about %d MB "
            "needed); purges will not shrink the file until then",
            free >> 20,
            2 * size >> 20,
        )
        return
    log.info("inference log: one-time VACUUM (%d MB) so that purges shrink the file", size >> 20)
    try:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as exc:  # busy or out of space: try again at the next start
        log.warning("inference log: VACUUM failed (%s); purges will not shrink the file", exc)


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database in use (pages minus free pages)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * conn.execute("PRAGMA page_size").fetchone()[0]


def _delete_chunks(
    conn: sqlite3.Connection,
    lock: threading.Lock,
    where: str,
    args: tuple,
    limit: int | None = None,
) -> int:
    """Delete the oldest rows matching ``where`` (at most ``limit``), a chunk per transaction."""
    done = 0
    while limit is None or done < limit:
        chunk = PURGE_CHUNK if limit is None else min(PURGE_CHUNK, limit - done)
        with lock:
            n = conn.execute(
                f"DELETE FROM inference WHERE id IN (SELECT id FROM inference WHERE {where} "
                "ORDER BY id LIMIT ?)",
                (*args, chunk),
            ).rowcount
        done += n
        if n < chunk:
            break
    return done


def purge(
    conn: sqlite3.Connection, lock: threading.Lock, *, cutoff: float, max_rows: int, max_bytes: int
) -> int:
    """Delete rows older than ``cutoff``, then the oldest beyond ``max_rows`` and ``max_bytes``
    (down to 90% of it); give freed pages back to the disk; return how many rows went."""
    n = _delete_chunks(conn, lock, "ts < ?", (cutoff,))
    with lock:
        count = conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
    if count > max_rows:
        n += _delete_chunks(conn, lock, "1", (), count - max_rows)
    for _ in range(20):  # rows do not free their bytes exactly: measure again after each round
        with lock:
            used = used_bytes(conn)
            count = conn.execute("SELECT COUNT(*) FROM inference").fetchone()[0]
        if used <= max_bytes or not count:
            break
        excess = int((used - max_bytes * BYTES_TARGET) / (used / count)) + 1
        n += _delete_chunks(conn, lock, "1", (), max(excess, count // 100, 1))
    if n:
        with lock:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = pages * conn.execute("PRAGMA page_size").fetchone()[0]
            # a few free pages are reused by the next inserts (moving them out costs writes);
            # many, or a file over the cap, are given back
            if free and (free * 10 >= pages or size > max_bytes * BYTES_TARGET):
                # executescript: execute() would step the pragma once (it frees one page per step)
                conn.executescript("PRAGMA incremental_vacuum")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return n
