"""Projects, end to end: a project from the wheel alone, three projects on one Prefect server,
and an upgrade that `dvc repro` follows with exactly what the upgrade said.

1. A fresh venv with only the wheel built from this checkout (and the pinned libraries): `edgeops
   init failure` in an empty folder, `dvc repro`, an agent from that venv, a deploy, a prediction.
2. Three projects (the demo plant, a CSV project, an SQL project; three model names, three
   agents) on one `edgeops up` server and work pool: six deployments with their schedules, a
   training and a monitoring run of each, each touching only its own folder, registry and agent;
   the Prefect UI lists them all. A fourth project that takes a used name is refused; one whose
   folder is gone is flagged by `edgeops doctor`.
3. The template-1 fixture with a company's edits: `dvc repro`, `edgeops upgrade`, `dvc repro`
   re-runs nothing (the upgrade changed no stage's version and no param), `dvc status` clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.agent_process import free_port
from tests.conftest import REPO, init_project, tool_env
from tests.prefect_stack import (
    DVC,
    EDGEOPS,
    Stack,
    pause_hourly_monitoring,
    ran_stages,
    set_params,
    sh,
)
from tests.project_fixture import project_v1
from tests.uv_tools import must, run, uv_path

pytestmark = pytest.mark.integration


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file of a project, but the Prefect home (server and worker logs) and git."""
    skip = {".git", ".prefect"}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not skip & set(p.relative_to(root).parts)
    }


# ---- 1. from the wheel alone -----------------------------------------------------------------


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    return run([uv_path(), *args], timeout=900)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A venv holding the wheel of this checkout and the [pipeline] libraries pinned by uv.lock
    (from uv's cache when it has them, else the package index); nothing of the checkout."""
    tmp = tmp_path_factory.mktemp("wheel-install")
    venv = tmp / "venv"
    must(uv("venv", "--python", "3.11", str(venv)), "uv venv")
    pins = tmp / "pins.txt"
    pins.write_text(
        must(
            uv(
                "export",
                "--frozen",
                "--no-dev",
                "--extra",
                "pipeline",
                "--no-emit-project",
                "--no-hashes",
                "--format",
                "requirements-txt",
            ),
            "uv export",
        )
    )
    dist = tmp / "dist"
    must(uv("build", "--wheel", "--out-dir", str(dist), str(REPO)), "uv build --wheel")
    (wheel,) = dist.glob("edgeops-*.whl")
    python = str(venv / "bin/python")
    install = ["pip", "install", "--no-config", "--python", python, "-r", str(pins), str(wheel)]
    if uv(*install, "--offline").returncode != 0:
        must(uv(*install), "installing the wheel and its pins")
    return venv


def test_a_project_from_the_wheel_alone_trains_deploys_and_predicts(
    wheel_venv: Path, tmp_path: Path, signing_keys: Path
) -> None:
    bin_dir = wheel_venv / "bin"
    env = {k: v for k, v in tool_env().items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin:/bin"  # no checkout, no other venv

    def run(*args: str, cwd: Path) -> str:
        return sh(list(args), cwd, env=env).stdout

    where = json.loads(
        run(
            "python",
            "-c",
            "import edgeops, json; print(json.dumps([edgeops.__file__]))",
            cwd=tmp_path,
        )
    )[0]
    assert str(wheel_venv) in where and str(REPO) not in where
    (tmp_path / "work").mkdir()
    port = free_port()
    run("edgeops", "init", "failure", "--agent-port", str(port), cwd=tmp_path / "work")
    project = tmp_path / "work" / "failure"
    made = [str(p.relative_to(project)) for p in project.rglob("*") if ".git" not in p.parts]
    assert not [f for f in made if f.startswith(("src", "tests", "bench"))], made
    assert not [f for f in made if f.endswith(".py") and not f.startswith("flows/")], made
    run("dvc", "repro", cwd=project)
    manifest = json.loads((project / "models/bundle/manifest.json").read_text())
    assert manifest["model"]["name"] == "failure"
    assert "capacity" in run("edgeops", "capacity", "--rows", "1000000", cwd=project).lower()
    state = tmp_path / "agent"  # the agent of this venv, at the port init wrote to targets.yaml
    run("edgeops", "agent", "start", "--state-dir", str(state), cwd=project)
    try:
        run("edgeops", "deploy", "--all", "--reason", "first model", cwd=project)
        answer = json.loads(run("edgeops", "predict", "--target", "failure-local", cwd=project))
        assert answer["model_version"] == manifest["model"]["version"], answer
        assert answer["predictions"], answer
        cmdline = (
            Path("/proc") / (state / "agent.pid").read_text().strip() / "cmdline"
        ).read_bytes()
        assert str(bin_dir).encode() in cmdline  # the wheel's agent, not this checkout's
    finally:
        run("edgeops", "agent", "stop", "--state-dir", str(state), cwd=project)


# ---- 2. three projects, one server -----------------------------------------------------------

PROJECTS = {  # folder: (init args, model)
    "plant": (("--example", "plant"), "plant-failure"),
    "scrap": (("--name", "scrap", "--source", "csv", "--model", "scrap-rate"), "scrap-rate"),
    "energy": (
        ("--name", "energy", "--source", "sql", "--model", "energy-per-part"),
        "energy-per-part",
    ),
}


class Projects:
    def __init__(self, root: Path) -> None:
        from edgeops.sources.simulator import simulate

        self.root = root
        self.ports = {n: free_port() for n in PROJECTS}
        self.plant = Stack(
            root / "plant", *PROJECTS["plant"][0], "--agent-port", str(self.ports["plant"])
        )
        self.folders = {"plant": self.plant.repo}
        self.env = self.plant.env
        shared = {
            "orchestration.port": self.plant.port,
            "orchestration.work_pool": f"edgeops-test-{self.plant.port}",
            "deploy.watch_seconds": 0.5,
        }
        schema = yaml.safe_load((self.plant.repo / "params.yaml").read_text())["validate"]["schema"]
        for name in ("scrap", "energy"):
            args = (*PROJECTS[name][0], "--agent-port", str(self.ports[name]))
            repo = init_project(root / name / "workspace", *args)
            self.folders[name] = repo
            sh([DVC, "remote", "add", "-f", "-d", "localstore", str(root / name / "remote")], repo)
            rows = simulate(rows=4000, seed=11 if name == "scrap" else 12)
            if name == "scrap":  # a CSV drop, its contract proposed from it, as a user does
                rows.to_csv(repo / "data/external/line-2.csv", index=False)
                set_params(repo, **shared)
                sh(
                    [EDGEOPS, "schema", "infer", "data/external", "--target", "failure", "--apply"],
                    repo,
                )
            else:  # an SQL database; the contract is the plant's
                with sqlite3.connect(repo / "data/external/energy.db") as conn:
                    rows.to_sql("readings", conn, index=False)
                set_params(
                    repo,
                    **shared,
                    **{
                        "ingest.sql.url": "sqlite:///data/external/energy.db",
                        "ingest.sql.table": "readings",
                        "validate.schema": schema,
                    },
                )
            pause_hourly_monitoring(repo)
            sh(["git", "add", "-A"], repo)
            sh(["git", "commit", "-qm", "the project's data source and contract"], repo)

    def edgeops(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh([EDGEOPS, *args], self.folders[name], env=self.env, check=check, timeout=900)

    def agent(self, name: str, action: str) -> subprocess.CompletedProcess:
        """``edgeops agent start|stop``: the project's agent, its state outside every project."""
        state = str(self.root / f"agent-{name}")
        return self.edgeops(name, "agent", action, "--state-dir", state, check=action == "start")

    def close(self) -> None:
        for name in ("scrap", "energy", "plant"):  # plant's server last
            self.edgeops(name, "down", *(["--server"] if name == "plant" else []), check=False)
            self.agent(name, "stop")


@pytest.fixture(scope="module")
def projects(tmp_path_factory, signing_keys: Path) -> Iterator[Projects]:
    p = Projects(tmp_path_factory.mktemp("three-projects"))
    try:
        for name in ("plant", "scrap", "energy"):
            p.agent(name, "start")
            out = p.edgeops(name, "up")
            assert f"deployments: training/{name} and monitoring/{name} applied" in out.stderr
        yield p
    finally:
        p.close()


def test_three_projects_have_their_own_deployments_schedules_and_workers(
    projects: Projects,
) -> None:
    status, deployments = projects.plant.api("POST", "/deployments/filter", {})
    assert status == 200, deployments
    _, flows = projects.plant.api("POST", "/flows/filter", {})
    flow_names = {f["id"]: f["name"] for f in flows}
    found = {
        f"{flow_names[d['flow_id']]}/{d['name']}": d for d in deployments if "edgeops" in d["tags"]
    }
    assert set(found) == {f"{flow}/{n}" for flow in ("training", "monitoring") for n in PROJECTS}
    for name, folder in projects.folders.items():
        for flow in ("training", "monitoring"):
            d = found[f"{flow}/{name}"]
            assert d["job_variables"]["env"]["EDGEOPS_WORKSPACE"] == str(folder)
            assert f"model:{PROJECTS[name][1]}" in d["tags"]
            assert d["schedules"], f"{flow}/{name} has no schedule"
        training = found[f"training/{name}"]
        assert training["schedules"][0]["schedule"]["cron"] == "0 2 * * 0"
    _, workers = projects.plant.api(
        "POST", f"/work_pools/edgeops-test-{projects.plant.port}/workers/filter", {}
    )
    names = sorted(w["name"] for w in workers)
    assert len(names) == 3 and len({n.split("-")[0] for n in names}) == 3, names
    doctor = projects.edgeops("scrap", "doctor", check=False).stdout
    for name in PROJECTS:
        assert f"{name}" in doctor
    assert "scrap (this one)" in doctor


def test_each_projects_runs_touch_only_its_own_folder_registry_and_agent(
    projects: Projects,
) -> None:
    for name in ("scrap", "energy", "plant"):
        others = {n: snapshot(f) for n, f in projects.folders.items() if n != name}
        training = projects.edgeops(name, "run", "training", "--reason", f"{name} first model")
        assert "Completed" in training.stderr, training.stderr
        # typed in another project's folder, naming this one (as the server knows it)
        elsewhere = "plant" if name != "plant" else "scrap"
        monitoring = projects.edgeops(
            elsewhere, "run", "monitoring", "--no-retrain", "--project", name
        )
        assert "Completed" in monitoring.stderr, monitoring.stderr
        for other, before in others.items():
            assert snapshot(projects.folders[other]) == before, f"{name}'s runs changed {other}"
    for name, folder in projects.folders.items():
        model = PROJECTS[name][1]
        registry = json.loads((folder / "deploy/registry.json").read_text())
        assert set(registry["models"]) == {model}
        status = projects.edgeops(name, "status").stdout.splitlines()
        (row,) = status[1:]  # its one target: the version it runs is this project's model's
        active = row.split()[1]
        assert active in registry["models"][model]["versions"], (status, registry)
        assert (folder / "reports/monitoring/decision.json").is_file()
        _, runs = projects.plant.api(
            "POST", "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"project:{name}"]}}}
        )
        ran = [r["state"]["type"] for r in runs if r["state"]["type"] != "SCHEDULED"]
        assert ran == ["COMPLETED"] * 2, (name, runs)  # its training and monitoring runs


def test_the_prefect_ui_lists_every_projects_deployments(projects: Projects) -> None:
    from tests.browser import chromium_path, render

    assert chromium_path(), "Debian's chromium is needed (.ci/run installs it)"
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    ui = projects.plant.api_url.removesuffix("/api")
    text = render(
        f"{ui}/deployments",
        artifacts / "prefect-ui-three-projects.png",
        expect=[
            "6 Deployments",
            "project:plant",
            "project:scrap",
            "project:energy",
            "training",  # the flows' names under the deployments' (a request of their own)
            "monitoring",
        ],
    )
    assert text.count("training") >= 3 and text.count("monitoring") >= 3, text


def test_a_taken_project_name_is_refused_and_a_gone_folder_is_flagged(
    projects: Projects, tmp_path: Path
) -> None:
    shared = {
        "orchestration.port": projects.plant.port,
        "orchestration.work_pool": f"edgeops-test-{projects.plant.port}",
    }
    dup = init_project(tmp_path / "dup", "--name", "scrap", "--model", "scrap-copy")
    set_params(dup, **shared)
    proc = sh([EDGEOPS, "up", "--workers", "0"], dup, env=projects.env, check=False)
    assert proc.returncode == 2
    assert "project name 'scrap' is taken" in proc.stderr and "project.name" in proc.stderr
    status, d = projects.plant.api("GET", "/deployments/name/training/scrap")
    assert d["job_variables"]["env"]["EDGEOPS_WORKSPACE"] == str(projects.folders["scrap"])

    same_model = init_project(tmp_path / "same-model", "--name", "press", "--model", "scrap-rate")
    set_params(same_model, **shared)
    proc = sh([EDGEOPS, "up", "--workers", "0"], same_model, env=projects.env, check=False)
    assert proc.returncode == 2 and "model name 'scrap-rate' is taken" in proc.stderr

    ghost = init_project(tmp_path / "ghost", "--model", "ghost-model")
    set_params(ghost, **shared)
    sh([EDGEOPS, "up", "--workers", "0"], ghost, env=projects.env)
    shutil.rmtree(ghost)
    doctor = projects.edgeops("plant", "doctor", check=False).stdout
    line = next(x for x in doctor.splitlines() if "ghost" in x)
    assert "WARN" in line and "holds no project" in line, doctor
    assert "prefect deployment delete training/ghost" in doctor


def test_down_in_the_project_that_started_the_server_keeps_it_for_the_others(
    projects: Projects,
) -> None:
    out = projects.edgeops("plant", "down").stderr
    assert "server: kept running" in out and "scrap" in out and "energy" in out, out
    assert "--server" in out
    status, _ = projects.plant.api("GET", "/health")
    assert status == 200  # the other projects' schedules go on
    assert projects.edgeops("scrap", "doctor", check=False).returncode in (0, 1)


# ---- 3. upgrade, then dvc repro ----------------------------------------------------------------


def test_after_an_upgrade_dvc_repro_reruns_what_the_upgrade_said(tmp_path: Path) -> None:
    root = project_v1(tmp_path / "scrap")
    sh([DVC, "remote", "add", "-f", "-d", "localstore", str(tmp_path / "remote")], root)
    first = sh([DVC, "repro"], root)
    assert len(ran_stages(first.stdout)) == 7
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "first run"], root)
    upgraded = sh([EDGEOPS, "upgrade"], root)
    assert "stages whose version changed (dvc repro re-runs them and what follows): none" in (
        upgraded.stderr
    )
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "edgeops upgrade"], root)
    again = sh([DVC, "repro"], root)
    assert ran_stages(again.stdout) == [], again.stdout
    assert "Data and pipelines are up to date" in sh([DVC, "status"], root).stdout
