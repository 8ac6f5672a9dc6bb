"""`make bench`'s own logic: the stage commands it re-runs, the fair share under contention, the
verdicts of the summary and the service figures it hands to `edgeops capacity`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from common import STAGES, stage_commands  # noqa: E402
from contention import fair_share, quantiles  # noqa: E402
from summary import services, summary  # noqa: E402


def test_stage_commands_write_every_output_under_scratch_and_read_the_workspace(tmp_path):
    scratch = tmp_path / "scratch"
    cmds = stage_commands(REPO, scratch)
    assert set(STAGES) <= set(cmds)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        argv = cmds[name]
        outs = {
            next(iter(o)) if isinstance(o, dict) else o
            for key in ("outs", "metrics", "plots")
            for o in st.get(key, [])
        }
        for dep in st.get("deps", []):
            if dep not in outs and any(dep == a for a in cmds[name]):
                assert str(scratch / dep) not in argv  # inputs stay the workspace's
        written = [a for a in argv if a.startswith(str(scratch))]
        into_workspace = [a for a in argv if a in outs or any(o.startswith(f"{a}/") for o in outs)]
        assert not into_workspace, f"{name} still writes into the workspace: {into_workspace}"
        assert written, f"{name}: no output moved under scratch: {argv}"


def test_the_fair_share_grows_with_the_cores_a_stage_keeps_busy():
    one_core = {"wall_s": 10.0, "cpu_s": 9.5}  # below 1 core: counted as 1
    two_cores = {"wall_s": 10.0, "cpu_s": 19.0}
    assert fair_share(one_core, threads=2, cores=2) == (1.0, 1.5)
    assert fair_share(two_cores, threads=2, cores=2) == (1.9, 2.85)
    assert fair_share(two_cores, threads=1, cores=2) == (1.0, 1.5)  # capped by its threads


def _write(out: Path, name: str, data: dict) -> None:
    (out / f"{name}.json").write_text(json.dumps(data))


def test_the_summary_names_each_target_missed_and_met(tmp_path):
    stage = {"stage_s": 10.0, "library_s": 9.0, "ratio": 1.11}
    slow = {"stage_s": 14.0, "library_s": 10.0, "ratio": 1.4}
    _write(
        tmp_path,
        "stages",
        {
            "rows": 1_000_000,
            "stages": {"train": stage, "validate": slow},
            "noop": {"repro_s": 1.2, "status_s": 1.0, "ratio": 1.2},
        },
    )
    _write(tmp_path, "startup", {"help_s": 0.2, "agent_ready_s": 1.4, "python_s": 0.02})
    md = summary(tmp_path, {"stages": {"returncode": 0}, "agent": {"returncode": 1}}, 600)
    lines = md.splitlines()
    assert lines[0] == "# make bench: 10.0 min"
    assert "Benchmarks that failed: agent (exit 1)" in md
    row = {
        line.split("|")[1].strip(): line.split("|")[-2].strip()
        for line in lines
        if line.startswith("| ")
    }
    assert row["train <= 1.3x its library alone (1,000,000 rows)"] == "met"
    assert row["validate <= 1.3x its library alone (1,000,000 rows)"] == "**missed**"
    assert row["no-op `dvc repro` <= 1.3x `dvc status`"] == "met"
    assert row["agent start -> ready <= 1 s (model deployed)"] == "**missed**"
    assert row["`edgeops --help` <= 0.3 s"] == "met"


def test_the_service_figures_go_into_the_capacity_profile(tmp_path):
    _write(tmp_path, "profile", {"runs": [], "services": {"inference_log_bytes_per_row": 560}})
    _write(
        tmp_path, "contention", {"others": {"agent_peak_rss_mb": 190, "monitor_peak_rss_mb": 900}}
    )
    _write(
        tmp_path,
        "orchestration",
        {"prefect": {"server_rss_mb": 300, "worker_rss_mb": 150, "db_bytes_per_run": 81234.5}},
    )
    services(tmp_path)
    svc = json.loads((tmp_path / "profile.json").read_text())["services"]
    assert svc == {
        "inference_log_bytes_per_row": 560,
        "agent_rss_mb": 190,
        "monitor_peak_rss_mb": 900,
        "prefect_server_rss_mb": 300,
        "prefect_worker_rss_mb": 150,
        "prefect_db_bytes_per_run": 81234,
    }

    from edgeops.capacity import Need, Profile, plan

    base = json.loads((REPO / "src/edgeops/capacity-profile.json").read_text())
    base["services"] = svc
    (tmp_path / "full.json").write_text(json.dumps(base))
    plain = plan(Profile.load(REPO / "src/edgeops/capacity-profile.json"), Need(rows=5_000_000))
    full = plan(Profile.load(tmp_path / "full.json"), Need(rows=5_000_000))
    assert full["plan"]["ram_gb"] > plain["plan"]["ram_gb"]
    assert full["disk"]["prefect_db_per_year_mb"] > 0


def test_the_agents_latency_quantiles_come_from_the_requests_between_two_snapshots():
    inf = float("inf")
    before = {0.001: 1000.0, 0.0025: 1000.0, 0.005: 1000.0, inf: 1000.0}
    after = {0.001: 1050.0, 0.0025: 1099.0, 0.005: 1100.0, inf: 1100.0}
    q = quantiles(before, after)
    assert q == {"requests": 100.0, "p50": 1.0, "p99": 2.5}


def test_scaling_skips_a_size_only_when_the_rows_a_stage_holds_will_not_fit() -> None:
    """beyond_memory fits each stage's peak in the rows it holds (its cap from params.yaml): train
    fits a sample above train.max_rows, so 100M rows are planned at the cap, not at 100M."""
    from scaling import beyond_memory, caps

    have_mb = (
        int(
            next(
                x.split()[1]
                for x in Path("/proc/meminfo").read_text().splitlines()
                if x.startswith("MemAvailable")
            )
        )
        / 1024
    )
    cap = caps()["memory"]["train"]
    per_row = have_mb / cap / 2  # at the cap: half the memory there is; at 100M: far beyond it
    runs = [
        {
            "rows": n,
            "stages": {
                s: {"peak_rss_mb": (per_row * n if s == "train" else 100.0), "wall_s": n / 1e5}
                for s in STAGES
            },
        }
        for n in (1_000_000, 10_000_000)
    ]
    assert 2 * cap < 100_000_000 and beyond_memory(runs, 100_000_000) is None
    assert beyond_memory(runs, 4 * cap) is None  # still the cap: fits
    no_cap = [{**r, "stages": {**r["stages"], "split": r["stages"]["train"]}} for r in runs]
    why = beyond_memory(no_cap, 100_000_000)  # split holds a column of every row: grows on
    assert why and why.startswith("split would need")
