"""``edgeops doctor`` against a small real workspace: git, DVC config, sockets, a real agent.

No Prefect server is started here (the live-server run is an integration test): the workspace's
orchestration.port is a free loopback port, so the server checks see "nothing answers".
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgeops.cli import app
from edgeops.deploy.targets import Target
from edgeops.keys import PRIVATE_NAME, PUBLIC_NAME
from edgeops.offline import TELEMETRY_OFF
from edgeops.orchestration import doctor
from edgeops.orchestration.settings import Orchestration
from tests.agent_process import DEPLOY_TOKEN, AgentProcess, free_port
from tests.unit.conftest import REPO, subprocess_env

EDGEOPS = Path(sys.executable).parent / "edgeops"
TOKEN_ENV = "EDGEOPS_DOCTOR_TEST_TOKEN"
LINE = re.compile(r"^(OK  |WARN|FAIL) [a-z][\w -]*: \S.*$|^     fix: \S.*$")


def write_dvc_config(ws: Path, remote_url: str | None, analytics: bool = False) -> None:
    text = f"[core]\n    analytics = {str(analytics).lower()}\n"
    if remote_url is not None:
        text += f"    remote = store\n['remote \"store\"']\n    url = {remote_url}\n"
    (ws / ".dvc").mkdir(exist_ok=True)
    (ws / ".dvc" / "config").write_text(text)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """params.yaml + dvc.yaml of this repo in a fresh git repo; a local DVC remote next to it;
    the Prefect port free; one target on a closed loopback port."""
    ws = tmp_path / "ws"
    ws.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["orchestration"].update(port=free_port(), home=str(tmp_path / "prefect-home"))
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", ws / "dvc.yaml")
    subprocess.run(["git", "init", "-q", str(ws)], check=True, capture_output=True)
    (tmp_path / "store").mkdir()
    write_dvc_config(ws, "../../store")  # relative to .dvc/, as DVC reads it
    (ws / "deploy").mkdir()
    targets = {
        "targets": [
            {"name": "line-1", "url": f"http://127.0.0.1:{free_port()}", "token_env": TOKEN_ENV}
        ]
    }
    (ws / "deploy" / "targets.yaml").write_text(yaml.safe_dump(targets))
    monkeypatch.setenv(TOKEN_ENV, "some-token")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return ws


def run(ws: Path) -> dict[str, doctor.Check]:
    checks = doctor.run_checks(Orchestration.load(ws / "params.yaml"), ws / "params.yaml")
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    return {c.name: c for c in checks}


def test_without_a_server_one_fail_names_edgeops_up_and_nothing_cascades(workspace: Path) -> None:
    start = time.monotonic()
    checks = run(workspace)
    assert time.monotonic() - start < 10  # nothing waits for a server that is not there

    server = checks["prefect server"]
    assert server.status == "FAIL" and "no Prefect server answers" in server.detail
    assert "`edgeops up`" in server.fix
    assert not {"prefect auth", "work pool", "worker", "deployment"} & checks.keys()
    assert [c.name for c in checks.values() if c.status == "FAIL"] == ["prefect server"]
    for name in ("python", "cpu", "port", "git", "dvc repo", "dvc remote", "signing key"):
        assert checks[name].status == "OK", checks[name]
    assert "is free" in checks["port"].detail
    assert str(workspace.parent / "store") in checks["dvc remote"].detail  # resolved from .dvc/
    assert checks["telemetry"].status == "OK"  # conftest switched everything off
    assert checks["lineage"].status == "WARN" and "reproducible" in checks["lineage"].detail


def test_the_console_script_prints_one_line_per_check_and_exits_1(workspace: Path) -> None:
    proc = subprocess.run(
        [EDGEOPS, "doctor", "--params", workspace / "params.yaml"],
        cwd=workspace,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    i = next(i for i, line in enumerate(lines) if line.startswith("FAIL prefect server:"))
    assert lines[i + 1].startswith("     fix: start it with `edgeops up`")
    assert re.search(r"doctor: \d+ OK, \d+ WARN, 1 FAIL in \d+\.\d s", proc.stderr)


def test_json_output_through_the_cli(workspace: Path) -> None:
    result = CliRunner().invoke(
        app, ["doctor", "--json", "--params", str(workspace / "params.yaml")]
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["counts"]["FAIL"] == 1
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["prefect server"]["fix"].startswith("start it with `edgeops up`")
    assert set(by_name["git"]) == {"name", "status", "detail", "fix"}


def test_help_has_an_example(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--help"])
    assert result.exit_code == 0
    assert "Example: edgeops doctor" in result.stdout and "--json" in result.stdout


def test_a_port_held_by_another_program_fails_naming_the_port(workspace: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        params = yaml.safe_load((workspace / "params.yaml").read_text())
        params["orchestration"]["port"] = port
        (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        checks = run(workspace)
    assert checks["port"].status == "FAIL"
    assert f"port {port} on 127.0.0.1 is held by another program" in checks["port"].detail
    assert "orchestration.port" in checks["port"].fix
    assert f"free port {port}" in checks["prefect server"].fix


def test_missing_signing_key_fails_with_keys_init(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_KEY_DIR", str(tmp_path / "no-keys"))
    check = doctor.check_signing_key()
    assert check.status == "FAIL" and str(tmp_path / "no-keys" / PRIVATE_NAME) in check.detail
    assert check.fix.startswith("edgeops keys init")


def test_a_key_others_can_read_fails(tmp_path: Path, monkeypatch, signing_keys: Path) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(signing_keys, keys)
    monkeypatch.setenv("EDGEOPS_KEY_DIR", str(keys))
    assert doctor.check_signing_key().status == "OK"
    (keys / PRIVATE_NAME).chmod(0o644)
    check = doctor.check_signing_key()
    assert check.status == "FAIL" and "mode 644" in check.detail
    assert check.fix == f"chmod 600 {keys / PRIVATE_NAME}"
    (keys / PRIVATE_NAME).chmod(0o600)
    (keys / PUBLIC_NAME).unlink()
    assert doctor.check_signing_key().status == "WARN"


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("../../store/new", "OK", "the first dvc push creates it"),
        ("../../missing/deeper", "FAIL", "missing"),
        ("../../a-file", "FAIL", "not a directory"),
        ("s3://bucket/edgeops", "WARN", "not checked"),
        (None, "FAIL", "no default DVC remote"),
    ],
)
def test_dvc_remote(workspace: Path, url: str | None, status: str, words: str) -> None:
    (workspace.parent / "a-file").write_text("x")
    write_dvc_config(workspace, url)
    check = doctor.check_dvc_remote(workspace, doctor.load_dvc_config(workspace))
    assert check.status == status and words in check.detail, check
    assert bool(check.fix) == (status != "OK")


def test_no_git_and_no_dvc_fail_once_each(workspace: Path) -> None:
    shutil.rmtree(workspace / ".git")
    shutil.rmtree(workspace / ".dvc")
    checks = run(workspace)
    if checks["git"].status != "OK":  # tmp may itself sit inside a git work tree
        assert checks["git"].status == "FAIL" and checks["git"].fix.startswith("git init")
    assert checks["dvc repo"].status == "FAIL" and "dvc init" in checks["dvc repo"].fix
    assert "dvc remote" not in checks  # no second line for the same cause


def test_a_target_on_a_closed_port_warns(workspace: Path) -> None:
    checks = run(workspace)
    check = checks["target line-1"]
    assert check.status == "WARN" and "unreachable" in check.detail
    assert "start the agent" in check.fix


def test_a_real_agent_without_a_model_or_a_token(tmp_path: Path, monkeypatch, signing_keys) -> None:
    (tmp_path / "state").mkdir()
    with AgentProcess(tmp_path / "state", signing_keys / PUBLIC_NAME) as agent:
        target = Target(name="edge", url=agent.url, token_env=TOKEN_ENV)
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        check = doctor.check_target(target)
        assert check.status == "WARN" and "no deploy token" in check.detail
        assert check.fix == f"export {TOKEN_ENV}=<the agent's deploy token>"
        monkeypatch.setenv(TOKEN_ENV, "wrong")
        check = doctor.check_target(target)
        assert check.status == "WARN" and "401" in check.detail
        assert check.fix == f"set {TOKEN_ENV} to this agent's deploy token"
        monkeypatch.setenv(TOKEN_ENV, DEPLOY_TOKEN)
        check = doctor.check_target(target)
        assert check.status == "WARN" and "no model is ready" in check.detail
        assert check.fix == "edgeops deploy -t edge"


def test_telemetry_switched_back_on_is_named() -> None:
    off = dict(TELEMETRY_OFF)
    dvc = {"core": {"analytics": False}}
    assert doctor.check_telemetry(dvc, off).status == "OK"
    check = doctor.check_telemetry(dvc, off | {"DO_NOT_TRACK": "0", "GX_ANALYTICS_ENABLED": "true"})
    assert check.status == "WARN"
    assert "DO_NOT_TRACK='0'" in check.detail and "GX_ANALYTICS_ENABLED='true'" in check.detail
    assert check.fix.startswith("export DO_NOT_TRACK=1 GX_ANALYTICS_ENABLED=false")
    check = doctor.check_telemetry({"core": {"analytics": True}}, off)
    assert check.status == "WARN" and check.fix == "dvc config core.analytics false"


def test_memory_from_a_meminfo_file(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2097152 kB\nMemFree: 1 kB\nMemAvailable:    1048576 kB\n")
    check = doctor.check_memory(meminfo)
    assert check.status == "WARN" and check.detail.startswith("2.0 GiB total, 1.0 GiB available")
    assert doctor.check_memory(tmp_path / "absent").status == "WARN"


def test_a_check_that_breaks_becomes_one_fail_line() -> None:
    def broken() -> doctor.Check:
        raise TimeoutError("timed out")

    (check,) = doctor._guarded("broken", broken)
    assert check.status == "FAIL" and "TimeoutError: timed out" in check.detail
    assert doctor.Check("x", "WARN", "d", "f").lines() == "WARN x: d\n     fix: f"
    assert doctor.Check("x", "OK", "d").lines() == "OK   x: d"


def test_importing_the_doctor_loads_neither_prefect_nor_dvc(tmp_path: Path, run_cmd) -> None:
    code = (
        "import sys, edgeops.orchestration.doctor; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'dvc', 'httpx'}))"
    )
    proc = run_cmd([sys.executable, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
