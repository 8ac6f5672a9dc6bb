"""A real orchestration stack for integration tests: a workspace copy, ``edgeops up`` (Prefect
server + process workers on a free loopback port, Prefect home inside the copy), the REST API."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.agent_process import free_port, http
from tests.conftest import BIN, init_project, tool_env

EDGEOPS = str(BIN / "edgeops")
DVC = str(BIN / "dvc")
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")  # a run's state types that end it


def set_params(repo: Path, **changes: Any) -> None:
    """Change params.yaml: keys are dotted paths."""
    set_params_file(repo / "params.yaml", changes)


def set_params_file(path: Path, changes: dict[str, Any]) -> None:
    """Change a params file: keys are dotted paths."""
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def ran_stages(output: str) -> list[str]:
    """The stages ``dvc repro`` ran, from its output, in order."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def sh(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def pause_hourly_monitoring(repo: Path) -> None:
    """The copy's hourly ``monitoring`` schedule is applied inactive: at minute 0 it would start a
    run of its own in the middle of a test (extra processes, collected rows, a retrain). The tests
    start monitoring runs themselves; the weekly training schedule stays active."""
    path = repo / "prefect.yaml"
    config = yaml.safe_load(path.read_text())
    for dep in config["deployments"]:
        if dep["entrypoint"].startswith("flows/monitoring.py"):
            for schedule in dep.get("schedules") or []:
                schedule["active"] = False
    path.write_text(yaml.safe_dump(config, sort_keys=False))


class Stack:
    """A workspace (git + DVC, 6,000 demo rows, its own DVC remote) and its Prefect stack."""

    def __init__(self, root: Path, *init_args: str, **params: Any) -> None:
        self.root = root
        self.repo = init_project(root / "workspace", *init_args)
        self.port = free_port()
        self.remote = root / "dvc-remote"
        self.env = tool_env() | {"PREFECT_WORKER_QUERY_SECONDS": "2"}  # faster pick-up in tests
        set_params(
            self.repo,
            **{
                "ingest.simulator.rows": 6000,
                "orchestration.port": self.port,
                "orchestration.work_pool": f"edgeops-test-{self.port}",
                "deploy.watch_seconds": 0.5,
                **params,
            },
        )
        sh([DVC, "remote", "add", "-f", "-d", "localstore", str(self.remote)], self.repo)
        pause_hourly_monitoring(self.repo)
        sh(["git", "commit", "-qam", "test workspace"], self.repo)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def home(self) -> Path:
        return self.repo / ".prefect"

    def edgeops(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        return sh([EDGEOPS, *args], self.repo, env=env or self.env, check=check, timeout=timeout)

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.edgeops("up", *args, timeout=300)

    def down(self) -> None:
        self.edgeops("down", check=False, timeout=120)

    def api(
        self, method: str, path: str, body: Any = None, auth: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        auth = auth if auth is not None else self.env.get("PREFECT_API_AUTH_STRING")
        if auth:
            import base64

            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        data = None if body is None else json.dumps(body).encode()
        # Retried as Prefect's own client retries: a 503 (the server's "retry me", SQLite busy
        # under load) always, and for a read, a reply that does not come within the client's
        # default 60 s (on two busy cores a CI run once saw a read wait out a 30 s timeout).
        # A write that times out is not retried: it may have been carried out.
        read = method == "GET" or path.endswith("/filter")
        for delay in (0.5, 1, 2, 4, 8, 0):
            try:
                status, raw = http(self.api_url, method, path, data, headers, timeout=60)
            except (TimeoutError, ConnectionResetError) as exc:
                if not read or not delay:
                    raise AssertionError(f"{method} {path}: {exc!r}\n{self.server_log()}") from exc
                status, raw = 503, b""
            if status != 503 or not delay:
                break
            time.sleep(delay)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def server_log(self, chars: int = 3000) -> str:
        """The end of the Prefect server's log, for a failure's message."""
        path = self.home / "logs/server.log"
        tail = path.read_text(errors="replace")[-chars:] if path.exists() else "(no server log)"
        return f"the end of {path}:\n{tail}"

    def deployment(self) -> dict[str, Any]:
        status, dep = self.api("GET", "/deployments/name/training/plant")
        assert status == 200, dep
        return dep

    def flow_runs(self) -> list[dict[str, Any]]:
        status, runs = self.api("POST", "/flow_runs/filter", {"sort": "EXPECTED_START_TIME_ASC"})
        assert status == 200, runs
        return runs

    def flow_run(self, name_or_id: str) -> dict[str, Any]:
        return next(r for r in self.flow_runs() if name_or_id in (r["name"], r["id"]))

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
        status, runs = self.api("POST", "/task_runs/filter", body)
        assert status == 200, runs
        return runs

    def finished_task_runs(self, flow_run_id: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The task runs of a flow run that has ended, once the server has recorded them all.

        Prefect records task runs from the events the run sends, after the run's own final state
        (which is set through the API): under load a read can come first and see a task run
        missing, or with no state or end time yet. Waits until every task run has ended and two
        reads a second apart agree."""
        deadline = time.monotonic() + timeout
        before: set[tuple[str, str, str]] | None = None
        while True:
            runs = self.task_runs(flow_run_id)
            seen = {(t["id"], (t.get("state") or {}).get("type"), t.get("end_time")) for t in runs}
            ended = all(state in FINAL and end for _, state, end in seen)
            if ended and seen == before:
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"the task runs of {flow_run_id} did not settle: {runs}")
            before = seen if ended else None
            time.sleep(1)

    def wait_final(self, flow_run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, run = self.api("GET", f"/flow_runs/{flow_run_id}")
            if run["state"]["type"] in FINAL:
                return run
            time.sleep(1)
        raise AssertionError(
            f"flow run {flow_run_id} did not finish in {timeout} s: {run['state']}"
        )

    def processes(self) -> list[str]:
        """Command lines of live processes whose environment names this stack's Prefect home."""
        found = []
        marker = f"PREFECT_HOME={self.home}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    stat = (proc / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie has exited already
                        found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (read from /proc)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and every descendant at once (what systemd does to a unit's cgroup): the
    flow run's process is in a session of its own, so a process-group kill would miss it."""
    tree = process_tree(pid)
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return tree


def flow_run_pids(run_id: str) -> list[int]:
    """The processes running the flow run ``run_id`` (Prefect puts its id in their environment)."""
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
    return found


def runs_of(st: Stack, flow_name: str) -> list[dict[str, Any]]:
    status, flows = st.api("POST", "/flows/filter", {"flows": {"name": {"any_": [flow_name]}}})
    ids = [f["id"] for f in flows]
    return [r for r in st.flow_runs() if r["flow_id"] in ids and r["state_type"] != "SCHEDULED"]


def audit(st: Stack) -> list[dict[str, Any]]:
    path = st.repo / "deploy/audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_state(st: Stack, run_id: str, state: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = st.api("GET", f"/flow_runs/{run_id}")[1]
        if run["state"]["type"] == state:
            return run
        assert run["state"]["type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), run[
            "state"
        ]
        time.sleep(1)
    raise AssertionError(f"run {run_id} never reached {state}")


def resume(stack: Stack, run_id: str, answer: dict[str, Any]) -> None:
    """Answer the pause through the API; retried on 503 (the server's SQLite busy under load), as
    Prefect's own client retries it."""
    deadline = time.monotonic() + 60
    while True:
        code, body = stack.api("POST", f"/flow_runs/{run_id}/resume", {"run_input": answer})
        if code != 503 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert code in (200, 201), body
