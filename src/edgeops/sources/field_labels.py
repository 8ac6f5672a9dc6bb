"""Which devices' labels a training run trusts: a cap per device and a quarantine.

Labels come from the field, and a device (or whoever holds its feedback token) can lie. Two
guards decide which labelled production rows join the training data (``ingest.production``):

- **quarantine**: a device's labelled rows are judged in chunks of ``quarantine.rows`` (its
  prediction order). When a chunk's labels agree with the model's own predictions far less than
  the model expects (the mean probability of the class it predicted, its own confidence) *and*
  far less than the other devices' labels agree with theirs (each by more than
  ``quarantine.gap``), the device is quarantined: its rows not released yet stay stored in
  ``data/production``, are named in ``reports/ingest.json`` and the run's summary, and join only
  when a person releases them (``edgeops labels release``, kept in ``ingest.production.released``
  and the audit log); what it labels after a release is judged again. A device alone (no other
  device with labels) is judged against the model's expectation only.
- **cap**: one device's rows are at most ``max_target_share`` of the source's rows (the newest
  kept), so no single device can outweigh the plant, whatever it sends.

These guards keep a lying device out of what the challenger learns and out of the held-out
production rows the gate judges. The gate's baseline and floors, and its comparison with the
champion on the source's holdout, which no field label enters (``stages/split.py``), hold
without any field label: what passes these guards can make the gate stricter, never promote a
model the source's holdout refuses (``deploy/gate.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.params import number

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Release:
    """A person's release of a device's quarantined rows: those of ``log`` up to id ``through``."""

    target: str
    log: str
    through: int


@dataclass(frozen=True)
class LabelTrust:
    """The ``ingest.production`` guards, checked once."""

    max_target_share: float = 0.1
    gap: float = 0.2
    rows: int = 500
    min_rows: int = 100
    released: tuple[Release, ...] = field(default_factory=tuple)

    @classmethod
    def from_params(cls, cfg: dict[str, Any]) -> LabelTrust:
        where = "ingest.production"
        q = cfg.get("quarantine")
        q = {} if q is None else q
        if not isinstance(q, dict):
            raise EdgeopsError(f"{where}.quarantine must be a mapping (gap, rows, min_rows)")

        released = []
        for i, r in enumerate(cfg.get("released") or []):
            if not (
                isinstance(r, dict)
                and isinstance(r.get("target"), str)
                and isinstance(r.get("log"), str)
                and isinstance(r.get("through"), int)
            ):
                raise EdgeopsError(
                    f"{where}.released[{i}] must be {{target: NAME, log: ID, through: ROW_ID}}",
                    fix="release rows with `edgeops labels release TARGET --reason TEXT`",
                )
            released.append(Release(r["target"], r["log"], r["through"]))
        return cls(
            max_target_share=number(cfg, "max_target_share", 0.1, where, 0.0, 1.0),
            gap=number(q, "gap", 0.2, f"{where}.quarantine", 0.0, 1.0),
            rows=int(number(q, "rows", 500, f"{where}.quarantine", 1)),
            min_rows=int(number(q, "min_rows", 100, f"{where}.quarantine", 1)),
            released=tuple(released),
        )

    def released_through(self, target: str, log: str) -> int:
        return max(
            (r.through for r in self.released if (r.target, r.log) == (target, log)), default=0
        )


@dataclass
class Chunk:
    """One judged chunk of a device's labelled rows."""

    target: str
    log: str
    first: int
    last: int
    rows: int
    agreement: float
    expected: float
    others: float | None
    quarantined: bool

    def why(self) -> str:
        others = "" if self.others is None else f", the other devices' {self.others:.0%}"
        return (
            f"{self.rows:,} labels (ids {self.first}..{self.last} of log {self.log[:8]}) "
            f"agree {self.agreement:.0%} with the model's predictions; the model expects "
            f"{self.expected:.0%}{others}"
        )


def judge(stored: pd.DataFrame, trust: LabelTrust, source_rows: int) -> tuple[Any, dict[str, Any]]:
    """Which of ``stored`` (labelled rows: ``_target, _log, _id, _ts, _label, _feedback,
    _probabilities``) join the training data: ``(keep mask, report per target)``.

    A device with one bad chunk among its rows not yet released is quarantined whole (those
    rows): a lying device's rows stay out, even those next to the chunk's edges; the report
    names the chunks that disagreed, so a person can release what came before them."""
    import numpy as np

    n = len(stored)
    if n == 0:
        return np.zeros(0, dtype=bool), {}
    agree = (stored["_feedback"].astype(str) == stored["_label"].astype(str)).to_numpy()
    expected = np.asarray([_confidence(p) for p in stored["_probabilities"]], dtype=float)
    # no usable confidence: count the model as sure of itself (a device cannot hide behind it)
    expected[~np.isfinite(expected)] = 1.0
    targets = stored["_target"].astype(str).to_numpy()
    logs = stored["_log"].astype(str).to_numpy()
    ids = stored["_id"].to_numpy()
    keep = np.ones(n, dtype=bool)
    report: dict[str, Any] = {}
    for target in sorted(set(targets)):
        mine = targets == target
        theirs = ~mine
        others = float(agree[theirs].mean()) if theirs.sum() >= trust.min_rows else None
        chunks = _chunks(target, logs, ids, np.flatnonzero(mine), agree, expected, others, trust)
        bad = [c for c in chunks if c.quarantined]
        held: list[dict[str, Any]] = []
        if bad:  # the device is quarantined: every row of it not released yet
            for log in sorted({c.log for c in chunks}):
                rows = mine & (logs == log) & (ids > trust.released_through(target, log))
                if rows.any():
                    keep[rows] = False
                    held.append(
                        {
                            "log": log,
                            "first": int(ids[rows].min()),
                            "last": int(ids[rows].max()),
                            "rows": int(rows.sum()),
                        }
                    )
        cap = int(trust.max_target_share * source_rows)
        kept = np.flatnonzero(mine & keep)
        capped = 0
        if len(kept) > cap:  # the newest rows of the device, by the time of the prediction
            order = np.lexsort((ids[kept], stored["_ts"].to_numpy()[kept]))
            dropped = kept[order[: len(kept) - cap]]
            keep[dropped] = False
            capped = len(dropped)
        report[target] = {
            "labelled": int(mine.sum()),
            "joined": int((mine & keep).sum()),
            "capped": capped,
            "cap": cap,
            "agreement": round(float(agree[mine].mean()), 4),
            "others_agreement": None if others is None else round(others, 4),
            "quarantined": held,
            "disagreeing": [_shown(c) for c in bad],
        }
    return keep, report


def _shown(c: Chunk) -> dict[str, Any]:
    return {
        "log": c.log,
        "first": c.first,
        "last": c.last,
        "rows": c.rows,
        "agreement": round(c.agreement, 4),
        "expected": round(c.expected, 4),
        "others": None if c.others is None else round(c.others, 4),
        "why": c.why(),
    }


def _chunks(
    target: str,
    logs: Any,
    ids: Any,
    positions: Any,
    agree: Any,
    expected: Any,
    others: float | None,
    trust: LabelTrust,
) -> list[Chunk]:
    """A device's labelled rows not yet released in chunks of ``trust.rows`` (per log, id
    order), each judged; a last chunk below ``min_rows`` joins the one before it."""
    import numpy as np

    out = []
    for log in sorted(set(logs[positions])):
        rows = positions[logs[positions] == log]
        rows = rows[ids[rows] > trust.released_through(target, log)]
        rows = rows[np.argsort(ids[rows], kind="stable")]
        bounds = list(range(0, len(rows), trust.rows)) + [len(rows)]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < trust.min_rows:
            bounds.pop(-2)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            part = rows[lo:hi]
            a, e = float(agree[part].mean()), float(expected[part].mean())
            bad = len(part) >= trust.min_rows and a < e - trust.gap
            bad = bad and (others is None or a < others - trust.gap)
            out.append(
                Chunk(
                    target,
                    log,
                    int(ids[part].min()),
                    int(ids[part].max()),
                    len(part),
                    a,
                    e,
                    others,
                    bad,
                )
            )
    return out


def _confidence(probabilities: Any) -> float:
    """The probability of the class the model predicted (its own expectation of being right)."""
    values = json.loads(probabilities) if isinstance(probabilities, str) else probabilities
    if isinstance(values, dict):
        values = list(values.values())
    try:
        return float(max(values))
    except (TypeError, ValueError):
        return float("nan")
