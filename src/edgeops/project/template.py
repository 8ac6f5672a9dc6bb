"""The project template: its answers, rendering, and the record a project keeps of it.

A template file ending in ``.jinja`` is rendered with the answers (Jinja2, strict: an unknown
name is an error); any other file is copied as it is. A path part ``dot-X`` becomes ``.X`` (a
``.gitignore`` inside the package would be read by the tools that build it).

A project records what it was made from in ``.edgeops/project.yaml`` (edgeops and template
versions, the answers, each stage's version, the sha256 of every rendered file) and keeps each
rendered file as it was rendered under ``.edgeops/base/`` (``<path>.orig``): the common ancestor
``edgeops upgrade`` merges the company's edits and the new template from, the way ``copier
update`` does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "project"
#: Bumped whenever a file of the template changes; a project records the one it was made from.
TEMPLATE_VERSION = 2
#: Where a project keeps its record, and the rendered files it was made from.
STATE_DIR = Path(".edgeops")
STATE_FILE = STATE_DIR / "project.yaml"
BASE_DIR = STATE_DIR / "base"
#: Base copies of files larger than this are not kept (the offline plots page): their hash is.
MAX_BASE_BYTES = 64 * 1024
SOURCES = ("simulator", "csv", "sql")
EXAMPLES = ("plant",)
#: What a project, model, target or site name may be: it names deployments, workers, the
#: workspace slot, tags and files.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def slug(text: str) -> str:
    """A name from free text (a folder's name): lower case, runs of anything else as '-'."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")


@dataclass(frozen=True)
class Answers:
    """What a project is made from: the questions ``edgeops init`` answers with its options."""

    name: str
    model: str
    source: str = "simulator"
    example: str | None = None
    agent_port: int = 8710
    target: str = ""
    site: str = "local"

    @classmethod
    def make(
        cls,
        name: str,
        model: str | None = None,
        source: str = "simulator",
        example: str | None = None,
        agent_port: int = 8710,
    ) -> Answers:
        """Answers from ``edgeops init``'s options, checked; ``--example plant`` is the demo."""
        if example is not None and example not in EXAMPLES:
            raise EdgeopsError(
                f"unknown example {example!r}", fix=f"use one of: {', '.join(EXAMPLES)}"
            )
        if source not in SOURCES:
            raise EdgeopsError(
                f"unknown source {source!r}",
                fix=f"use --source {' | '.join(SOURCES)} (csv: files in data/external; sql: a "
                "database URL in params.yaml)",
            )
        if example == "plant":
            answers = cls(
                name=name,
                model=model or "plant-failure",
                source="simulator",
                example="plant",
                agent_port=agent_port,
                target="demo-local",
                site="demo",
            )
        else:
            answers = cls(name, model or name, source, None, agent_port, f"{name}-local")
        answers.check()
        return answers

    def check(self) -> None:
        named = (
            ("project name", self.name),
            ("model name", self.model),
            ("target name", self.target or self.name),
            ("site", self.site),
        )
        for what, value in named:
            if not NAME.match(value):
                raise EdgeopsError(
                    f"{what} {value!r} is not usable",
                    fix="use 1 to 63 lower-case letters, digits, '-' or '_', starting with a "
                    "letter or digit (--name, --model)",
                )
        if not 1 <= self.agent_port <= 65535:
            raise EdgeopsError(f"agent port {self.agent_port} is not a port", fix="1..65535")


#: The answers a record may hold (an older template's extra ones are dropped when read).
FIELDS = tuple(Answers.__dataclass_fields__)


def project_path(template_rel: Path) -> Path:
    """A template file's path in the project: ``dot-X`` parts become ``.X``, ``.jinja`` goes."""
    parts = ["." + p[4:] if p.startswith("dot-") else p for p in template_rel.parts]
    parts[-1] = parts[-1].removesuffix(".jinja")
    return Path(*parts)


def _pad(value: Any, width: int) -> str:
    """Spaces that keep a trailing comment in its column after a value of any length."""
    return " " * max(1, width - len(str(value)))


def render(answers: Answers, edgeops_version: str) -> dict[Path, bytes]:
    """Every file of the project the template makes with ``answers``: path -> content."""
    import jinja2

    env = jinja2.Environment(
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False
    )
    context = {**asdict(answers), "edgeops_version": edgeops_version, "pad": _pad}
    files: dict[Path, bytes] = {}
    for path in sorted(TEMPLATE.rglob("*")):
        rel = path.relative_to(TEMPLATE)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        data = path.read_bytes()
        if path.name.endswith(".jinja"):
            data = env.from_string(data.decode()).render(context).encode()
        files[project_path(rel)] = data
    return files


def with_record(
    answers: Answers, edgeops_version: str, files: dict[Path, bytes]
) -> dict[Path, bytes]:
    """The rendered ``files`` plus the project's record of them: ``.edgeops/project.yaml`` and
    each file's base copy (the ancestor of the next upgrade's merge)."""
    out = dict(files)
    for rel, data in files.items():
        if len(data) <= MAX_BASE_BYTES:
            out[base_path(rel)] = data
    out[STATE_FILE] = state_yaml(answers, edgeops_version, files).encode()
    return out


def executable(rel: Path) -> bool:
    """Files the project must be able to run (the offline plots page's build script)."""
    return rel.suffix == ".sh"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_yaml(answers: Answers, edgeops_version: str, files: dict[Path, bytes]) -> str:
    """``.edgeops/project.yaml``: the record of what the project was made from."""
    import yaml

    from edgeops.stages import STAGE_VERSIONS

    record = {
        "edgeops_version": edgeops_version,
        "template_version": TEMPLATE_VERSION,
        "answers": asdict(answers),
        "stage_versions": dict(STAGE_VERSIONS),
        "files": {str(p): sha256(files[p]) for p in sorted(files)},
    }
    head = (
        "# What edgeops made this project from (edgeops init; edgeops upgrade updates it).\n"
        "# Do not edit: each stage depends on its stage_versions entry (dvc.yaml), and\n"
        "# edgeops upgrade merges from the files kept in .edgeops/base/.\n"
    )
    return head + yaml.safe_dump(record, sort_keys=False, allow_unicode=True)


def base_path(rel: Path) -> Path:
    """Where a project keeps a rendered file as it was rendered (no tool reads it there)."""
    parts = ["dot-" + p[1:] if p.startswith(".") else p for p in rel.parts]
    return BASE_DIR / Path(*parts[:-1], parts[-1] + ".orig")


@dataclass(frozen=True)
class ProjectState:
    """A project's ``.edgeops/project.yaml``, read."""

    edgeops_version: str
    template_version: int
    answers: Answers
    stage_versions: dict[str, int]
    files: dict[str, str]

    @classmethod
    def read(cls, root: Path) -> ProjectState:
        import yaml

        path = root / STATE_FILE
        if not path.is_file():
            raise EdgeopsError(
                f"{root} holds no {STATE_FILE}: it was not made by `edgeops init`",
                fix="make a project with `edgeops init DIR`, then move your params.yaml, "
                "deploy/targets.yaml and data into it",
            )
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            state = cls(
                edgeops_version=str(raw["edgeops_version"]),
                template_version=int(raw["template_version"]),
                answers=Answers(**{k: v for k, v in raw["answers"].items() if k in FIELDS}),
                stage_versions={str(k): int(v) for k, v in raw["stage_versions"].items()},
                files={str(k): str(v) for k, v in raw["files"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as exc:
            raise EdgeopsError(
                f"{path} is damaged ({type(exc).__name__}: {exc})",
                fix=f"restore it from git: git checkout -- {STATE_FILE}",
            ) from None
        state.answers.check()  # rendered into params.yaml and targets.yaml by the next upgrade
        if state.answers.source not in SOURCES:
            raise EdgeopsError(f"{path}: unknown source {state.answers.source!r}")
        outside = [f for f in state.files if Path(f).is_absolute() or ".." in Path(f).parts]
        if outside:  # upgrade writes and removes the files named here: only inside the project
            raise EdgeopsError(
                f"{path} names files outside the project: {', '.join(outside[:3])}",
                fix=f"restore it from git (git log -p -- {STATE_FILE} shows who changed it)",
            )
        return state
