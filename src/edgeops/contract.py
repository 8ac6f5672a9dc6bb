"""Contract evolution: when the source plus the devices' rows break ``validate.schema``, propose
the change for a person to review, and flag what looks like a fault instead of a new regime.

A contract that rejects rows is right to do so until a person says the world changed (a summer
after a winter, a new product, a recalibrated sensor). This module writes that person's
proposal: per column, the old and new range (or categories), how many rows each change admits
(source and production apart), and whether those rows look like a new regime or like a fault:

- **far outside**: more than one old range width beyond the old range (a reading no regime
  change explains: a unit error, a sentinel such as -999, a sensor out of its physics);
- **impossible sign**: negative readings in a column whose contract never allowed any (a count,
  a speed, a temperature in kelvin, rainfall);
- **stuck**: one value outside the range repeated on consecutive rows, longer than twice the
  longest run of one value in the source's rows (and at least 5): a sensor stuck at one
  reading, not a regime (which moves from row to row);
- **missing readings**: the null share is over the contract's ``max_null_share``.

Fault rows are never admitted: the proposed range covers only the regime's rows, so the fault
rows stay rejected and ``validate`` keeps stopping them. Nothing is written here; the
``training`` flow shows the proposal and waits for a person's answer, and
``edgeops schema infer --with-production`` proposes the same by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.infer import _round  # the bounds are rounded as `schema infer` rounds them
from edgeops.schema import CATEGORICAL, NUMERIC, Schema

if TYPE_CHECKING:
    import pandas as pd

#: beyond the old range by more than this many old range widths: a fault, not a regime
FAR_WIDTHS = 1.0
#: a run of one value on consecutive rows this long at least (and longer than twice the
#: source's own longest run in that column): a stuck sensor
STUCK_MIN_RUN = 5
#: the new bound leaves this share of the new span as margin (as ``schema infer`` does)
MARGIN = 0.1


@dataclass
class Fault:
    """Rows that break the contract and look like a fault: never admitted."""

    column: str
    kind: str  # far_outside | impossible_sign | stuck | missing
    rows: int
    production_rows: int
    detail: str
    devices: dict[str, int] = field(default_factory=dict)  # production rows per target


@dataclass
class Change:
    """One admissible change of a column's contract, and the rows it admits."""

    column: str
    kind: str  # range | categories
    old: list[Any]
    new: list[Any]
    rows: int  # rows the change admits
    production_rows: int  # of which came from the devices
    detail: str


@dataclass
class ContractProposal:
    """What a person is asked to approve: the admissible changes and the faults flagged."""

    changes: list[Change] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    rows: int = 0
    production_rows: int = 0

    @property
    def offered(self) -> bool:
        """A person may approve it: changes to make and no fault among the rows (a proposal
        with faults is shown, never offered: the faults are fixed first)."""
        return bool(self.changes) and not self.faults

    @property
    def broken(self) -> bool:
        """The data breaks the contract (something to propose or to flag)."""
        return bool(self.changes or self.faults)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "production_rows": self.production_rows,
            "changes": [asdict(c) for c in self.changes],
            "faults": [asdict(f) for f in self.faults],
        }

    def lines(self) -> list[str]:
        """The proposal as plain text lines (the CLI, the run log)."""
        out = [
            f"the data ({self.rows:,} rows, {self.production_rows:,} from the devices) breaks "
            "the contract (validate.schema)"
        ]
        for c in self.changes:
            out.append(
                f"  propose {c.column}: {_show(c.old)} -> {_show(c.new)}: admits {c.rows:,} "
                f"rows ({c.production_rows:,} from the devices): {c.detail}"
            )
        for f in self.faults:
            out.append(
                f"  FAULT {f.column}: {f.detail}: {f.rows:,} rows "
                f"({_devices(f.devices) or 'none from the devices'}) stay rejected, not proposed"
            )
        return out

    def markdown(self, title: str = "Data contract change: review") -> str:
        """The proposal for the Prefect artifact and the pause form."""
        out = [
            f"# {title}",
            "",
            f"The training data ({self.rows:,} rows, {self.production_rows:,} of them from the "
            "devices) breaks the data contract (`validate.schema` in params.yaml).",
            "",
        ]
        if self.changes:
            out += [
                "Proposed changes (approve to write them into params.yaml and go on):"
                if self.offered
                else "Changes a new regime would need (not offered while faults are present):",
                "",
                "| column | contract now | proposed | rows admitted | from devices | looks like |",
                "| --- | --- | --- | ---: | ---: | --- |",
            ]
            out += [
                f"| {c.column} | {_show(c.old)} | {_show(c.new)} | {c.rows:,} | "
                f"{c.production_rows:,} | {c.detail} |"
                for c in self.changes
            ]
            out.append("")
        if self.faults:
            out += [
                "Flagged as faults: **not proposed**; these rows stay rejected by validate:",
                "",
                "| column | fault | rows | from devices |",
                "| --- | --- | ---: | --- |",
            ]
            out += [
                f"| {f.column} | {f.detail} | {f.rows:,} | {_devices(f.devices) or '-'} |"
                for f in self.faults
            ]
            out += ["", FAULT_FIX]
        return "\n".join(out) + "\n"


#: what to do about fault rows
FAULT_FIX = (
    "Repair the sensor of the device named (or the source); until then keep the devices' rows "
    "out of training with ingest.production.include: false in params.yaml, or correct the "
    "source's rows. The next run proposes the regime's change without the faults."
)


def _devices(devices: dict[str, int]) -> str:
    return ", ".join(f"{name}: {n:,}" for name, n in sorted(devices.items()))


def _show(bounds: list[Any]) -> str:
    if len(bounds) == 2 and all(b is None or isinstance(b, int | float) for b in bounds):
        lo, hi = bounds
        return f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
    return "{" + ", ".join(str(b) for b in bounds) + "}"


def propose(
    schema: Schema,
    data: pd.DataFrame,
    devices: list[str] | None = None,
    margin: float = MARGIN,
) -> ContractProposal:
    """The contract change that admits the regime in ``data``, and the faults it will not
    admit. ``devices``: the target of each of the last rows, which came from the devices
    (ingest appends them after the source's rows)."""
    import numpy as np

    devices = list(devices or [])
    production_rows = len(devices)
    is_prod = np.zeros(len(data), dtype=bool)
    origin = np.full(len(data), "", dtype=object)
    if production_rows:
        is_prod[len(data) - production_rows :] = True
        origin[len(data) - production_rows :] = devices
    out = ContractProposal(rows=len(data), production_rows=production_rows)
    for col in schema.columns:
        if col.name not in data.columns:
            continue
        s = data[col.name]
        nulls = s.isna().to_numpy()
        share = float(nulls.mean()) if len(s) else 0.0
        if share > col.max_null_share + 1e-12:
            out.faults.append(
                _fault(
                    col.name,
                    "missing",
                    nulls,
                    is_prod,
                    origin,
                    f"missing readings: {share:.1%} empty, the contract allows "
                    f"{col.max_null_share:.1%}",
                )
            )
        if col.type == NUMERIC:
            _numeric(out, col, s, is_prod, origin, margin)
        elif col.type == CATEGORICAL:
            _categorical(out, col, s, is_prod)
    return out


def _fault(column: str, kind: str, mask: Any, is_prod: Any, origin: Any, detail: str) -> Fault:
    """A fault on the rows of ``mask``, counted per device."""
    import collections

    devices = collections.Counter(str(o) for o in origin[mask] if o)
    return Fault(column, kind, int(mask.sum()), int((mask & is_prod).sum()), detail, dict(devices))


def _numeric(
    out: ContractProposal, col: Any, s: pd.Series, is_prod: Any, origin: Any, margin: float
) -> None:
    import numpy as np
    import pandas as pd

    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    lo = -math.inf if col.min is None else float(col.min)
    hi = math.inf if col.max is None else float(col.max)
    ok = np.isnan(v) | ((v >= lo) & (v <= hi))
    if ok.all():
        return
    outside = ~ok
    width = hi - lo if math.isfinite(hi - lo) and hi > lo else max(abs(lo), abs(hi), 1.0)
    if not math.isfinite(width):
        width = max((abs(b) for b in (lo, hi) if math.isfinite(b)), default=1.0)
    far = outside & ((v < lo - FAR_WIDTHS * width) | (v > hi + FAR_WIDTHS * width))
    negative = outside & ~far & (v < 0) & (lo >= 0)
    flagged = far | negative
    rest = outside & ~flagged
    if far.any():
        out.faults.append(
            _fault(
                col.name,
                "far_outside",
                far,
                is_prod,
                origin,
                f"far outside: beyond the range by more than {FAR_WIDTHS:g} range width "
                f"({width:g}), e.g. {_example(v[far])}",
            )
        )
    if negative.any():
        out.faults.append(
            _fault(
                col.name,
                "impossible_sign",
                negative,
                is_prod,
                origin,
                f"negative readings in a column that was never negative, e.g. {_example(v[negative])}",
            )
        )
    stuck, value, run, natural = _stuck(v, rest, is_prod)
    if stuck.any():
        out.faults.append(
            _fault(
                col.name,
                "stuck",
                stuck,
                is_prod,
                origin,
                f"stuck at {value:g}: {run:,} consecutive rows carry this one value (the "
                f"source's longest run of one value: {natural:,})",
            )
        )
        rest = rest & ~stuck
    if not rest.any():
        return
    seen_lo, seen_hi = float(v[rest].min()), float(v[rest].max())
    new_lo, new_hi = min(lo, seen_lo), max(hi, seen_hi)
    pad = (new_hi - new_lo) * margin if math.isfinite(new_hi - new_lo) else 0.0
    if seen_lo < lo:
        new_lo = seen_lo - pad
        if lo >= 0 and new_lo < 0:  # a non-negative column stays so
            new_lo = 0.0
        new_lo = _round(new_lo, seen_lo, down=True)
    if seen_hi > hi:
        new_hi = _round(seen_hi + pad, seen_hi, down=False)
    out.changes.append(
        Change(
            col.name,
            "range",
            [col.min, col.max],
            [_plain(new_lo, col.min), _plain(new_hi, col.max)],
            int(rest.sum()),
            int((rest & is_prod).sum()),
            f"a new regime: {int(rest.sum()):,} rows spread over [{seen_lo:g}, {seen_hi:g}]",
        )
    )


def _stuck(v: Any, outside: Any, is_prod: Any) -> tuple[Any, float, int, int]:
    """(rows in runs of one value outside the range longer than the source's runs allow, the
    value of the longest such run, its length, the source's longest run)."""
    import numpy as np

    n = len(v)
    stuck = np.zeros(n, dtype=bool)
    if n == 0:
        return stuck, math.nan, 0, 0
    same = np.concatenate([[False], (v[1:] == v[:-1]) & ~np.isnan(v[1:])])
    starts = np.flatnonzero(~same)
    lengths = np.diff(np.append(starts, n))
    source = ~is_prod[starts]
    natural = int(lengths[source].max()) if source.any() else 1
    need = max(STUCK_MIN_RUN, 2 * natural + 1)
    value, longest = math.nan, 0
    for start, length in zip(starts, lengths, strict=True):
        if length >= need and outside[start]:
            stuck[start : start + length] = True
            if length > longest:
                value, longest = float(v[start]), int(length)
    return stuck, value, longest, natural


def _categorical(out: ContractProposal, col: Any, s: pd.Series, is_prod: Any) -> None:
    allowed = {str(c) for c in col.categories or ()}
    text = s.map(lambda x: None if x is None or x != x else str(x))
    new = text.notna() & ~text.isin(allowed)
    if not new.any():
        return
    counts = text[new].value_counts()
    added = [str(k) for k in counts.index]
    mask = new.to_numpy()
    out.changes.append(
        Change(
            col.name,
            "categories",
            list(col.categories or ()),
            [*(col.categories or ()), *added],
            int(mask.sum()),
            int((mask & is_prod).sum()),
            "new categories: " + ", ".join(f"{k} ({n:,} rows)" for k, n in counts.items()),
        )
    )


def _example(values: Any) -> str:
    return ", ".join(f"{x:g}" for x in list(dict.fromkeys(values.tolist()))[:3])


def _plain(value: float, old: Any) -> Any:
    if not math.isfinite(value):
        return old
    return round(float(value), 6)


def apply(params_path: Path, proposal: ContractProposal) -> list[str]:
    """Write the proposal's changes into ``validate.schema`` of the params file in place,
    keeping every comment and the layout; returns the columns changed. Fault rows are not
    admitted: only :attr:`ContractProposal.changes` are written."""
    import io

    import yaml

    from edgeops import atomic
    from edgeops.schema import schema_from_dict
    from edgeops.schema_commands import round_trip

    rt = round_trip()
    data = rt.load(params_path.read_text(encoding="utf-8"))
    try:
        columns = data["validate"]["schema"]["columns"]
    except (KeyError, TypeError):
        raise EdgeopsError(
            f"{params_path} has no validate.schema.columns to change",
            fix="propose a contract first: edgeops schema infer --apply",
        ) from None
    by_name = {str(c.get("name")): c for c in columns if hasattr(c, "get")}
    changed = []
    for ch in proposal.changes:
        node = by_name.get(ch.column)
        if node is None:
            raise EdgeopsError(
                f"column {ch.column!r} is no longer in validate.schema of {params_path}",
                fix="propose the change again: edgeops schema infer --with-production",
            )
        if ch.kind == "range":
            node["min"], node["max"] = ch.new
        else:
            node["categories"] = _flow_list(ch.new)
        changed.append(ch.column)
    buf = io.StringIO()
    rt.dump(data, buf)
    text = buf.getvalue()
    schema_from_dict(yaml.safe_load(text)["validate"]["schema"])  # what the pipeline will read
    atomic.write_text(params_path, text)
    return changed


def _flow_list(values: list[Any]) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def training_data(root: Path, schema: Schema) -> tuple[pd.DataFrame, list[str]]:
    """(ingest's output, the target of each of its last rows that came from the devices), read
    from ``root``: what ``validate`` is about to judge."""
    import pandas as pd
    import pyarrow.parquet as pq

    data = root / "data/raw/dataset.parquet"
    keys = root / "data/raw/production.parquet"
    if not data.is_file():
        raise EdgeopsError(f"{data} is missing", fix="run the ingest stage first: dvc repro ingest")
    present = set(pq.read_schema(data).names)
    df = pd.read_parquet(data, columns=[c for c in schema.names if c in present])
    devices = pd.read_parquet(keys, columns=["target"])["target"] if keys.is_file() else []
    return df, [str(t) for t in devices]
