"""Projects: `edgeops init` makes one from the template in the package, the repository's top
level is the reference project it makes, and `edgeops upgrade` keeps a company's edits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, tool_env
from tests.project_fixture import project_v1
from tests.reference_project import PRODUCT_OWN, reference_files, strip_source_deps

EDGEOPS = str(BIN / "edgeops")


def edgeops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGEOPS, *args], cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=120
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root but git's own, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


# -- the reference project ---------------------------------------------------------------------


def test_the_top_level_is_what_init_example_plant_makes() -> None:
    for rel, data in reference_files().items():
        name = str(rel)
        ours = (REPO / rel).read_bytes()
        if name == ".gitignore":
            assert ours.startswith(data), ".gitignore: the project's lines must come first"
        elif name == "dvc.yaml":
            assert strip_source_deps(ours.decode()) == data.decode(), (
                "dvc.yaml differs from the template's beyond its source deps: "
                "python -m tests.reference_project"
            )
        elif name not in PRODUCT_OWN:
            assert ours == data, (
                f"{name} differs from the template's: python -m tests.reference_project"
            )


def test_the_reference_projects_folders_hold_only_what_the_template_makes() -> None:
    made = {str(p) for p in reference_files()}
    for folder in ("flows", "deploy", ".edgeops", ".dvc/plots"):
        tracked = subprocess.run(
            ["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
        assert set(tracked) <= made, f"{folder}: not made by the template: {set(tracked) - made}"


def test_the_repositorys_dvc_yaml_only_adds_source_deps_to_existing_stages() -> None:
    ours = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in ours.items():
        extra = [d for d in stage["deps"] if d.startswith("src/edgeops/")]
        assert extra, f"{name}: developing its code here should re-run it"
        assert Path(REPO / f"src/edgeops/stages/{name}.py") in [REPO / d for d in extra]


# -- edgeops init ------------------------------------------------------------------------------


def test_init_makes_a_committed_git_and_dvc_project_without_product_code(tmp_path: Path) -> None:
    proc = edgeops("init", "scrap", "--model", "scrap-rate", "--source", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "scrap"
    files = tree(root)
    for must in (
        "params.yaml",
        "dvc.yaml",
        "prefect.yaml",
        "flows/training.py",
        "flows/monitoring.py",
        "deploy/targets.yaml",
        "pyproject.toml",
        "README.md",
        ".gitignore",
        ".dvcignore",
        ".dvc/config",
        ".edgeops/project.yaml",
    ):
        assert must in files, must
    assert not [f for f in files if f.startswith(("src/", "tests/", "bench/"))]
    assert not [f for f in files if f.endswith(".py") and not f.startswith("flows/")]
    params = yaml.safe_load(files["params.yaml"])
    assert params["project"]["name"] == "scrap"
    assert params["bundle"]["model_name"] == "scrap-rate"
    assert params["ingest"]["source"] == "csv"
    assert params["validate"]["schema"]["columns"] == []
    targets = yaml.safe_load(files["deploy/targets.yaml"])["targets"]
    assert [t["name"] for t in targets] == ["scrap-local"]
    assert "edgeops[pipeline]==" in files["pyproject.toml"].decode()
    log = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True)
    assert log.stdout.startswith("edgeops init: project scrap")
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
    )
    assert status.stdout == ""
    assert b"analytics = false" in files[".dvc/config"]
    assert "training/scrap" in files["README.md"].decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "excel"], "unknown source 'excel'"),
        (["--example", "bakery"], "unknown example 'bakery'"),
        (["--name", "Scrap Rate"], "project name 'Scrap Rate' is not usable"),
        (["--model", "a/b"], "model name 'a/b' is not usable"),
        (["--agent-port", "70000"], "not a port"),
    ],
)
def test_init_refuses_bad_answers_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = edgeops("init", "p", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "fix:" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_into_a_folder_with_files_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    proc = edgeops("init", "p", cwd=tmp_path)
    assert proc.returncode == 2
    assert "is not empty" in proc.stderr and "edgeops upgrade" in proc.stderr
    assert tree(tmp_path) == {"p/notes.txt": b"mine"}


def test_init_into_an_empty_folder_and_a_unicode_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert edgeops("init", "empty", cwd=tmp_path).returncode == 0
    assert (tmp_path / "empty" / "params.yaml").is_file()
    proc = edgeops("init", "Zürich Presswerk", "--name", "presswerk", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((tmp_path / "Zürich Presswerk/params.yaml").read_text())["project"] == {
        "name": "presswerk"
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


# -- edgeops upgrade ---------------------------------------------------------------------------


def test_upgrade_keeps_the_companys_edits_and_brings_the_templates_changes(tmp_path: Path) -> None:
    root = project_v1(tmp_path / "scrap")
    proc = edgeops("upgrade", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "from template 1 (edgeops 0.1.0) to template 2" in proc.stderr
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["ingest"]["simulator"]["rows"] == 4000  # the company's
    assert params["monitor"]["drift"]["num_threshold"] == 0.2
    air = next(c for c in params["validate"]["schema"]["columns"] if c["name"] == "air_temp_k")
    assert air["max"] == 325.0
    assert "the company's deployment repository" in (root / "params.yaml").read_text()  # template
    targets = yaml.safe_load((root / "deploy/targets.yaml").read_text())["targets"]
    assert [t["name"] for t in targets] == ["scrap-local", "line-7"]
    assert targets[0]["token_file"] == "scrap-local-deploy.token"  # the template's change
    assert targets[1]["token_env"] == "EDGEOPS_LINE7_DEPLOY_TOKEN"  # the company's target
    prefect = yaml.safe_load((root / "prefect.yaml").read_text())
    training = next(d for d in prefect["deployments"] if "training" in d["entrypoint"])
    assert training["schedules"][0]["cron"] == "0 3 * * 6"  # the company's, merged
    assert training["work_pool"]["job_variables"]["env"]["EDGEOPS_PROJECT"] == (
        "{{ $EDGEOPS_PROJECT }}"
    )  # the template's, merged
    assert (root / "deploy/README.md").is_file()  # new in template 2

    assert "merged with your edits: deploy/targets.yaml, params.yaml, prefect.yaml" in proc.stderr
    assert "stages whose version changed (dvc repro re-runs them and what follows): none" in (
        proc.stderr
    )
    record = yaml.safe_load((root / ".edgeops/project.yaml").read_text())
    assert record["template_version"] == 2
    # a second upgrade has nothing left to do
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "upgrade"], cwd=root, check=True, env=tool_env())
    again = edgeops("upgrade", cwd=root)
    assert again.returncode == 0 and "updated" not in again.stderr and "merged" not in again.stderr


def test_upgrade_refuses_uncommitted_changes_and_changes_nothing(tmp_path: Path) -> None:
    root = project_v1(tmp_path / "scrap")
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "# draft\n")
    before = tree(root)
    proc = edgeops("upgrade", cwd=root)
    assert proc.returncode == 2
    assert "uncommitted changes (params.yaml)" in proc.stderr and "git stash" in proc.stderr
    assert tree(root) == before


def test_upgrade_with_overlapping_edits_changes_nothing_unless_markers_are_asked_for(
    tmp_path: Path,
) -> None:
    root = project_v1(tmp_path / "scrap")
    path = root / "params.yaml"
    path.write_text(path.read_text().replace("Set true in your deployment", "We keep it off in"))
    subprocess.run(["git", "commit", "-qam", "our comment"], cwd=root, check=True, env=tool_env())
    before = tree(root)
    proc = edgeops("upgrade", cwd=root)
    assert proc.returncode == 2
    assert (
        "overlap in params.yaml (1 place)" in proc.stderr and "nothing was changed" in proc.stderr
    )
    assert "--conflict-markers" in proc.stderr
    assert tree(root) == before
    marked = edgeops("upgrade", "--conflict-markers", cwd=root)
    assert marked.returncode == 0, marked.stderr
    text = path.read_text()
    assert "<<<<<<< this project" in text and ">>>>>>> template 2" in text
    assert "CONFLICTS to resolve: params.yaml" in marked.stderr


def test_upgrade_outside_a_project_says_how_to_make_one(tmp_path: Path) -> None:
    proc = edgeops("upgrade", cwd=tmp_path)
    assert proc.returncode == 2
    assert "was not made by `edgeops init`" in proc.stderr and "edgeops init DIR" in proc.stderr


def test_a_stage_refuses_a_project_recorded_with_another_stage_version(tmp_path: Path) -> None:
    root = project_v1(tmp_path / "scrap")
    record = root / ".edgeops/project.yaml"
    record.write_text(record.read_text().replace("  train: 1", "  train: 0"))
    proc = subprocess.run(
        [EDGEOPS, "stage", "train"], cwd=root, env=tool_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "records train version 0" in proc.stderr and "edgeops upgrade" in proc.stderr


def test_schema_apply_keeps_the_model_name_init_gave(tmp_path: Path) -> None:
    from edgeops.sources.simulator import simulate

    assert (
        edgeops(
            "init", "scrap", "--source", "csv", "--model", "scrap-rate", cwd=tmp_path
        ).returncode
        == 0
    )
    root = tmp_path / "scrap"
    simulate(rows=300, seed=1).to_csv(root / "data/external/line-2.csv", index=False)
    proc = edgeops("schema", "infer", "data/external", "--target", "failure", "--apply", cwd=root)
    assert proc.returncode == 0, proc.stderr
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["bundle"]["model_name"] == "scrap-rate"
    assert [c["name"] for c in params["validate"]["schema"]["columns"]][-1] == "failure"


# -- names on a shared server ------------------------------------------------------------------


def claim(tmp_path: Path, others: list) -> str | None:
    from edgeops.orchestration.settings import Orchestration

    here = tmp_path / "here"
    here.mkdir(exist_ok=True)
    s = Orchestration(workspace=here, home=here / ".prefect", project="scrap", model="scrap-rate")
    from edgeops.orchestration.projects import check_claim

    return check_claim(s, others)


def test_a_second_project_cannot_take_a_live_projects_name_or_model(tmp_path: Path) -> None:
    from edgeops.errors import EdgeopsError
    from edgeops.orchestration.projects import ServerProject

    live = tmp_path / "live"
    live.mkdir()
    (live / "params.yaml").write_text("project: {name: scrap}\n")
    with pytest.raises(EdgeopsError, match="project name 'scrap' is taken .* by the project in"):
        claim(tmp_path, [ServerProject("scrap", "other-model", live)])
    with pytest.raises(EdgeopsError, match="model name 'scrap-rate' is taken .* by project press"):
        claim(tmp_path, [ServerProject("press", "scrap-rate", live)])
    # its own deployments, and other names: nothing to say
    assert claim(tmp_path, [ServerProject("scrap", "scrap-rate", tmp_path / "here")]) is None
    assert claim(tmp_path, [ServerProject("energy", "energy", live)]) is None


def test_a_project_whose_folder_is_gone_is_taken_over_where_it_moved(tmp_path: Path) -> None:
    from edgeops.orchestration.projects import ServerProject

    gone = tmp_path / "old-place"
    note = claim(tmp_path, [ServerProject("scrap", "scrap-rate", gone)])
    assert note and "holds no project any more" in note and "now point here" in note
    # a gone project's model name is free again
    assert claim(tmp_path, [ServerProject("press", "scrap-rate", gone)]) is None


def test_upgrade_refuses_a_record_that_names_files_outside_the_project(tmp_path: Path) -> None:
    root = project_v1(tmp_path / "scrap")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    record = root / ".edgeops/project.yaml"
    import hashlib

    digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    record.write_text(record.read_text() + f"  ../victim.txt: {digest}\n")
    subprocess.run(["git", "commit", "-qam", "tampered"], cwd=root, check=True, env=tool_env())
    proc = edgeops("upgrade", cwd=root)
    assert proc.returncode == 2 and "names files outside the project" in proc.stderr
    assert victim.read_text() == "keep me\n"


# -- edgeops agent start: which target, and only on this machine --------------------------------


@pytest.mark.parametrize(
    ("targets", "args", "message"),
    [
        (
            "- {name: line-1, url: 'http://10.0.4.21:8710', token_file: t}",
            ["line-1"],
            "is at 10.0.4.21, not on this machine",
        ),
        (
            "- {name: a, url: 'http://127.0.0.1:8710', token_file: t}\n- {name: b, url: 'http://127.0.0.1:8711', token_file: t}",
            [],
            "2 targets on this machine",
        ),
        ("- {name: a, url: 'http://127.0.0.1:8710', token_file: t}", ["nope"], "no target 'nope'"),
    ],
)
def test_agent_start_names_a_target_it_cannot_start(
    tmp_path: Path, targets: str, args: list[str], message: str
) -> None:
    (tmp_path / "params.yaml").write_text("deploy: {targets: targets.yaml}\n")
    (tmp_path / "targets.yaml").write_text(
        "targets:\n" + "\n".join("  " + line for line in targets.splitlines()) + "\n"
    )
    proc = edgeops("agent", "start", *args, "--state-dir", str(tmp_path / "agent"), cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "fix:" in proc.stderr, proc.stderr
    assert not (tmp_path / "agent").exists()
