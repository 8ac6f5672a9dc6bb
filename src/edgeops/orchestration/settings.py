"""The ``orchestration`` section of params.yaml, resolved into what the server, workers and CLI need.

Secrets never live in params.yaml: the basic-auth string comes from ``PREFECT_API_AUTH_STRING``
(Prefect's own client setting), a database password from the database URL in the environment.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError
from edgeops.offline import TELEMETRY_OFF
from edgeops.params import load_params
from edgeops.project.template import NAME, slug

#: The flows every project deploys; a deployment is ``<flow>/<project name>`` (one per project on
#: a shared server: ``training/plant``, ``training/scrap``, ...).
FLOWS = ("training", "monitoring")
#: How often a flow run tells the server it is alive (Prefect's minimum): a run whose process died
#: (worker killed, machine down) stops, and is marked Crashed after ``crashed_after_seconds``.
HEARTBEAT_SECONDS = 30


@dataclass(frozen=True)
class Orchestration:
    """Where the Prefect server listens, where its state lives, and the pool the flows run on."""

    workspace: Path
    home: Path
    project: str = "edgeops"
    model: str = "model"
    host: str = "127.0.0.1"
    port: int = 4200
    database_url: str | None = None
    work_pool: str = "edgeops-local"
    workers: int = 1
    max_lateness_hours: float = 6.0
    monitoring_max_lateness_minutes: float = 30.0
    crashed_after_seconds: float = 120.0
    lineage: dict[str, Any] | None = None

    @classmethod
    def load(cls, params_path: str | Path = "params.yaml") -> Orchestration:
        """Read params.yaml's ``orchestration`` section (every key optional)."""
        params_path = Path(params_path).resolve()
        params = load_params(params_path)
        cfg = params.get("orchestration") or {}
        if not isinstance(cfg, dict):
            raise EdgeopsError("params.yaml: 'orchestration' must be a mapping", fix="see README")
        workspace = params_path.parent
        home = Path(os.path.expanduser(str(cfg.get("home") or ".prefect")))
        try:
            return cls(
                workspace=workspace,
                home=home if home.is_absolute() else workspace / home,
                project=project_name(params, workspace),
                model=str((params.get("bundle") or {}).get("model_name") or "model"),
                host=str(cfg.get("host") or "127.0.0.1"),
                port=int(cfg.get("port") or 4200),
                database_url=cfg.get("database_url") or None,
                work_pool=str(cfg.get("work_pool") or "edgeops-local"),
                workers=int(cfg.get("workers", 1)),
                max_lateness_hours=float(cfg.get("max_lateness_hours", 6)),
                monitoring_max_lateness_minutes=float(
                    cfg.get("monitoring_max_lateness_minutes", 30)
                ),
                crashed_after_seconds=float(cfg.get("crashed_after_seconds", 120)),
                lineage=dict(cfg.get("lineage") or {}),
            )
        except (TypeError, ValueError) as exc:
            raise EdgeopsError(
                f"params.yaml: orchestration has a value of the wrong type: {exc}",
                fix="port and workers are whole numbers, max_lateness_hours and "
                "crashed_after_seconds numbers",
            ) from None

    def __post_init__(self) -> None:
        if self.crashed_after_seconds < 3 * HEARTBEAT_SECONDS:
            raise EdgeopsError(
                f"params.yaml: orchestration.crashed_after_seconds is {self.crashed_after_seconds:g}"
                f"; a run sends a heartbeat every {HEARTBEAT_SECONDS} s, so a healthy run would "
                "be marked Crashed",
                fix=f"set it to {3 * HEARTBEAT_SECONDS} or more (default 120)",
            )

    @property
    def api_url(self) -> str:
        """The URL clients use: ``PREFECT_API_URL`` if set, else the configured host and port."""
        if os.environ.get("PREFECT_API_URL"):
            return os.environ["PREFECT_API_URL"].rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def concurrency_limit(self) -> str:
        """The global concurrency limit that serializes DVC operations in this workspace."""
        return workspace_limit(self.workspace, self.project)

    def deployment(self, flow: str) -> str:
        """This project's deployment of ``flow`` (``training`` or ``monitoring``)."""
        return f"{flow}/{self.project}"

    def client_env(self) -> dict[str, str]:
        """Environment for anything that talks to the server (workers, flow runs, the CLI)."""
        env = dict(os.environ)
        env.update({k: v for k, v in TELEMETRY_OFF.items() if k not in os.environ})
        env["PREFECT_HOME"] = str(self.home)
        env["PREFECT_API_URL"] = self.api_url
        env["EDGEOPS_WORKSPACE"] = str(self.workspace)
        env["EDGEOPS_PROJECT"] = self.project
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_SECONDS)
        # DVC runs the stages as `edgeops stage NAME`: that edgeops must be this installation's
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("PREFECT_API_KEY", None)  # it would take precedence over the auth string: 401
        return env

    def server_env(self) -> dict[str, str]:
        """Environment of ``prefect server start``: database, auth, telemetry off."""
        env = self.client_env()
        env.pop("PREFECT_API_URL", None)
        # the server heartbeat is off even where the operator set it (DO_NOT_TRACK does not cover it)
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = TELEMETRY_OFF["PREFECT_SERVER_ANALYTICS_ENABLED"]
        # the UI reads host and port from these (not from the CLI flags): without them it asks
        # port 4200 for its data, which may be another server
        env["PREFECT_SERVER_API_HOST"], env["PREFECT_SERVER_API_PORT"] = self.host, str(self.port)
        # the v2 UI starts Amplitude in the browser (a request to an outside host on every load);
        # the v1 UI stays on this server
        env.setdefault("PREFECT_SERVER_UI_V2_ENABLED", "false")
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        elif not any(
            k in env
            for k in (
                "PREFECT_SERVER_DATABASE_CONNECTION_URL",
                "PREFECT_API_DATABASE_CONNECTION_URL",
            )
        ):
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = (
                f"sqlite+aiosqlite:///{self.home / 'prefect.db'}"
            )
        if env.get("PREFECT_API_AUTH_STRING"):
            env["PREFECT_SERVER_API_AUTH_STRING"] = env["PREFECT_API_AUTH_STRING"]
        return env

    def apply_client_env(self) -> None:
        """Point this process's Prefect client at the server (before prefect is imported)."""
        for key in ("PREFECT_HOME", "PREFECT_API_URL", "EDGEOPS_WORKSPACE", "EDGEOPS_PROJECT"):
            os.environ[key] = self.client_env()[key]
        os.environ.pop("PREFECT_API_KEY", None)


def workspace_limit(workspace: Path, project: str = "edgeops") -> str:
    """A concurrency-limit name unique to one workspace path (two checkouts do not block each
    other), led by the project's name so that the server's list says whose it is."""
    digest = hashlib.sha256(str(Path(workspace).resolve()).encode()).hexdigest()[:8]
    return f"edgeops-dvc-{project}-{digest}"


def project_name(params: dict[str, Any], workspace: Path) -> str:
    """params.yaml's ``project.name``; a project made before it had one: its folder's name."""
    section = params.get("project") or {}
    if not isinstance(section, dict):
        raise EdgeopsError(
            "params.yaml: 'project' must be a mapping (project: {name: ...})",
            fix="see the project README",
        )
    name = section.get("name")
    if name is None:
        name = slug(workspace.name) or "edgeops"
    name = str(name)
    if not NAME.match(name):
        raise EdgeopsError(
            f"params.yaml: project.name {name!r} is not a usable name",
            fix="use 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or "
            "digit (it names the project's Prefect deployments, e.g. training/<name>)",
        )
    return name
