"""The production store: what the agents logged, collected by cursor, exactly once.

    data/production/<target>/<log id>/rows-<first id>-<last id>.parquet
    data/production/<target>/<log id>/feedback-<first seq>-<last seq>.parquet

Each page read from an agent (``GET /v1/logs``, ``GET /v1/logs/feedback``) becomes one Parquet
part, written to a temporary file and renamed. The cursor is not kept anywhere else: it *is* the
highest id among the stored parts. So a collector killed at any point either stored a page whole
(and the next run starts after it) or not at all (and the next run reads it again); no row is
stored twice and none is lost. Feedback is its own stream with its own cursor (the agent numbers
each feedback event), so a label that arrives after its row was collected is picked up too.

A log id is the agent's inference database's identity: an agent whose database was deleted or
replaced answers with a new one, and the collector stops with a message instead of mixing two
logs under one cursor.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.deploy.targets import misbehaving
from edgeops.monitor.pages import (
    MAX_PAGE_BYTES,
    TOO_LARGE,
    check_head,
    check_items,
    check_predictions,
    feature_columns,
)

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.deploy.targets import AgentClient
    from edgeops.schema import Schema

PART = re.compile(r"^(rows|feedback)-(\d{12})-(\d{12})\.parquet$")
META = ("_id", "_ts", "_request_id", "_row", "_model_version", "_label", "_probabilities")
PAGE = 5000


@dataclass(frozen=True)
class Part:
    path: Path
    kind: str
    first: int
    last: int


def parts(series: Path, kind: str) -> list[Part]:
    """The stored parts of one log, oldest first (temporary files of a killed run are ignored)."""
    out = []
    if series.is_dir():
        for p in series.iterdir():
            m = PART.match(p.name)
            if m and m.group(1) == kind:
                out.append(Part(p, kind, int(m.group(2)), int(m.group(3))))
    return sorted(out, key=lambda x: x.first)


def cursor(series: Path, kind: str) -> int:
    """The highest id (rows) or sequence number (feedback) stored: where collecting resumes."""
    ps = parts(series, kind)
    return ps[-1].last if ps else 0


def _clean_stale(series: Path) -> None:
    for p in series.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def rows_frame(
    items: list[dict[str, Any]], schema: Schema | None = None, target: str = "?"
) -> pd.DataFrame:
    """One page of ``/v1/logs`` items as a frame: the features as columns (checked against
    ``schema``: :func:`edgeops.monitor.pages.feature_columns`), the rest as ``_meta``."""
    import pandas as pd

    check_predictions(target, items, schema)
    feats = pd.DataFrame(feature_columns(target, items, schema), index=range(len(items)))
    meta = pd.DataFrame(
        {
            "_id": [it["id"] for it in items],
            "_ts": [float(it["ts"]) for it in items],
            "_request_id": [it["request_id"] for it in items],
            "_row": [int(it["row"]) for it in items],
            "_model_version": [it["model_version"] for it in items],
            "_label": [str(it["label"]) for it in items],
            "_probabilities": [json.dumps(it["probabilities"]) for it in items],
        }
    )
    return pd.concat([meta, feats], axis=1)


def feedback_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "_id": [it["id"] for it in items],
            "_request_id": [it["request_id"] for it in items],
            "_row": [int(it["row"]) for it in items],
            "_feedback": [str(it["feedback"]) for it in items],
            "_feedback_ts": [float(it["feedback_ts"] or 0.0) for it in items],
            "_seq": [int(it["seq"]) for it in items],
        }
    )


def write_part(series: Path, kind: str, first: int, last: int, frame: pd.DataFrame) -> Path:
    """Store one page durably (temporary file, fsync, rename); return its path."""
    path = series / f"{kind}-{first:012d}-{last:012d}.parquet"
    with atomic.atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)  # the devices' rows: the owner's only, whatever the umask
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
    return path


@dataclass
class Collected:
    target: str
    log_id: str
    rows: int = 0
    feedback: int = 0
    cursor: int = 0
    feedback_cursor: int = 0
    agent_last: int = 0


class ProductionStore:
    """The collected logs of every target under one root (``monitor.store``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def target_dir(self, target: str) -> Path:
        return self.root / target

    def series(self, target: str) -> list[Path]:
        """Every log collected from ``target`` (more than one if its agent was reset)."""
        d = self.target_dir(target)
        return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def _series_for(self, target: str, log_id: str, accept_reset: bool) -> Path:
        if not re.fullmatch(r"[0-9a-f]{8,64}", log_id or ""):
            raise misbehaving(
                target,
                f"the agent sent no valid log id ({log_id!r})",
                fix="update the agent on that device to this edgeops version",
            )
        series = self.target_dir(target) / log_id
        known = [p.name for p in self.series(target)]
        if known and log_id not in known and not accept_reset:
            raise misbehaving(
                target,
                f"the agent's inference log changed (stored: {', '.join(known)}; "
                f"the agent now has {log_id}): its database was reset or replaced, so the stored "
                "cursor does not apply to it; nothing was collected",
                fix=f"if the reset was intended, run `edgeops monitor --target {target} "
                "--accept-reset` to collect the new log beside the old one (nothing is deleted)",
            )
        atomic.private_dir(self.target_dir(target))
        atomic.private_dir(series)
        _clean_stale(series)
        return series

    @property
    def lock_path(self) -> Path:
        """Beside the store, not in it: the store is a DVC dependency, its lock is not."""
        return self.root.with_name(self.root.name + ".collect.lock")

    def collect(
        self,
        client: AgentClient,
        accept_reset: bool = False,
        page: int = PAGE,
        progress: Callable[[str], None] | None = None,
        schema: Schema | None = None,
        max_page_bytes: int = MAX_PAGE_BYTES,
        wait_seconds: float = 600.0,
    ) -> Collected:
        """Collect new rows and new feedback from one agent; each page stored before the next.

        Two collectors of one store wait for each other (a lock beside it), so no page is stored
        twice. Every page is checked before it is stored (:mod:`edgeops.monitor.pages`): one
        whose cursor does not advance, that is over ``max_page_bytes`` (the page is asked again
        with an eighth of the rows, down to one), or whose values do not fit ``schema`` ends the
        collection with an :class:`~edgeops.deploy.targets.AgentError` naming the agent
        (``kind`` misbehaving); the pages stored before it stay."""
        from edgeops.locks import hold

        with hold(self.lock_path, wait_seconds, progress, what="collection of this store"):
            return self._collect(client, accept_reset, page, progress, schema, max_page_bytes)

    def _collect(
        self,
        client: AgentClient,
        accept_reset: bool,
        page: int,
        progress: Callable[[str], None] | None,
        schema: Schema | None,
        max_page_bytes: int,
    ) -> Collected:
        name = client.target.name
        first = check_head(name, client.logs(after=0, limit=1, max_bytes=max_page_bytes))
        log_id = first["log_id"]
        series = self._series_for(name, log_id, accept_reset)
        out = Collected(name, log_id, agent_last=first["last"])
        for kind in ("rows", "feedback"):
            n, cur = 0, cursor(series, kind)
            for items in self._pages(client, kind, cur, page, log_id, max_page_bytes):
                lo, hi = (
                    (items[0]["id"], items[-1]["id"])
                    if kind == "rows"
                    else (items[0]["seq"], items[-1]["seq"])
                )
                frame = rows_frame(items, schema, name) if kind == "rows" else feedback_frame(items)
                write_part(series, kind, lo, hi, frame)
                n, cur = n + len(items), hi
                if progress:
                    progress(f"{name}: {n:,} new {'rows' if kind == 'rows' else 'feedback labels'}")
            if kind == "rows":
                out.rows, out.cursor = n, cur
            else:
                out.feedback, out.feedback_cursor = n, cur
        return out

    def _pages(
        self,
        client: AgentClient,
        kind: str,
        after: int,
        page: int,
        log_id: str,
        max_page_bytes: int,
    ) -> Iterator[list[dict[str, Any]]]:
        """The checked pages after ``after``, each one before the next is asked for."""
        from edgeops.deploy.targets import AgentError

        fetch = client.logs if kind == "rows" else client.feedback_log
        limit = page
        while True:
            try:
                resp = fetch(after=after, limit=limit, max_bytes=max_page_bytes)
            except AgentError as exc:
                if exc.code == TOO_LARGE and limit > 1:  # wide rows: ask for far fewer ...
                    limit = max(1, limit // 8)
                    continue
                raise
            resp = check_head(client.target.name, resp)
            if resp["log_id"] != log_id:
                raise misbehaving(
                    client.target.name,
                    "the agent's log changed while collecting",
                    fix="run `edgeops monitor` again",
                )
            last = resp["last"]
            if after > last:
                what = "id" if kind == "rows" else "feedback sequence number"
                raise misbehaving(
                    client.target.name,
                    f"the stored cursor ({what} {after}) is ahead of "
                    f"the agent's log (its last {what} is {last}): the agent's database was "
                    "restored from an older copy; nothing was collected",
                    fix=f"move {self.target_dir(client.target.name) / log_id} aside (it is kept "
                    "as it is) and run again to collect the agent's log from the start",
                )
            items = check_items(client.target.name, kind, resp["items"], after, limit, last)
            if not items:
                return
            yield items
            after = items[-1]["id"] if kind == "rows" else items[-1]["seq"]
            limit = min(page, 2 * limit)  # ... and more again while they fit

    # ---- reading ---------------------------------------------------------------------------
    def read_rows(
        self, target: str, since: float | None = None, newest: int | None = None
    ) -> pd.DataFrame:
        """Stored rows of ``target`` (every log), with the latest feedback joined as ``_feedback``.

        ``since``: only parts written at or after this time (then filtered by ``_ts``);
        ``newest``: read parts from the newest back until at least this many rows.
        """
        import pandas as pd

        frames = []
        for series in self.series(target):
            rows = self._read_series(series, since, newest)
            if not rows.empty:
                rows.insert(0, "_log", series.name)
                frames.append(rows)
        if not frames:
            return pd.DataFrame(columns=[*META, "_feedback", "_log"])
        df = pd.concat(frames, ignore_index=True)
        if since is not None:
            df = df[df["_ts"] >= since]
        return df.sort_values(["_ts", "_id"], kind="stable").reset_index(drop=True)

    def _read_series(self, series: Path, since: float | None, newest: int | None) -> pd.DataFrame:
        import pandas as pd

        chosen, total = [], 0
        for p in reversed(parts(series, "rows")):
            if since is not None and p.path.stat().st_mtime < since:
                break
            chosen.append(p)
            total += p.last - p.first + 1
            if newest is not None and total >= newest:
                break
        if not chosen:
            return pd.DataFrame()
        rows = pd.concat([pd.read_parquet(p.path) for p in reversed(chosen)], ignore_index=True)
        fb = self.read_feedback(series)
        if fb.empty:
            rows["_feedback"] = None
            return rows
        return rows.merge(fb[["_id", "_feedback", "_feedback_ts"]], on="_id", how="left")

    @staticmethod
    def read_feedback(series: Path) -> pd.DataFrame:
        """The latest label per row id of one log (a later feedback event replaces an earlier one)."""
        import pandas as pd

        ps = parts(series, "feedback")
        if not ps:
            return pd.DataFrame(columns=["_id", "_feedback", "_feedback_ts", "_seq"])
        fb = pd.concat([pd.read_parquet(p.path) for p in ps], ignore_index=True)
        return fb.sort_values("_seq", kind="stable").drop_duplicates("_id", keep="last")

    def labelled(self) -> pd.DataFrame:
        """Every stored row of every target that has a ground-truth label, one per request row."""
        import pandas as pd

        frames = []
        targets = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for target_dir in targets:
            for series in self.series(target_dir.name):
                fb, row_parts = self.read_feedback(series), parts(series, "rows")
                if fb.empty or not row_parts:
                    continue
                rows = pd.concat([pd.read_parquet(p.path) for p in row_parts], ignore_index=True)
                rows = rows.merge(fb[["_id", "_feedback"]], on="_id", how="inner")
                rows.insert(0, "_target", target_dir.name)
                rows.insert(1, "_log", series.name)
                frames.append(rows)
        if not frames:
            return pd.DataFrame(columns=["_target", "_log", *META, "_feedback"])
        df = pd.concat(frames, ignore_index=True).sort_values(["_ts", "_id"], kind="stable")
        return df.drop_duplicates(["_request_id", "_row"], keep="last").reset_index(drop=True)
