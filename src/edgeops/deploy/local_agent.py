"""``edgeops agent start|stop``: a project's agent on this machine, from deploy/targets.yaml.

The agent's address is the target's ``url`` (the one place its port is set). Its tokens live in
the key directory (``$EDGEOPS_KEY_DIR`` or ``~/.config/edgeops/keys``), one file per kind,
``<target>-deploy.token``, ``-predict.token`` and ``-feedback.token``, made (random, 0600) on
first start; the target names its deploy token as ``token_file: <target>-deploy.token`` (a
relative token file is found in the key directory). The agent runs detached, its state, log and
pid file in ``--state-dir`` (default ``data/agent``). On a device the agent runs as a systemd
unit instead (``edgeops examples edgeops-agent.service``).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.orchestration import processes

TOKEN_KINDS = ("deploy", "predict", "feedback")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
Log = Callable[[str], None]


@dataclass(frozen=True)
class LocalAgent:
    """A target of the project whose agent runs on this machine."""

    name: str
    url: str
    state_dir: Path
    key_dir: Path

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "agent.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "agent.log"

    def token_file(self, kind: str) -> Path:
        return self.key_dir / f"{self.name}-{kind}.token"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False


def local_agent(targets_file: Path, name: str | None, state_dir: Path) -> LocalAgent:
    """The named target (default: the only one on loopback), checked to be on this machine."""
    from edgeops.deploy.targets import load_targets
    from edgeops.keys import default_key_dir

    targets = load_targets(targets_file).targets
    if name is None:
        local = [t for t in targets if urlsplit(t.url).hostname in LOOPBACK]
        if len(local) != 1:
            names = ", ".join(t.name for t in local) or "none"
            raise EdgeopsError(
                f"{targets_file}: {len(local)} targets on this machine (loopback: {names})",
                fix="name the target: edgeops agent start TARGET",
            )
        target = local[0]
    else:
        found = [t for t in targets if t.name == name]
        if not found:
            raise EdgeopsError(
                f"no target {name!r} in {targets_file}",
                fix=f"one of: {', '.join(t.name for t in targets)}",
            )
        target = found[0]
    host = urlsplit(target.url).hostname
    if host not in LOOPBACK:
        raise EdgeopsError(
            f"target {target.name} is at {host}, not on this machine",
            fix="start its agent there, as a systemd unit (edgeops examples edgeops-agent.service)",
        )
    return LocalAgent(target.name, target.url.rstrip("/"), state_dir, default_key_dir())


def start(agent: LocalAgent, log: Log = print, timeout: float = 30.0) -> int:
    """Start the agent unless it answers already; its tokens made on first use. The pid."""
    running = processes.running_pid(agent.pidfile, "edge serve")
    if agent.healthy():
        if running:
            log(f"agent {agent.name}: already running at {agent.url} (pid {running})")
            return running
        raise EdgeopsError(
            f"an agent that {agent.state_dir} did not start answers at {agent.url} (another "
            f"project's, or one started by hand): {agent.name} cannot share it",
            fix=f"give target {agent.name} a port of its own in deploy/targets.yaml, or pass the "
            "--state-dir of the agent you mean",
        )
    public_key = agent.key_dir / "signing.pub"
    if not public_key.is_file():
        raise EdgeopsError(
            f"no public key at {public_key}: the agent verifies bundles with it",
            fix="edgeops keys init",
        )
    if processes.port_open("127.0.0.1", agent.port):
        raise EdgeopsError(
            f"port {agent.port} is in use by another program (no edgeops agent answers there)",
            fix=f"stop that program, or give target {agent.name} another port in deploy/targets.yaml",
        )
    old = os.umask(0o077)  # the tokens, the state and the log are the owner's only
    try:
        for kind in TOKEN_KINDS:
            path = agent.token_file(kind)
            if not path.is_file() or not path.read_text().strip():
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_text(path, secrets.token_hex(32) + "\n")
                os.chmod(path, 0o600)
        atomic.private_dir(agent.state_dir)
        cmd = [
            str(Path(sys.executable).parent / "edgeops"),
            "edge",
            "serve",
            "--state-dir",
            str(agent.state_dir),
            "--public-key",
            str(public_key),
            "--host",
            "127.0.0.1",
            "--port",
            str(agent.port),
            *(a for k in TOKEN_KINDS for a in (f"--{k}-token-file", str(agent.token_file(k)))),
        ]
        from edgeops.offline import TELEMETRY_OFF

        env = {**os.environ, **{k: v for k, v in TELEMETRY_OFF.items() if k not in os.environ}}
        proc = processes.start(cmd, env, Path.cwd(), agent.log_path, agent.pidfile)
    finally:
        os.umask(old)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.healthy():
            log(
                f"agent {agent.name}: started at {agent.url} (pid {proc.pid}, log {agent.log_path})"
            )
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    processes.stop(agent.pidfile, "edge serve")
    raise EdgeopsError(
        f"the agent of {agent.name} did not come up at {agent.url}; the end of its log:\n"
        + processes.tail(agent.log_path),
        fix=f"read {agent.log_path}",
    )


def stop(agent: LocalAgent, log: Log = print) -> int | None:
    """Stop the agent this command started (its pid file); nothing else."""
    pid = processes.stop(agent.pidfile, "edge serve")
    log(
        f"agent {agent.name}: stopped (pid {pid})"
        if pid
        else f"agent {agent.name}: not running (no pid file of ours)"
    )
    return pid
