"""``edgeops up`` / ``edgeops down``: the self-hosted Prefect server, the work pool, the
deployments of ``prefect.yaml`` and local process workers, all idempotent.

State lives under the Prefect home (``orchestration.home``, default ``.prefect/`` in the
workspace): ``prefect.db`` (SQLite, unless a database URL is configured), ``logs/server.log``,
``logs/worker-N.log``, and pid files in ``run/``. ``down`` stops only what those pid files name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.orchestration import processes
from edgeops.orchestration.settings import Orchestration

PREFECT = str(Path(sys.executable).parent / "prefect")
Log = Callable[[str], None]


def _server_pidfile(s: Orchestration) -> Path:
    return s.run_dir / "server.pid"


def _worker_pidfile(s: Orchestration, i: int) -> Path:
    return s.run_dir / f"worker-{i}.pid"


def worker_name(project: str, i: int) -> str:
    """A worker's name: the project that started it, the host, its number (unique on a server)."""
    return f"{project}-{socket.gethostname()}-{i}"


def _becomes_healthy(s: Orchestration, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if processes.healthy(s.api_url):
            return True
        time.sleep(0.5)
    return False


def start_server(s: Orchestration, log: Log, timeout: float = 180.0) -> None:
    """Start ``prefect server start`` unless ours runs; wait until /api/health answers."""
    pidfile = _server_pidfile(s)
    ours = processes.running_pid(pidfile, "prefect")
    if ours:  # started by an earlier `up` (perhaps still starting)
        if _becomes_healthy(s, timeout):
            log(f"server: already running at {s.ui_url} (pid {ours})")
            return
        raise EdgeopsError(
            f"the Prefect server (pid {ours}) runs but does not answer at {s.api_url}",
            fix=f"read {s.logs / 'server.log'}; `edgeops down` and `edgeops up` restart it",
        )
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    if processes.healthy(s.api_url) or (
        processes.port_open(host, s.port) and _becomes_healthy(s, 30)  # one still starting
    ):
        log(
            f"server: a Prefect server already answers at {s.ui_url}: using it (this "
            "project did not start it, so its edgeops down leaves it running)"
        )
        return
    if processes.port_open(host, s.port):
        raise EdgeopsError(
            f"port {s.port} on {host} is in use by another program (not a Prefect server)",
            fix="set orchestration.port in params.yaml to a free port, or stop that program",
        )
    env = s.server_env()
    db = (
        "PostgreSQL"
        if "postgresql"
        in env.get(
            "PREFECT_SERVER_DATABASE_CONNECTION_URL",
            env.get("PREFECT_API_DATABASE_CONNECTION_URL", ""),
        )
        else f"SQLite in {s.home / 'prefect.db'}"
    )
    log(f"server: starting on {s.host}:{s.port} ({db}; log {s.logs / 'server.log'})")
    s.home.mkdir(parents=True, exist_ok=True)
    cmd = [PREFECT, "server", "start", "--host", s.host, "--port", str(s.port)]
    proc = processes.start(cmd, env, s.workspace, s.logs / "server.log", pidfile)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if processes.healthy(s.api_url):
            log(f"server: healthy after {time.monotonic() - start:.1f} s (pid {proc.pid})")
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    processes.stop(pidfile, "prefect")
    raise EdgeopsError(
        f"the Prefect server did not become healthy in {timeout:.0f} s; the end of its log:\n"
        + processes.tail(s.logs / "server.log"),
        fix=f"read {s.logs / 'server.log'}; check the database URL and that port {s.port} is free",
    )


def apply_deployments(s: Orchestration, log: Log) -> None:
    """Work pool (type process), the workspace's concurrency limit, and prefect.yaml's deployments."""
    from edgeops.orchestration.client import (
        ensure_crash_automation,
        ensure_work_pool,
        prefect_errors,
    )
    from edgeops.orchestration.concurrency import ensure_limit
    from edgeops.orchestration.projects import check_claim, known_projects

    with prefect_errors(s):
        moved = check_claim(s, known_projects())  # before anything is changed on the server
        if moved:
            log(moved)
        created = ensure_work_pool(s.work_pool)
        log(f"work pool: {s.work_pool} (process) {'created' if created else 'exists'}")
        ensure_limit(s.concurrency_limit)
        done = ensure_crash_automation(s.crashed_after_seconds)
        log(
            f"automation: a run without heartbeat for {s.crashed_after_seconds:g} s is Crashed "
            f"({done})"
        )
    env = s.client_env() | {"EDGEOPS_WORK_POOL": s.work_pool, "EDGEOPS_MODEL": s.model}
    start = time.monotonic()
    proc = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all"],
        cwd=s.workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise EdgeopsError(
            "prefect deploy failed:\n" + (proc.stdout + proc.stderr).strip()[-2000:],
            fix="check prefect.yaml and that the project's flows import "
            "(python -c 'import edgeops.flows.training')",
        )
    log(
        f"deployments: {s.deployment('training')} and {s.deployment('monitoring')} applied "
        f"from prefect.yaml in {time.monotonic() - start:.1f} s"
    )


def start_workers(s: Orchestration, count: int, log: Log) -> None:
    """Start ``count`` local process workers on the pool (those already running are kept)."""
    env = s.client_env()
    for i in range(1, count + 1):
        pidfile = _worker_pidfile(s, i)
        if processes.running_pid(pidfile, "worker"):
            log(f"worker {i}: already running (pid {pidfile.read_text().strip()})")
            continue
        cmd = [
            PREFECT,
            "worker",
            "start",
            "--pool",
            s.work_pool,
            "--type",
            "process",
            "--name",
            worker_name(s.project, i),
            "--install-policy",
            "never",
        ]
        proc = processes.start(cmd, env, s.workspace, s.logs / f"worker-{i}.log", pidfile)
        log(
            f"worker {i}: started {worker_name(s.project, i)} on pool {s.work_pool} "
            f"(pid {proc.pid}, log {s.logs / f'worker-{i}.log'})"
        )


def wait_for_worker(s: Orchestration, log: Log, count: int = 1, timeout: float = 60.0) -> None:
    """Until this project's workers poll the pool (another project's on the pool do not count)."""
    from edgeops.orchestration.client import online_workers, prefect_errors

    ours = {worker_name(s.project, i) for i in range(1, count + 1)}
    start = time.monotonic()
    with prefect_errors(s):
        while time.monotonic() - start < timeout:
            online = online_workers(s.work_pool)
            if ours <= set(online):
                log(f"workers: {', '.join(online)} polling {s.work_pool}")
                return
            time.sleep(1)
    raise EdgeopsError(
        f"no worker came online on pool {s.work_pool} within {timeout:.0f} s",
        fix=f"read {s.logs}/worker-1.log",
    )


def up(s: Orchestration, workers: int | None = None, log: Log = print) -> None:
    """Server (or the one already running), pool, limit, deployments, workers. Idempotent.

    Everything it and what it starts write (the Prefect database with the approvers' names,
    logs, pid files) is the owner's only: umask 077, the home 0700 and its database 0600
    whatever modes they had."""
    os.umask(0o077)
    for d in (s.home, s.home / "logs", s.run_dir):
        atomic.private_dir(d)
    s.apply_client_env()
    start_server(s, log)
    database = s.home / "prefect.db"
    if database.exists():  # SQLite (the default): made by the server under this umask
        atomic.private_file(database)
    apply_deployments(s, log)
    count = s.workers if workers is None else workers
    if count > 0:
        start_workers(s, count, log)
        wait_for_worker(s, log, count)
    log(
        f"Prefect UI: {s.ui_url}  (project {s.project}; runs: edgeops run training; "
        "stop: edgeops down)"
    )


def other_users(s: Orchestration) -> list[str]:
    """The other projects (with their folders in place) whose deployments are on the server."""
    if not processes.healthy(s.api_url):
        return []
    s.apply_client_env()
    from edgeops.orchestration.client import prefect_errors
    from edgeops.orchestration.projects import known_projects

    try:
        with prefect_errors(s):
            projects = known_projects()
    except EdgeopsError:
        return []  # a server that does not answer the API serves nobody we could name
    return [p.name for p in projects if p.name != s.project and not p.folder_gone]


def down(s: Orchestration, log: Log = print, server: bool = False) -> list[str]:
    """Stop the workers and the server that ``up`` started (and nothing else). A server other
    projects use keeps running unless ``server``."""
    stopped = []
    for pidfile in sorted(s.run_dir.glob("worker-*.pid")):
        pid = processes.stop(pidfile, "worker")
        if pid:
            stopped.append(f"{pidfile.stem} (pid {pid})")
    ours = processes.running_pid(_server_pidfile(s), "prefect")
    users = other_users(s) if ours and not server else []
    if users:
        log(
            f"server: kept running (pid {ours}): projects {', '.join(users)} use it "
            "(edgeops down --server stops it anyway)"
        )
    pid = None if users else processes.stop(_server_pidfile(s), "prefect")
    if pid:
        stopped.append(f"server (pid {pid})")
    log(f"stopped: {', '.join(stopped)}" if stopped else "nothing of edgeops up was running")
    return stopped
