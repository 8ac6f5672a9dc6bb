"""``edgeops up`` / ``down`` as an operator uses them: idempotent, basic auth, nothing left behind,
and the errors a person meets (no server, wrong auth string, port taken)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.prefect_stack import Stack, set_params

pytestmark = pytest.mark.integration

AUTH = "admin:s3cret-test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("services"))
    st.env["PREFECT_API_AUTH_STRING"] = AUTH
    try:
        yield st
    finally:
        st.down()


def test_up_twice_is_harmless(stack: Stack) -> None:
    first = stack.up().stderr
    assert "server: healthy after" in first and "worker 1: started" in first
    assert f"Prefect UI: http://127.0.0.1:{stack.port}" in first
    procs = sorted(stack.processes())
    second = stack.up().stderr
    assert "server: already running" in second and "worker 1: already running" in second
    assert sorted(stack.processes()) == procs, "a second `up` started more processes"
    assert (stack.home / "logs/server.log").is_file() and (
        stack.home / "logs/worker-1.log"
    ).is_file()


def test_basic_auth_refuses_a_client_without_the_string(stack: Stack) -> None:
    code, _ = stack.api("POST", "/deployments/filter", {}, auth="")
    assert code == 401
    code, _ = stack.api("POST", "/deployments/filter", {}, auth="admin:wrong")
    assert code == 401
    code, deployments = stack.api("POST", "/deployments/filter", {})
    assert code == 200 and sorted(d["entrypoint"] for d in deployments) == [
        "flows/monitoring.py:monitoring",
        "flows/training.py:training",
    ]
    assert {d["name"] for d in deployments} == {"plant"}  # the project's name
    assert stack.api("GET", "/health", auth="")[0] == 200  # the probe stays open
    env = dict(stack.env)
    env.pop("PREFECT_API_AUTH_STRING")
    out = stack.edgeops("runs", env=env, check=False)
    assert out.returncode == 2
    assert "refused the credentials (401 Unauthorized)" in out.stderr
    assert "fix: set PREFECT_API_AUTH_STRING" in out.stderr and "Traceback" not in out.stderr


def test_down_leaves_no_process_behind(stack: Stack) -> None:
    assert len(stack.processes()) >= 2  # the server and the worker (and their children)
    out = stack.edgeops("down").stderr
    assert "worker-1" in out and "server" in out
    assert stack.processes() == []
    assert list((stack.home / "run").glob("*.pid")) == []
    assert "nothing of edgeops up was running" in stack.edgeops("down").stderr


def test_the_cli_names_what_to_start_when_the_server_is_down(stack: Stack) -> None:
    out = stack.edgeops("run", "training", check=False)
    assert out.returncode == 2 and "no Prefect server answers at" in out.stderr
    assert "fix: start it with `edgeops up`" in out.stderr and "Traceback" not in out.stderr


def test_up_refuses_a_port_taken_by_another_program(tmp_path: Path) -> None:
    st = Stack(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", st.port))
        taken.listen()
        out = st.edgeops("up", check=False, timeout=120)
    assert out.returncode == 2
    assert f"port {st.port} on 127.0.0.1 is in use by another program" in out.stderr
    assert "orchestration.port" in out.stderr and st.processes() == []


def test_a_bad_orchestration_value_is_one_clear_error(tmp_path: Path) -> None:
    st = Stack(tmp_path)
    set_params(st.repo, **{"orchestration.port": "forty-two"})
    out = st.edgeops("up", check=False, timeout=120)
    assert out.returncode == 2 and "orchestration has a value of the wrong type" in out.stderr
