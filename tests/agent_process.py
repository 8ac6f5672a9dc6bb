"""A real edgeops agent in a subprocess on loopback, for integration tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgeops.offline import TELEMETRY_OFF

DEPLOY_TOKEN = "test-deploy-token-0123456789"
PREDICT_TOKEN = "test-predict-token-9876543210"
FEEDBACK_TOKEN = "test-feedback-token-5555555555"
EDGEOPS = str(Path(sys.executable).parent / "edgeops")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess:
    """``edgeops edge serve`` as a child process; ``start``, ``kill`` (SIGKILL), ``stop``."""

    def __init__(
        self,
        state_dir: Path,
        public_key: Path,
        config: dict[str, Any] | None = None,
        port: int | None = None,
    ) -> None:
        self.state_dir, self.public_key = Path(state_dir), Path(public_key)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.state_dir.parent / f"agent-{self.port}.log"

    def start(self, timeout: float = 30.0) -> AgentProcess:
        cfg_path = self.state_dir.parent / f"agent-{self.port}.yaml"
        cfg_path.write_text(json.dumps(self.config))  # JSON is YAML
        env = dict(
            os.environ,
            **TELEMETRY_OFF,
            EDGEOPS_DEPLOY_TOKEN=DEPLOY_TOKEN,
            EDGEOPS_PREDICT_TOKEN=PREDICT_TOKEN,
            EDGEOPS_FEEDBACK_TOKEN=FEEDBACK_TOKEN,
        )
        cmd = [
            EDGEOPS,
            "edge",
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--public-key",
            str(self.public_key),
            "--port",
            str(self.port),
            "--config",
            str(cfg_path),
        ]
        with open(self.log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"agent exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"agent did not start in {timeout} s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def http(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """One plain HTTP request (stdlib only): ``(status, body)``, 4xx/5xx included."""
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Agents:
    """Starts agents in a temporary directory (each with ``bundle`` deployed, if given) and stops
    every one of them at the end, printing the tail of its log (pytest shows it on failure).

    >>> agents = Agents(tmp_path, signing_keys / "signing.pub", bundle)
    >>> agent = agents.start({"idle_timeout_seconds": 2})
    """

    def __init__(self, root: Path, public_key: Path, bundle: Path | None = None) -> None:
        self.root, self.public_key, self.bundle = Path(root), Path(public_key), bundle
        self.started: list[AgentProcess] = []

    def start(self, config: dict[str, Any] | None = None) -> AgentProcess:
        agent = AgentProcess(
            self.root / f"state-{len(self.started)}", self.public_key, config or {}
        )
        self.started.append(agent)
        agent.start()
        if self.bundle is not None:
            from edgeops.edge.store import tar_bundle

            status, body = http(
                agent.url,
                "POST",
                "/v1/bundles",
                tar_bundle(self.bundle),
                {"Authorization": f"Bearer {DEPLOY_TOKEN}", "Content-Type": "application/gzip"},
                timeout=60,
            )
            assert status == 201, body
        return agent

    def stop_all(self) -> None:
        for agent in self.started:
            agent.stop()
            if agent.log_path.exists():  # shown by pytest only when the test failed
                print(f"--- agent log {agent.log_path} (tail) ---")
                print(agent.log_path.read_text(errors="replace")[-4000:])
