"""Sharing the box: one setting sizes a stage's thread pools, and each stage's use is recorded.

A company's one small server runs the Prefect server, a worker, an agent and monitoring side by
side. Thread pools that size themselves from the machine (scikit-learn's OpenMP, BLAS, pyarrow,
onnxruntime) and spin while they wait burn the cores the others need. ``resources.threads`` in
params.yaml sizes them all; its default is the cores this process is given (CPU affinity, e.g.
systemd's ``CPUAffinity=`` or ``taskset``, and a cgroup quota such as ``CPUQuota=``).

``limit_threads(n)`` goes through the environment, so the libraries a stage loads later and the
processes it starts (DVC's stage commands, Evidently's worker) inherit it; libraries already
loaded are limited with threadpoolctl. The agent sizes its own threads (``threads`` in its config).

Every stage records its wall time, CPU time, peak memory and the thread pools it actually ran with
in ``reports/resources.json`` (git-ignored, not a DVC metric: it is noise between runs).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError

#: the environment variables that size OpenMP, the BLAS libraries and numexpr (pyarrow's CPU
#: pool reads OMP_NUM_THREADS too)
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: what this module set, for code that sizes a pool itself (onnxruntime sessions)
ENV = "EDGEOPS_THREADS"
REPORT = Path("reports/resources.json")
#: the onnxruntime sessions this process scored with (note_session), for thread_pools()
_sessions: list[dict[str, Any]] = []


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return cores


def configured_threads(params: dict[str, Any]) -> int:
    """``resources.threads`` from the params (``auto`` or absent: the cores available)."""
    value = (params.get("resources") or {}).get("threads", "auto")
    if value in (None, "auto"):
        return available_cores()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EdgeopsError(
            f"resources.threads is {value!r}: it must be a whole number of threads, 1 or more",
            fix="set resources.threads to e.g. 2, or to auto (the cores this process is given)",
        )
    return value


def limit_threads(threads: int) -> None:
    """Size every thread pool of this process and its children to ``threads``, no spinning."""
    os.environ[ENV] = str(threads)
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    # an idle OpenMP thread sleeps instead of spinning on a core another process needs
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "threadpoolctl" in sys.modules or "numpy" in sys.modules:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)  # the libraries loaded already (the environment is too late)
    if "pyarrow" in sys.modules:
        import pyarrow

        pyarrow.set_cpu_count(threads)


def current_threads() -> int:
    """The thread count :func:`limit_threads` set for this process (else the cores available)."""
    value = os.environ.get(ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else available_cores()


def apply(params_path: str | Path) -> int:
    """Read ``resources.threads`` from the params file (if there is one) and apply it."""
    from edgeops.params import load_params

    path = Path(params_path)
    threads = configured_threads(load_params(path)) if path.is_file() else available_cores()
    limit_threads(threads)
    return threads


def thread_pools() -> list[dict[str, Any]]:
    """The thread pools this process runs with now: OpenMP/BLAS (threadpoolctl) and pyarrow."""
    pools: list[dict[str, Any]] = []
    if "threadpoolctl" in sys.modules or "numpy" in sys.modules:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            pools.append(
                {
                    "api": lib["user_api"] + "/" + lib["internal_api"],
                    "library": Path(lib["filepath"]).name,
                    "threads": lib["num_threads"],
                }
            )
    if "pyarrow" in sys.modules:
        import pyarrow

        pools.append({"api": "pyarrow", "library": "pyarrow", "threads": pyarrow.cpu_count()})
    return pools + _sessions


def note_session(session: Any) -> None:
    """Record an onnxruntime session's threads and spinning (the stages that score with one)."""
    options = session.get_session_options()
    spinning = options.get_session_config_entry("session.intra_op.allow_spinning") or "1"
    _sessions.append(
        {
            "api": "onnxruntime",
            "library": "onnxruntime",
            "threads": options.intra_op_num_threads,
            "spinning": spinning == "1",
        }
    )


class Usage:
    """Wall time, CPU time (this process and its children) and peak memory since creation."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = self._cpu()

    @staticmethod
    def _cpu() -> float:
        own, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def figures(self) -> dict[str, float]:
        peak_kb = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        return {
            "wall_s": round(time.perf_counter() - self.wall0, 3),
            "cpu_s": round(self._cpu() - self.cpu0, 3),
            "peak_rss_mb": round(peak_kb / 1024, 1),
        }


def record(stage: str, usage: Usage, threads: int, report: Path = REPORT) -> None:
    """Add this stage's figures to ``reports/resources.json`` (locked, written atomically)."""
    import fcntl
    import json
    from datetime import UTC, datetime

    from edgeops import atomic

    entry = {
        **usage.figures(),
        "threads": threads,
        "thread_pools": thread_pools(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    report.parent.mkdir(parents=True, exist_ok=True)
    with open(report.with_name(".resources.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(report.read_text()) if report.exists() else {}
        except ValueError:
            data = {}  # a damaged record is replaced, it is evidence, not input
        data.setdefault("stages", {})[stage] = entry
        atomic.write_json(report, data)
