"""The inference log's rows as SQLite records: made cheaply by the writer thread, read back.

The writer shares the GIL, and often a core, with the event loop. So that a request never waits
long for it, what it does per row stays in C (json's C encoder over each row, no Python code per
row unless fields are minimised; the probabilities rounded and encoded the same way), rows are
encoded only as ``executemany`` takes them (SQLite releases the GIL while it writes each), and
after every :data:`CHUNK_ROWS` rows the writer sleeps a little (:func:`pause`): released alone,
the GIL is taken back before a thread waiting for it on the same core gets to run. The writer
and the purger also run below the requests' CPU priority (:func:`background_priority`).

    for items, rows in transactions(batch):
        for chunk in chunks(items, rows, minimise):
            conn.executemany(INSERT, chunk)
            pause()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, chain, islice, repeat
from json import encoder as json_encoder
from operator import itemgetter
from typing import Any

BATCH_ROWS = 5000  # rows per write transaction
CHUNK_ROWS = 8  # rows between two pauses of the writer (~0.2-0.3 ms of its work on a busy core)
PAUSE_SECONDS = 0.0001  # after each chunk (with the timer's slack, ~0.15 ms)
PAUSE_UNTIL_ROWS = 1000  # a batch this large (20,000 rows/s and more): no pauses, keep up
BACKGROUND_NICE = 10  # the log's threads run this much below the requests' CPU priority
INSERT = (
    "INSERT INTO inference (ts, request_id, row_index, model_version, features, label, "
    "probabilities, latency_ms) VALUES (?,?,?,?,?,?,?,?)"
)
READ_KEYS = (
    "id",
    "ts",
    "request_id",
    "row",
    "model_version",
    "features",
    "label",
    "probabilities",
    "latency_ms",
    "feedback",
    "feedback_ts",
)
ROW_BYTES, VALUE_BYTES = 100, 56  # CPython: a parsed row dict, and each number/str in it

# one encoder, built once: json.dumps(obj, separators=...) builds a new one per call
compact_json = json.JSONEncoder(separators=(",", ":")).encode
# its C core, called per value with no Python in between: the text of compact_json (the same
# settings) without the check for circular references, which values parsed from JSON never have
_c_encoder = (
    json_encoder.c_make_encoder(
        None,
        compact_json.__self__.default,
        json_encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    if json_encoder.c_make_encoder is not None
    else None
)


def json_texts(values: Iterable[Any]) -> Iterator[str]:
    """``compact_json`` of each value, lazily (the loop in C where json has its C encoder)."""
    if _c_encoder is None:  # pragma: no cover - CPython has it
        return map(compact_json, values)
    return map("".join, map(_c_encoder, values, repeat(0)))


def estimate_bytes(rows: Sequence[dict[str, Any]], probabilities: Sequence[Sequence[float]]) -> int:
    """Memory a queued request holds, near CPython's: per row and value, plus string lengths."""
    values = len(rows[0]) + len(probabilities[0]) if rows else 0
    text = sum(map(len, filter(str.__instancecheck__, chain.from_iterable(map(dict.values, rows)))))
    return len(rows) * (ROW_BYTES + VALUE_BYTES * values) + text


def minimise(
    features: dict[str, Any], drop: set[str], hashed: set[str], salt: str
) -> dict[str, Any]:
    """``features`` without the ``drop`` fields, the ``hashed`` ones as a salted sha256."""
    out = {}
    for k, v in features.items():
        if k in drop:
            continue
        if k in hashed and v is not None:
            v = "sha256:" + hashlib.sha256(f"{salt}{v}".encode()).hexdigest()[:16]
        out[k] = v
    return out


def records(item: tuple, minimiser: Callable[[dict], dict] | None) -> Iterator[tuple]:
    """One queued request's records, in :data:`INSERT`'s order, encoded as they are taken.

    ``item`` is ``(ts, request_id, version, rows, labels, probabilities, latency_ms, nbytes)``;
    features are the (minimised) row as compact JSON, probabilities rounded to 7 digits."""
    ts, request_id, version, rows, labels, probas, latency_ms, _ = item
    n = len(rows)
    if n == 1 and _c_encoder is not None:  # most requests: no iterator machinery per request
        row = minimiser(rows[0]) if minimiser else rows[0]
        rounded = [round(p, 7) for p in probas[0]]
        return iter(
            (
                (
                    ts,
                    request_id,
                    0,
                    version,
                    "".join(_c_encoder(row, 0)),
                    str(labels[0]),
                    "".join(_c_encoder(rounded, 0)),
                    latency_ms,
                ),
            )
        )
    features = json_texts(map(minimiser, rows) if minimiser else rows)
    k = len(probas[0]) if n else 0
    rounded = map(round, chain.from_iterable(probas), repeat(7))
    probabilities = json_texts(zip(*[rounded] * k, strict=True)) if k else repeat("[]", n)
    return zip(
        repeat(ts, n),
        repeat(request_id),
        range(n),
        repeat(version),
        features,
        map(str, labels),
        probabilities,
        repeat(latency_ms),
    )


def transactions(batch: list[tuple]) -> Iterator[tuple[list[tuple], int]]:
    """``(items, rows)``: the batch in runs of :data:`BATCH_ROWS` rows (at least one request
    each), found without a Python loop over the requests."""
    ends = list(accumulate(map(len, map(itemgetter(3), batch))))  # rows so far, per request
    start = 0
    while start < len(batch):
        done = ends[start - 1] if start else 0
        stop = max(start + 1, bisect_right(ends, done + BATCH_ROWS, start))
        yield batch[start:stop], ends[stop - 1] - done
        start = stop


def chunks(
    items: Iterable[tuple], rows: int, minimiser: Callable[[dict], dict] | None
) -> Iterator[Iterator[tuple]]:
    """The records of ``items`` (``rows`` in all), :data:`CHUNK_ROWS` at a time, each chunk
    lazy: ``executemany(INSERT, chunk)`` encodes a row, then SQLite writes it without the GIL."""
    all_records = chain.from_iterable(records(item, minimiser) for item in items)
    for _ in range(0, rows, CHUNK_ROWS):
        yield islice(all_records, CHUNK_ROWS)


def pause() -> None:
    """Sleep :data:`PAUSE_SECONDS`: the GIL and the core go to the event loop if it wants them."""
    time.sleep(PAUSE_SECONDS)


def decode(rows: list[tuple]) -> list[dict[str, Any]]:
    """Rows read back (columns :data:`READ_KEYS`), their JSON decoded; ValueError if it is not."""
    items = [dict(zip(READ_KEYS, r, strict=True)) for r in rows]
    for item in items:
        item["features"] = json.loads(item["features"])
        item["probabilities"] = json.loads(item["probabilities"])
    return items


def background_priority() -> None:
    """Lower the calling thread's CPU priority by :data:`BACKGROUND_NICE` (Linux, where nice is
    per thread; elsewhere, or where it is not allowed, nothing): on a core it shares with the
    event loop, a request that arrives while the log writes gets the core first."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + BACKGROUND_NICE))
