"""The project made by template 1 (tests/fixtures/project-template-1), written out as a git
repository, committed: what a company's project looks like before ``edgeops upgrade``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, tool_env

FIXTURE = REPO / "tests" / "fixtures" / "project-template-1"
TEMPLATE_PLOTS = REPO / "src" / "edgeops" / "templates" / "project" / "dot-dvc" / "plots"


def project_v1(dest: Path) -> Path:
    """The fixture as the project holds it, committed (as the company would have it)."""
    for src in sorted(FIXTURE.rglob("*.fixture")):
        parts = ["." + p[4:] if p.startswith("dot-") else p for p in src.relative_to(FIXTURE).parts]
        target = dest.joinpath(*parts[:-1], parts[-1].removesuffix(".fixture"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    (dest / ".dvc/plots/build-offline-html.sh").chmod(0o755)
    for name in ("offline.html", "LICENSE"):  # over 64 KB, unchanged between the templates
        shutil.copyfile(TEMPLATE_PLOTS / name, dest / ".dvc/plots" / name)
    env = tool_env()
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "v1"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
    return dest
