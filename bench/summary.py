"""The targets of `make bench` against their measured figures and baselines (reports/bench/summary.md),
and the service figures merged into the capacity profile (reports/bench/profile.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def services(out: Path) -> None:
    """Agent, monitoring and Prefect figures of this run -> profile.json's ``services``."""
    prof, cont, orch = _load(out, "profile"), _load(out, "contention"), _load(out, "orchestration")
    if prof is None:
        return
    svc = prof.setdefault("services", {})
    if cont:
        o = cont["others"]
        svc.update(
            agent_rss_mb=o.get("agent_peak_rss_mb", 0),
            monitor_peak_rss_mb=o.get("monitor_peak_rss_mb", 0),
        )
    if orch and orch.get("prefect"):
        p = orch["prefect"]
        svc.update(
            prefect_server_rss_mb=p["server_rss_mb"],
            prefect_worker_rss_mb=p["worker_rss_mb"],
            prefect_db_bytes_per_run=round(p["db_bytes_per_run"]),
        )
    tmp = out / ".profile.json.tmp"
    tmp.write_text(json.dumps(prof, indent=2) + "\n")
    tmp.replace(out / "profile.json")


def _row(rows: list[str], target: str, measured: str, baseline: str, ok: bool | None) -> None:
    verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
    rows.append(f"| {target} | {measured} | {baseline} | {verdict} |")


def _pipeline(rows: list[str], out: Path) -> None:
    sc = _load(out, "scaling")
    if not sc:
        return
    by = {r["rows"]: r for r in sc["runs"]}
    for n, limit in ((1_000_000, 60), (10_000_000, 240)):
        if n in by:
            r = by[n]
            stages = sum(s["wall_s"] for s in r["stages"].values())
            peak = max(s["peak_rss_mb"] for s in r["stages"].values()) / 1024
            mem = " within 6 GB" if n == 10_000_000 else ""
            ok = r["repro_wall_s"] <= limit and (peak <= 6 or n != 10_000_000)
            _row(
                rows,
                f"{n:,} rows cold `dvc repro` <= {limit} s{mem}",
                f"{r['repro_wall_s']:.0f} s ({stages:.0f} s in the stages), peak {peak:.2f} GB",
                "-",
                ok,
            )
    for skip in sc.get("skipped", []):
        _row(rows, f"{skip['rows']:,} rows within 24 GB", "not run", skip["why"], False)
    if 10_000_000 in by and 100_000_000 in by:
        t10, t100 = (sum(s["wall_s"] for s in by[n]["stages"].values()) for n in (10**7, 10**8))
        b = math.log(t100 / t10) / math.log(10)
        peak = max(s["peak_rss_mb"] for s in by[10**8]["stages"].values()) / 1024
        _row(
            rows,
            "100M rows within 24 GB, time <= rows^1.1 from 10M",
            f"{t100:.0f} s, peak {peak:.1f} GB, exponent {b:.2f}",
            f"10M: {t10:.0f} s",
            b <= 1.1 and peak <= 24,
        )


def _stages(rows: list[str], out: Path) -> None:
    st = _load(out, "stages")
    if not st:
        return
    for name, f in st["stages"].items():
        _row(
            rows,
            f"{name} <= 1.3x its library alone ({st['rows']:,} rows)",
            f"{f['stage_s']:.2f} s",
            f"{f['library_s']:.2f} s ({f['ratio']:.2f}x)",
            f["ratio"] <= 1.3,
        )
    n = st["noop"]
    _row(
        rows,
        "no-op `dvc repro` <= 1.3x `dvc status`",
        f"{n['repro_s']:.2f} s",
        f"{n['status_s']:.2f} s ({n['ratio']:.2f}x)",
        n["ratio"] <= 1.3,
    )


def _contention(rows: list[str], out: Path) -> None:
    c = _load(out, "contention")
    if not c:
        return
    worst = max(c["stages"].items(), key=lambda kv: kv[1]["ratio_to_fair"])
    _row(
        rows,
        f"under contention each stage <= {c['target']}x its fair share",
        f"worst: {worst[0]} {worst[1]['ratio_to_fair']:.2f}x ({worst[1]['busy_s']:.1f} s)",
        f"quiet {worst[1]['quiet_s']:.1f} s x fair factor {worst[1]['fair_factor']:.2f}",
        worst[1]["ratio_to_fair"] <= c["target"],
    )


def _agent(rows: list[str], out: Path) -> None:
    a = _load(out, "agent")
    if not a or "agent" not in a.get("results", {}):
        return
    r = a["results"]
    ag, fl = r["agent"], r.get("echo+onnx")
    c = f"c{max(a.get('concurrency', [8]))}"
    if fl:
        _row(
            rows,
            "agent p50 <= 1.1x echo + model call (c=1)",
            f"{ag['c1']['p50_ms']:.3f} ms",
            f"{fl['c1']['p50_ms']:.3f} ms ({ag['c1']['p50_ms'] / fl['c1']['p50_ms']:.2f}x)",
            ag["c1"]["p50_ms"] <= 1.1 * fl["c1"]["p50_ms"],
        )
        _row(
            rows,
            "agent p99 <= 2x the floor's p99 (c=1)",
            f"{ag['c1']['p99_ms']:.2f} ms",
            f"{fl['c1']['p99_ms']:.2f} ms ({ag['c1']['p99_ms'] / fl['c1']['p99_ms']:.2f}x)",
            ag["c1"]["p99_ms"] <= 2 * fl["c1"]["p99_ms"],
        )
        _row(
            rows,
            f"agent throughput >= 0.85x the floor ({c})",
            f"{ag[c]['rps']:,.0f} req/s",
            f"{fl[c]['rps']:,.0f} req/s ({ag[c]['rps'] / fl[c]['rps']:.2f}x)",
            ag[c]["rps"] >= 0.85 * fl[c]["rps"],
        )
    if "sklearn" in r:
        sk = r["sklearn"]
        _row(
            rows,
            ">= 10x faster than scikit-learn serving (p50, c=1)",
            f"{ag['c1']['p50_ms']:.3f} ms",
            f"{sk['c1']['p50_ms']:.3f} ms ({sk['c1']['p50_ms'] / ag['c1']['p50_ms']:.1f}x)",
            sk["c1"]["p50_ms"] >= 10 * ag["c1"]["p50_ms"],
        )
    ks = r.get("kserve")
    if ks and "c1" in ks:
        _row(
            rows,
            "at least as fast as KServe (p50 c=1, req/s)",
            f"{ag['c1']['p50_ms']:.3f} ms, {ag[c]['rps']:,.0f} req/s",
            f"{ks['c1']['p50_ms']:.3f} ms, {ks[c]['rps']:,.0f} req/s",
            ag["c1"]["p50_ms"] <= ks["c1"]["p50_ms"] and ag[c]["rps"] >= ks[c]["rps"],
        )


def _services(rows: list[str], out: Path) -> None:
    m = _load(out, "monitor")
    if m and m.get("variants"):
        v = next(iter(m["variants"].values()))
        a, b = v["median_a"]["wall"], v["median_b"]["wall"]
        _row(
            rows,
            f"monitoring of {m.get('rows', 100_000):,} rows <= 20 s (Evidently alone beside)",
            f"{a:.1f} s",
            f"{b:.1f} s ({a / b:.2f}x)",
            a <= 20,
        )
    s = _load(out, "startup")
    if s:
        _row(
            rows,
            "agent start -> ready <= 1 s (model deployed)",
            f"{s['agent_ready_s']:.2f} s",
            f"python -c pass {s['python_s']:.2f} s",
            s["agent_ready_s"] <= 1.0,
        )
        _row(
            rows,
            "`edgeops --help` <= 0.3 s",
            f"{s['help_s']:.2f} s",
            f"python -c pass {s['python_s']:.2f} s",
            s["help_s"] <= 0.3,
        )
    o = _load(out, "orchestration")
    if o:
        med = o["median"]
        _row(
            rows,
            "a training run <= scheduling + 1.2x bare `dvc repro`",
            f"{med['total']:.1f} s (scheduling {med['scheduling']:.1f} s)",
            f"{med['bare']:.1f} s ({med['ratio']:.2f}x)",
            med["ratio"] <= 1.2,
        )


def summary(out: Path, runs: dict[str, Any], total: float) -> str:
    """The markdown summary: every target, measured figure and baseline, then the detail tables."""
    rows = ["| target | measured | baseline | verdict |", "| --- | --- | --- | --- |"]
    for part in (_pipeline, _stages, _contention, _agent, _services):
        part(rows, out)
    failed = [f"{n} (exit {r['returncode']})" for n, r in runs.items() if r["returncode"]]
    head = [f"# make bench: {total / 60:.1f} min", ""]
    if failed:
        head += [f"Benchmarks that failed: {', '.join(failed)} (see reports/bench/NAME.txt).", ""]
    detail = []
    for name in ("scaling", "stages", "contention", "startup"):
        path = out / (f"{name}.md" if name == "scaling" else f"{name}.json")
        if path.suffix == ".md" and path.is_file():
            detail += [f"## {name}", "", path.read_text()]
        elif path.is_file():
            detail += [f"## {name}", "", json.loads(path.read_text()).get("table", "")]
    return "\n".join(head + rows + [""] + detail)
