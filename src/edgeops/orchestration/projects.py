"""The projects one Prefect server knows: read back from their deployments.

Every project deploys ``training/<project>`` and ``monitoring/<project>`` (prefect.yaml), tagged
``edgeops``, ``project:<name>`` and ``model:<model name>``, with its folder in the deployment's
job variables (``EDGEOPS_WORKSPACE``). From those, :func:`known_projects` lists the projects,
:func:`check_claim` keeps a second project from taking over a first one's names, and
``edgeops doctor`` shows them all and flags one whose folder is gone.

Import this module only after :meth:`Orchestration.apply_client_env`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError
from edgeops.orchestration.settings import Orchestration

TAG = "edgeops"


@dataclass
class ServerProject:
    """One project as the server knows it."""

    name: str
    model: str | None = None
    folder: Path | None = None
    deployments: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)

    @property
    def folder_gone(self) -> bool:
        """Its folder no longer holds a project (moved or deleted) while its deployments remain."""
        return self.folder is None or not (self.folder / "params.yaml").is_file()


def _tag(tags: list[str], key: str) -> str | None:
    for tag in tags:
        if tag.startswith(f"{key}:"):
            return tag.split(":", 1)[1]
    return None


def _folder(deployment: Any) -> Path | None:
    env = (deployment.job_variables or {}).get("env") or {}
    folder = env.get("EDGEOPS_WORKSPACE")
    return Path(folder) if folder else None


def known_projects() -> list[ServerProject]:
    """Every project with deployments on the server, by name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    found: dict[str, ServerProject] = {}
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG]))
        )
        flows = {f.id: f.name for f in client.read_flows()}
    for d in deployments:
        name = _tag(d.tags, "project")
        if name is None:
            continue  # made before projects had names: not a project's
        p = found.setdefault(name, ServerProject(name))
        p.model = p.model or _tag(d.tags, "model")
        p.folder = p.folder or _folder(d)
        flow = flows.get(d.flow_id, "?")
        p.deployments.append(f"{flow}/{d.name}")
        crons = [getattr(x.schedule, "cron", None) for x in d.schedules if x.active]
        p.schedules += [f"{flow} {c}" for c in crons if c]
    return sorted(found.values(), key=lambda p: p.name)


def check_claim(s: Orchestration, projects: list[ServerProject]) -> str | None:
    """Refuse names another live project holds; a project whose folder is gone may be taken over
    (it was moved here). Returns a line to log when that happens."""
    here = s.workspace.resolve()
    note = None
    for p in projects:
        elsewhere = p.folder is not None and p.folder.resolve() != here
        if not elsewhere:
            continue
        if p.name == s.project:
            if p.folder_gone:
                note = (
                    f"project {p.name}: its deployments pointed at {p.folder}, which holds no "
                    f"project any more; they now point here ({here})"
                )
                continue
            raise EdgeopsError(
                f"the project name {s.project!r} is taken on this server by the project in "
                f"{p.folder}; applying this one would re-point its deployments and schedules here",
                fix="give this project its own name: project.name in params.yaml "
                "(it names training/<name> and monitoring/<name>)",
            )
        if p.model == s.model and not p.folder_gone:
            raise EdgeopsError(
                f"the model name {s.model!r} is taken on this server by project {p.name} "
                f"({p.folder}); two projects would write one model's versions and tags",
                fix="give this project's model its own name: bundle.model_name in params.yaml",
            )
    return note
