"""Capacity planning from measured figures: what a company's data size needs of its server.

The input is a *profile*: the pipeline run at several row counts on one machine
(``bench/scaling.py`` writes it to ``reports/bench/profile.json``; ``edgeops/capacity-profile.json`` (in the package) is the
one measured on the reference machine, committed). Per stage, time is fitted as
``t(n) = t0 + a * n**b`` (``t0``: the stage's fixed cost, measured at the smallest run; ``b``: the
growth exponent, fitted on the larger runs) and peak memory as ``m(n) = m0 + m1 * n`` (least
squares). Bytes on disk (snapshot, split, model, bundle) are fitted linearly in rows.

Some stages work on a bounded number of rows however large the data (the profile's ``caps``,
from the params it was measured with, :func:`stage_caps`): ingest makes and writes the
simulator's data a chunk at a time (memory), validate checks a sample (memory), train fits a
sample above ``train.max_rows`` (time and memory). Those fits are in ``min(rows, cap)``; a
plan predicts in the caps of the company's own params (``edgeops capacity`` reads params.yaml):
a CSV or SQL source is read whole, ``train.max_rows: 0`` fits every row. The sample's read pass
over the whole training split is not in train's capped time: at 100M rows train took 144 s, the
plan says 110 s.

Assumptions, stated in every plan: time and per-row memory grow linearly with the number of
features relative to the profile's; the stages run one after another with ``resources.threads``
threads as in the profile; a retrain writes new versions of every output to the DVC cache and
remote (DVC keeps the old ones: nothing is deduplicated across retrains when the data changed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError

STAGES = ("ingest", "validate", "split", "train", "evaluate", "export", "bundle")
#: the profile `make bench` writes on this machine, then the one measured on the reference machine
#: (shipped in the package, so `edgeops capacity` works in any project)
PROFILE_PATHS = (
    Path("reports/bench/profile.json"),
    Path(__file__).with_name("capacity-profile.json"),
)
#: what the plan adds for the processes that share the box (used when the profile has no figure)
HEADROOM = 1.25


@dataclass
class Fit:
    """``t0 + a * n**b`` (time) or ``m0 + m1 * n`` (memory, b = 1)."""

    t0: float
    a: float
    b: float

    def __call__(self, n: float) -> float:
        return self.t0 + self.a * n**self.b


def fit_growth(rows: list[int], values: list[float]) -> Fit:
    """``t0 + a * n**b``: ``a`` and ``b`` fitted log-log on the runs above the smallest, ``t0``
    the smallest run's time less its own growth share (a few rounds of both, to agree)."""
    pairs = sorted(zip(rows, values, strict=True))
    (n0, v0), rest = pairs[0], pairs[1:]
    t0 = max(0.0, v0)
    fit = Fit(t0, 0.0, 1.0)
    for _ in range(8):
        # growth within a tenth of the fixed cost is noise: fitted, it gave bundle n^6.4
        big = [(n, v - t0) for n, v in rest if v - t0 > 0.1 * t0]
        if len(big) < 2:  # too little growth to fit an exponent: linear through the largest run
            n, v = pairs[-1]
            return Fit(t0, max(v - t0, 0.0) / n, 1.0)
        xs = [math.log(n) for n, _ in big]
        ys = [math.log(v) for _, v in big]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        fit = Fit(t0, math.exp(my - b * mx), b)
        t0 = max(0.0, v0 - fit.a * n0**b)
    return fit


def fit_linear(rows: list[int], values: list[float]) -> Fit:
    """Least squares ``m0 + m1 * n`` (never below the smallest measured value at n = 0)."""
    n = len(rows)
    mx, my = sum(rows) / n, sum(values) / n
    sxx = sum((x - mx) ** 2 for x in rows)
    slope = (
        0.0
        if sxx == 0
        else sum((x - mx) * (y - my) for x, y in zip(rows, values, strict=True)) / sxx
    )
    slope = max(slope, 0.0)
    return Fit(max(my - slope * mx, min(values) * 0.5), slope, 1.0)


@dataclass
class Profile:
    """Measured runs of the pipeline at several sizes on one machine."""

    machine: dict[str, Any]
    features: int
    threads: int
    runs: list[dict[str, Any]]
    services: dict[str, float] = field(default_factory=dict)
    source: str = ""
    #: ``{"memory": {stage: rows}, "time": {stage: rows}}``: what a stage holds / works on at most
    caps: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Profile:
        candidates = [Path(path)] if path else list(PROFILE_PATHS)
        for p in candidates:
            if p.is_file():
                try:
                    data = json.loads(p.read_text())
                    prof = cls(
                        machine=data["machine"],
                        features=int(data["features"]),
                        threads=int(data["threads"]),
                        runs=list(data["runs"]),
                        services=dict(data.get("services") or {}),
                        source=str(p),
                        caps=dict(data.get("caps") or {}),
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise EdgeopsError(
                        f"{p} is not a capacity profile ({exc})",
                        fix="measure one: make bench (writes reports/bench/profile.json)",
                    ) from None
                if len(prof.runs) < 2:
                    raise EdgeopsError(
                        f"{p} holds {len(prof.runs)} run(s); a fit needs 2 or more",
                        fix="make bench (runs the pipeline at several sizes)",
                    )
                return prof
        raise EdgeopsError(
            "no capacity profile: " + " or ".join(str(p) for p in candidates) + " not found",
            fix="run `make bench` (writes reports/bench/profile.json), or pass --profile FILE",
        )

    def rows(self) -> list[int]:
        return [int(r["rows"]) for r in self.runs]

    def stage_fits(self, stage: str) -> tuple[Fit, Fit]:
        """Time and memory of ``stage``, fitted in :meth:`work_rows` (call them with that)."""
        measured = [(int(r["rows"]), r["stages"][stage]) for r in self.runs if stage in r["stages"]]
        rows_t = [self.work_rows(stage, n, "time") for n, _ in measured]
        rows_m = [self.work_rows(stage, n, "memory") for n, _ in measured]
        return (
            fit_growth(rows_t, [float(s["wall_s"]) for _, s in measured]),
            fit_linear(rows_m, [float(s["peak_rss_mb"]) for _, s in measured]),
        )

    def work_rows(
        self, stage: str, rows: int, kind: str, caps: dict[str, dict[str, int]] | None = None
    ) -> int:
        """The rows ``stage`` works on (``kind`` "time") or holds ("memory") for ``rows`` rows,
        under ``caps`` (default: the profile's own)."""
        cap = ((self.caps if caps is None else caps).get(kind) or {}).get(stage)
        return min(rows, int(cap)) if cap else rows

    def bytes_fit(self, what: str) -> Fit:
        sized = [
            (int(r["rows"]), float(r["bytes"][what]))
            for r in self.runs
            if what in r.get("bytes", {})
        ]
        if len(sized) < 2:
            return Fit(0.0, 0.0, 1.0)
        return fit_linear([n for n, _ in sized], [b for _, b in sized])


def stage_caps(params: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The rows each stage holds ("memory") or works on ("time") at most under ``params``."""
    from edgeops.params import row_count

    memory: dict[str, int] = {}
    time: dict[str, int] = {}
    if (params.get("ingest") or {}).get("source", "simulator") == "simulator":
        from edgeops.sources.simulator import CHUNK_ROWS

        memory["ingest"] = CHUNK_ROWS
    if sample := row_count(params.get("validate") or {}, "validate", "sample_rows"):
        memory["validate"] = sample
    if fitted := row_count(params.get("train") or {}, "train", "max_rows"):
        test_size = float((params.get("split") or {}).get("test_size", 0.2))
        memory["train"] = time["train"] = math.ceil(fitted / (1.0 - test_size))
    return {"memory": memory, "time": time}


@dataclass
class Need:
    """What the company's workload asks for."""

    rows: int
    features: int | None = None
    retrain_every_days: float = 7.0
    devices: int = 0
    requests_per_day: float = 0.0
    cores: int | None = None  # the machine to check against (None: nothing to check)
    memory_gb: float | None = None
    disk_gb: float | None = None
    window_hours: float = 6.0  # a nightly retrain must finish within this


def plan(
    profile: Profile, need: Need, caps: dict[str, dict[str, int]] | None = None
) -> dict[str, Any]:
    """Predicted time and memory per stage, and the cores, RAM and disk to plan for.

    ``caps``: the rows each stage holds or works on at most under the company's own params
    (:func:`stage_caps`; default: the profile's). The fits are always in the profile's caps."""
    if need.rows < 1:
        raise EdgeopsError(
            f"--rows {need.rows}: give the rows of one training snapshot",
            fix="e.g. edgeops capacity --rows 5000000",
        )
    scale = (need.features or profile.features) / profile.features
    stages = {}
    for stage in STAGES:
        if not any(stage in r["stages"] for r in profile.runs):
            continue
        time_fit, mem_fit = profile.stage_fits(stage)
        n_time, n_mem = (profile.work_rows(stage, need.rows, k, caps) for k in ("time", "memory"))
        wall = time_fit.t0 + (time_fit(n_time) - time_fit.t0) * scale
        peak = mem_fit.t0 + mem_fit.a * n_mem * scale
        stages[stage] = {
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(peak),
            "growth_exponent": round(time_fit.b, 2),
        }
    total_s = sum(s["wall_s"] for s in stages.values())
    peak_mb = max(s["peak_rss_mb"] for s in stages.values())
    svc = profile.services
    side_mb = sum(
        svc.get(k, 0.0)
        for k in (
            "agent_rss_mb",
            "prefect_server_rss_mb",
            "prefect_worker_rss_mb",
            "monitor_peak_rss_mb",
        )
    )
    ram_gb = (peak_mb + side_mb) * HEADROOM / 1024
    per_retrain = sum(
        profile.bytes_fit(k)(need.rows * scale) for k in ("raw", "prepared", "models")
    )
    retrains_year = 365.0 / max(need.retrain_every_days, 1e-9)
    log_row = float(svc.get("inference_log_bytes_per_row", 0.0))
    log_day = need.devices * need.requests_per_day * log_row
    prod_row = profile.bytes_fit("raw")(need.rows) / need.rows  # collected rows: Parquet as raw
    collected_year = need.devices * need.requests_per_day * 365 * prod_row
    disk = {
        "dvc_cache_per_retrain_gb": per_retrain / 1e9,
        "dvc_cache_per_year_gb": per_retrain * retrains_year / 1e9,
        "dvc_remote_per_year_gb": per_retrain * retrains_year / 1e9,
        "inference_log_per_device_per_day_mb": (need.requests_per_day * log_row) / 1e6,
        "inference_logs_per_day_mb": log_day / 1e6,
        "production_rows_per_year_gb": collected_year / 1e9,
        "prefect_db_per_year_mb": float(svc.get("prefect_db_bytes_per_run", 0.0))
        * (retrains_year + 24 * 365)
        / 1e6,  # one training per retrain, hourly monitoring
    }
    disk_year_gb = (
        2 * disk["dvc_cache_per_year_gb"]
        + disk["production_rows_per_year_gb"]
        + disk["prefect_db_per_year_mb"] / 1e3
    )
    cores = max(2, profile.threads + 1)  # the training threads + one for agent, server, monitor
    result: dict[str, Any] = {
        "rows": need.rows,
        "features": need.features or profile.features,
        "profile": {
            "source": profile.source,
            "machine": profile.machine,
            "rows_measured": profile.rows(),
            "threads": profile.threads,
        },
        "stages": stages,
        "pipeline_s": round(total_s, 1),
        "peak_stage_mb": peak_mb,
        "plan": {
            "cores": cores,
            "ram_gb": round(max(ram_gb, 1.0), 1),
            "disk_first_year_gb": round(disk_year_gb, 1),
        },
        "disk": {k: round(v, 3) for k, v in disk.items()},
    }
    result["capped"] = [
        (stage, kind, int(cap))
        for kind, by_stage in sorted((profile.caps if caps is None else caps).items())
        for stage, cap in sorted(by_stage.items())
        if need.rows > cap
    ]
    result["warnings"] = warnings(result, profile, need)
    return result


def warnings(result: dict[str, Any], profile: Profile, need: Need) -> list[str]:
    """Where the machine named by --cores/--memory-gb/--disk-gb will not do, and why."""
    out = []
    biggest = max(profile.rows())
    if need.rows > 10 * biggest:
        out.append(
            f"{need.rows:,} rows is over 10x the largest measured run ({biggest:,}): "
            "the figures are extrapolated; measure closer with bench/scaling.py --rows"
        )
    p = result["plan"]
    if need.memory_gb is not None and result["peak_stage_mb"] / 1024 > need.memory_gb:
        out.append(
            f"will not do: the largest stage needs {result['peak_stage_mb'] / 1024:.1f} GB "
            f"of memory, the machine has {need.memory_gb:g} GB"
        )
    elif need.memory_gb is not None and p["ram_gb"] > need.memory_gb:
        out.append(
            f"tight: {p['ram_gb']:g} GB planned (pipeline + agent + Prefect + monitoring, "
            f"+25 %), the machine has {need.memory_gb:g} GB"
        )
    if need.cores is not None:
        hours = result["pipeline_s"] / 3600 * max(1.0, profile.threads / need.cores)
        if hours > need.window_hours:
            out.append(
                f"will not do: a retrain takes about {hours:.1f} h on {need.cores} "
                f"core(s), more than the {need.window_hours:g} h window"
            )
        if need.cores < p["cores"]:
            out.append(
                f"tight: {need.cores} core(s) for the pipeline's {profile.threads} "
                "threads plus the agent, server and monitoring: they will take turns"
            )
    if need.disk_gb is not None and p["disk_first_year_gb"] > need.disk_gb:
        out.append(
            f"will not do: the first year needs {p['disk_first_year_gb']:g} GB of disk "
            f"(DVC cache + remote, collected rows, Prefect), the machine has "
            f"{need.disk_gb:g} GB"
        )
    return out
