"""Plant traffic to an edge agent: simulated readings sent for prediction, the true label sent
back later as feedback (on a shop floor a failure is known only after the fact).

``build_rows`` turns the built-in simulator's frame into the rows the model expects (its feature
columns, JSON-ready) and the true labels. ``send_traffic`` sends them at a given rate and keeps
the feedback that is not yet due in a heap, sent as time passes, interleaved with the traffic.
Its clock and sleep are injectable, so the timing is testable without waiting.

Only the standard library at import time: pandas is imported by ``build_rows`` when it runs.
"""

from __future__ import annotations

import heapq
import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgeops.deploy.targets import AgentError
from edgeops.errors import EdgeopsError

TRAINING_SEED = 42  # the simulator seed the demo model is trained on (params.yaml)
FATAL_STATUSES = (None, 401, 403)  # unreachable, wrong token: no point in going on
MAX_CONSECUTIVE_ERRORS = 10


class Client(Protocol):
    """What ``send_traffic`` needs of an agent (``edgeops.deploy.targets.AgentClient``)."""

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]: ...

    def feedback(self, request_id: str, label: Any, row: int | None = None) -> dict[str, Any]: ...


def random_seed(avoid: int = TRAINING_SEED) -> int:
    """A fresh seed, never the training seed (traffic should not replay the training data)."""
    rng = random.SystemRandom()
    while (seed := rng.randrange(1, 2**31)) == avoid:
        pass
    return seed


def plain(value: Any) -> Any:
    """A JSON-ready Python value: numpy scalars unwrapped, NaN / None / NA -> None."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    try:
        missing = bool(value != value)  # NaN (and NaT) are not equal to themselves
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        missing = True
    return None if missing else value


SPAN_MINUTES = 7 * 24 * 60  # traffic is sampled from at least a simulated week


def build_rows(
    params: dict[str, Any], scenario: str, rows: int, seed: int
) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """Simulated readings as the model's feature rows, their true labels, and the classes.

    The rows are a random sample, in time order, of at least a simulated week (one reading a
    minute): traffic from a plant's shifts, not its first hours only. A short burst of
    consecutive minutes would cover part of one day's temperature cycle and look like drift.
    """
    from edgeops.schema import schema_from_params
    from edgeops.sources.simulator import simulate

    schema = schema_from_params(params)
    names = [c.name for c in schema.features]
    df = simulate(rows=max(rows, SPAN_MINUTES), seed=seed, scenario=scenario)
    if len(df) > rows:
        df = df.sample(rows, random_state=seed).sort_index()
    missing = [n for n in [*names, schema.target] if n not in df.columns]
    if missing:
        raise EdgeopsError(
            f"the simulator has no column(s) {missing} that the model's schema needs",
            fix="simulated traffic fits the demo plant schema (validate.schema in params.yaml)",
        )
    records = [
        {n: plain(v) for n, v in zip(names, values, strict=True)}
        for values in df[names].itertuples(index=False, name=None)
    ]
    labels = [plain(v) for v in df[schema.target].tolist()]
    classes = [plain(c) for c in schema.classes] or sorted(set(labels), key=str)
    return records, labels, classes


def check_options(
    *,
    rate: float,
    feedback_share: float,
    feedback_delay: float,
    batch: int,
    label_flip: float,
    classes: Sequence[Any],
) -> None:
    """Raise an EdgeopsError naming the first option out of range."""
    problems = [
        (rate < 0, "--rate must be >= 0 (0: as fast as possible)"),
        (not 0 <= feedback_share <= 1, "--feedback-share must be between 0 and 1"),
        (feedback_delay < 0, "--feedback-delay must be >= 0 seconds"),
        (batch < 1, "--batch must be >= 1 row per request"),
        (not 0 <= label_flip <= 1, "--label-flip must be between 0 and 1"),
        (label_flip > 0 and len(classes) < 2, "--label-flip needs at least two classes"),
    ]
    for bad, message in problems:
        if bad:
            raise EdgeopsError(message)


def choose_feedback(n_requests: int, share: float, rng: random.Random) -> set[int]:
    """Which requests get feedback: exactly ``round(share * n_requests)`` of them, at random."""
    k = min(n_requests, round(share * n_requests))
    return set(rng.sample(range(n_requests), k))


def maybe_flip(
    label: Any, classes: Sequence[Any], share: float, rng: random.Random
) -> tuple[Any, bool]:
    """With probability ``share``, another class instead of ``label`` (concept drift)."""
    if share <= 0 or rng.random() >= share:
        return label, False
    others = [c for c in classes if str(c) != str(label)]
    return (rng.choice(others), True) if others else (label, False)


@dataclass(order=True)
class Pending:
    """One feedback post waiting for its time."""

    due: float
    seq: int
    request_id: str = field(compare=False)
    row: int | None = field(compare=False)
    label: Any = field(compare=False)
    flipped: bool = field(compare=False, default=False)


class FeedbackQueue:
    """A heap of pending feedback, earliest due first."""

    def __init__(self) -> None:
        self._heap: list[Pending] = []
        self._seq = itertools.count()
        self.last_due = float("-inf")

    def push(
        self, due: float, request_id: str, row: int | None, label: Any, flipped: bool = False
    ) -> None:
        heapq.heappush(self._heap, Pending(due, next(self._seq), request_id, row, label, flipped))
        self.last_due = max(self.last_due, due)

    def pop_due(self, now: float) -> list[Pending]:
        """Remove and return every item due at ``now`` or before, earliest first."""
        out = []
        while self._heap and self._heap[0].due <= now:
            out.append(heapq.heappop(self._heap))
        return out

    @property
    def next_due(self) -> float | None:
        return self._heap[0].due if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


class TrafficRun:
    """The state of one run: counters, the feedback heap, error handling, waiting."""

    def __init__(
        self,
        client: Client,
        *,
        total: int,
        feedback_delay: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        log: Callable[[str], None],
    ) -> None:
        self.client, self.total, self.delay = client, total, feedback_delay
        self.clock, self.sleep, self.log = clock, sleep, log
        self.counts: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.pending = FeedbackQueue()
        self.last_error: str | None = None
        self._consecutive_errors = 0

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any | None:
        """Call the agent; count an error and go on, or stop on one that will not go away."""
        try:
            result = fn(*args)
        except AgentError as exc:
            self.counts["errors"] += 1
            self._consecutive_errors += 1
            self.last_error = exc.problem
            if exc.status in FATAL_STATUSES or self._consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                raise EdgeopsError(
                    f"{exc.problem}; stopped after {self.counts['requests']} of {self.total} "
                    "request(s)",
                    fix="check the agent and its token: edgeops status --target NAME",
                ) from None
            return None
        self._consecutive_errors = 0
        return result

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        answer = self._call(self.client.predict, rows)
        if answer is not None:
            self.counts["requests"] += 1
            self.counts["rows"] += len(rows)
            self.versions[str(answer.get("model_version"))] += 1
        return answer

    def schedule(self, request_id: str, truth: list[tuple[Any, bool]], per_row: bool) -> None:
        due = self.clock() + self.delay
        for i, (label, flipped) in enumerate(truth):
            self.pending.push(due, request_id, i if per_row else None, label, flipped)

    def send_due(self, now: float | None = None) -> None:
        for item in self.pending.pop_due(self.clock() if now is None else now):
            answer = self._call(self.client.feedback, item.request_id, item.label, item.row)
            if answer is not None:
                self.counts["feedback"] += int(answer.get("updated", 1))
                self.counts["flipped"] += item.flipped

    def wait_until(self, t: float) -> None:
        """Sleep until ``t``, sending feedback as it falls due (all of it due by ``t``)."""
        while True:
            now = self.clock()
            self.send_due(now)  # the same ``now`` for the check below: nothing due by t is left
            if now >= t:
                return
            nxt = self.pending.next_due
            self.sleep(max(0.0, min(t, t if nxt is None else nxt) - self.clock()))

    def drain(self) -> None:
        """Wait for the feedback still pending and send it."""
        if self.pending:
            wait = max(0.0, self.pending.last_due - self.clock())
            self.log(f"waiting {wait:.1f} s for {len(self.pending)} pending feedback label(s)")
            while self.pending:
                self.wait_until(self.pending.last_due)


def send_traffic(
    client: Client,
    rows: Sequence[dict[str, Any]],
    labels: Sequence[Any],
    *,
    rate: float = 0.0,
    feedback_share: float = 0.2,
    feedback_delay: float = 0.0,
    batch: int = 1,
    seed: int = 0,
    label_flip: float = 0.0,
    classes: Sequence[Any] = (),
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Send ``rows`` in requests of ``batch`` rows, ``rate`` requests a second (0: no pause).

    A ``feedback_share`` of the requests (chosen with ``seed``) gets its true labels posted
    ``feedback_delay`` seconds after the prediction: per row (``row=i``) when ``batch`` > 1, per
    request otherwise. ``label_flip`` is the share of those labels replaced by another class.
    ``progress`` is called with the rows done. Returns the counts (see ``format_summary``).
    """
    check_options(
        rate=rate,
        feedback_share=feedback_share,
        feedback_delay=feedback_delay,
        batch=batch,
        label_flip=label_flip,
        classes=classes,
    )
    starts = range(0, len(rows), batch)
    chosen = choose_feedback(len(starts), feedback_share, random.Random(f"feedback:{seed}"))
    flip_rng = random.Random(f"flip:{seed}")
    run = TrafficRun(
        client,
        total=len(starts),
        feedback_delay=feedback_delay,
        clock=clock,
        sleep=sleep,
        log=log or (lambda m: None),
    )
    t0 = clock()
    for i, start in enumerate(starts):
        if rate > 0:
            run.wait_until(t0 + i / rate)
        run.send_due()
        answer = run.predict(list(rows[start : start + batch]))
        if answer is not None and i in chosen:
            truth = [
                maybe_flip(y, classes, label_flip, flip_rng) for y in labels[start : start + batch]
            ]
            run.schedule(str(answer["request_id"]), truth, per_row=batch > 1)
        if progress is not None:
            progress(min(start + batch, len(rows)))
    run.drain()
    return {
        **{k: run.counts[k] for k in ("requests", "rows", "feedback", "flipped", "errors")},
        "elapsed_s": round(clock() - t0, 3),
        "model_versions": dict(run.versions),
        "last_error": run.last_error,
    }


def format_summary(summary: dict[str, Any], target: str) -> str:
    """One line: requests, rows, feedback, errors, elapsed, model version(s) that answered."""
    versions = ", ".join(f"{v} ({n})" for v, n in summary["model_versions"].items()) or "none"
    flipped = f", {summary['flipped']} flipped" if summary.get("flipped") else ""
    errors = f"{summary['errors']} error(s)"
    if summary.get("last_error"):
        errors += f" (last: {summary['last_error']})"
    batches = ""
    if "feedback_requests" in summary:
        batches = f" in {summary['feedback_requests']} request(s)"
    return (
        f"{target}: {summary['requests']} request(s), {summary['rows']} row(s), "
        f"feedback on {summary['feedback']} row(s){batches}{flipped}, {errors}, "
        f"{summary['elapsed_s']:.1f} s, model version(s) {versions}"
    )


@contextmanager
def progress_bar(
    total: int, label: str
) -> Iterator[tuple[Callable[[int], None], Callable[[str], None]]]:
    """``(progress(done), log(message))`` drawing a bar on stderr (rich; plain lines without it)."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:  # typer-slim: no rich
        yield (lambda done: None), (lambda m: print(m, file=sys.stderr, flush=True))
        return
    console = Console(stderr=True, highlight=False)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total)
        yield (
            (lambda done: bar.update(task, completed=done)),
            (lambda m: console.print(m, markup=False)),
        )


# ---- a company's own rows as traffic (`edgeops simulate --from`) -----------------------------
#: feedback items per /v1/feedback request (the agent's max_feedback_items is 1000 by default;
#: an agent with a lower limit answers 413 and the batch is halved until it fits)
FEEDBACK_BATCH = 500
REPLAY_SUFFIXES = (".csv", ".parquet", ".pq")


class BatchClient(Client, Protocol):
    """What ``replay_traffic`` needs of an agent: predictions and labels in batches."""

    def feedback_batch(self, items: list[dict[str, Any]]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Replay:
    """Rows read from a company's own data, as the model's feature rows, and their labels.

    ``labels`` is None when the file has no label column (no feedback can be sent); a missing
    label (empty cell) is None and gets no feedback. ``source`` says what was read, ``dialect``
    how a CSV file is written (None for Parquet and SQL)."""

    records: list[dict[str, Any]]
    labels: list[Any] | None
    label_column: str | None
    source: str
    dialect: str | None = None


def load_replay(
    params: dict[str, Any], source: str, label_column: str | None, rows: int | None = None
) -> Replay:
    """Read ``source`` (a CSV/Parquet file or folder, or ``sql``: the project's ``ingest.sql``)
    and keep the columns the model needs (``validate.schema``'s features), in that order.

    Errors (nothing is sent): a missing file, a file type that is not CSV/Parquet, a label
    column (given, or the schema's target when feedback is wanted) the data lacks, feature
    columns the data lacks. ``rows``: only the first this many.
    """
    from pathlib import Path

    from edgeops.schema import schema_from_params

    schema = schema_from_params(params)
    dialect = None
    if source == "sql":
        from edgeops.sources.sql import read_sql

        cfg = (params.get("ingest") or {}).get("sql") or {}
        df = read_sql(url=cfg.get("url"), query=cfg.get("query"), table=cfg.get("table"))
        where = "the SQL source (ingest.sql in params.yaml)"
    else:
        from edgeops.sources.csv import describe_dialect, read_with_dialect

        path = Path(source)
        if not path.exists():
            raise EdgeopsError(
                f"--from {source}: no such file or folder",
                fix="give a .csv or .parquet file (or a folder of them), or --from sql",
            )
        if path.is_file() and path.suffix.lower() not in REPLAY_SUFFIXES:
            raise EdgeopsError(
                f"--from {source}: not a CSV or Parquet file",
                fix="give a .csv or .parquet file (or a folder of them), or --from sql",
            )
        df, found = read_with_dialect(path)
        dialect = describe_dialect(found)
        where = str(path)
    if rows is not None:
        df = df.head(rows)
    names = [c.name for c in schema.features]
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise EdgeopsError(
            f"{where} has no column(s) {missing}, which the model needs "
            f"(it has {[str(c) for c in df.columns][:20]})",
            fix="replay rows with the columns of validate.schema in params.yaml (the model's "
            "features), or rename the columns in the file",
        )
    label = label_column or schema.target
    if label not in df.columns:
        if label_column is not None:
            raise EdgeopsError(
                f"--label-column {label_column}: {where} has no such column",
                fix=f"name one of its columns: {[str(c) for c in df.columns][:20]}",
            )
        label = None
    records = [
        {n: plain(v) for n, v in zip(names, values, strict=True)}
        for values in df[names].itertuples(index=False, name=None)
    ]
    labels = None if label is None else [_label(v) for v in df[label].tolist()]
    return Replay(records, labels, label, where, dialect)


def target_name(params: dict[str, Any]) -> str:
    """The schema's target column (``validate.schema.target``): the default label column."""
    from edgeops.schema import schema_from_params

    return schema_from_params(params).target


def _label(value: Any) -> Any:
    """A label as JSON: a whole float (a class column with empty cells reads as float) is an int."""
    value = plain(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def choose_rows(labels: Sequence[Any], share: float, rng: random.Random) -> set[int]:
    """Which rows get feedback: ``round(share * n)`` of the ``n`` rows that have a label."""
    known = [i for i, y in enumerate(labels) if y is not None]
    return set(rng.sample(known, min(len(known), round(share * len(known)))))


def replay_traffic(
    client: BatchClient,
    rows: Sequence[dict[str, Any]],
    labels: Sequence[Any] | None,
    *,
    rate: float = 0.0,
    batch: int = 50,
    feedback_share: float = 0.0,
    feedback_batch: int = FEEDBACK_BATCH,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Send ``rows`` in requests of ``batch`` rows at ``rate`` rows a second (0: no pause), and
    the labels of a ``feedback_share`` of the labelled rows (chosen with ``seed``) as feedback,
    ``feedback_batch`` labels per request, each sent once that many are known (the rest at the
    end). Returns the counts (see ``format_summary``: ``feedback_requests`` included)."""
    check_options(
        rate=rate,
        feedback_share=feedback_share,
        feedback_delay=0.0,
        batch=batch,
        label_flip=0.0,
        classes=(),
    )
    if feedback_share > 0 and labels is None:
        raise EdgeopsError(
            "no label column to send as feedback",
            fix="name it with --label-column, or pass --feedback-share 0",
        )
    chosen = (
        choose_rows(labels, feedback_share, random.Random(f"feedback:{seed}"))
        if labels is not None and feedback_share > 0
        else set()
    )
    starts = range(0, len(rows), batch)
    run = TrafficRun(
        client,
        total=len(starts),
        feedback_delay=0.0,
        clock=clock,
        sleep=sleep,
        log=log or (lambda m: None),
    )
    queue: list[dict[str, Any]] = []
    size = [max(1, feedback_batch)]
    sent_requests = [0]

    def send_feedback(items: list[dict[str, Any]]) -> None:
        while items:
            part, items = items[: size[0]], items[size[0] :]
            try:
                answer = client.feedback_batch(part)
            except AgentError as exc:
                if exc.status == 413 and size[0] > 1:  # the agent takes fewer: halve, again
                    size[0] = max(1, size[0] // 2)
                    items = part + items
                    continue
                run._call(_raise, exc)  # counted; fatal ones stop the run
                continue
            run._consecutive_errors = 0
            sent_requests[0] += 1
            run.counts["feedback"] += int(answer.get("updated", len(part)))

    t0 = clock()
    for start in starts:
        if rate > 0:
            wait = t0 + start / rate - clock()
            if wait > 0:
                sleep(wait)
        part = list(rows[start : start + batch])
        answer = run.predict(part)
        if answer is not None and labels is not None:
            rid = str(answer["request_id"])
            queue += [
                {"request_id": rid, "row": k, "label": labels[start + k]}
                for k in range(len(part))
                if start + k in chosen
            ]
            if len(queue) >= size[0]:
                send_feedback(queue)
                queue = []
        if progress is not None:
            progress(min(start + batch, len(rows)))
    send_feedback(queue)
    return {
        **{k: run.counts[k] for k in ("requests", "rows", "feedback", "flipped", "errors")},
        "feedback_requests": sent_requests[0],
        "elapsed_s": round(clock() - t0, 3),
        "model_versions": dict(run.versions),
        "last_error": run.last_error,
    }


def _raise(exc: BaseException) -> None:
    raise exc
