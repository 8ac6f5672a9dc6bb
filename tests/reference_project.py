"""This repository's top level is the reference project: what ``edgeops init --example plant``
makes, apart from the files named in :data:`PRODUCT_OWN` (test_reference_project.py keeps the
two equal). After changing the template, write the rendered files here with

    .venv/bin/python -m tests.reference_project
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Files the template makes that the product repository keeps its own way, and why:
PRODUCT_OWN = {
    # the product's README and packaging, not a project's
    "README.md": "the product's README (a project gets a short one of its own)",
    "pyproject.toml": "the product's packaging (a project's pins edgeops)",
    # the project's lines, then the product's own (venvs of benchmarks, build output, ...)
    ".gitignore": "the project's lines first, then the product repository's own",
    # the same stages, plus source deps so that developing a stage re-runs it here
    "dvc.yaml": "the project's dvc.yaml plus `- src/edgeops/...` deps",
}


def reference_files() -> dict[Path, bytes]:
    """What ``edgeops init --example plant`` writes, by path (the record in .edgeops/ too)."""
    import edgeops
    from edgeops.project.template import Answers, render, with_record

    answers = Answers.make("plant", None, "simulator", "plant", 8710)
    return with_record(answers, edgeops.__version__, render(answers, edgeops.__version__))


def strip_source_deps(dvc_yaml: str) -> str:
    """The repository's dvc.yaml without its source deps: the project's."""
    return "\n".join(
        line for line in dvc_yaml.split("\n") if not line.strip().startswith("- src/edgeops/")
    )


def write() -> list[str]:
    """Write the rendered files to the top level (all but PRODUCT_OWN); return what changed."""
    from edgeops.project.files import write_files

    changed = {
        p: d
        for p, d in reference_files().items()
        if str(p) not in PRODUCT_OWN and (not (REPO / p).is_file() or (REPO / p).read_bytes() != d)
    }
    write_files(REPO, changed)
    return sorted(map(str, changed))


if __name__ == "__main__":
    for name in write() or ["nothing changed"]:
        print(name)
