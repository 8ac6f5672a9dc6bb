"""Scale-out is configuration: the Prefect server on a real PostgreSQL server, and a second
worker (started as on another machine) that picks up runs when the first is gone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgeops.orchestration import processes
from tests.postgres import PostgresServer, find_pg_bin
from tests.prefect_stack import EDGEOPS, Stack

pytestmark = pytest.mark.integration

PREFECT = str(Path(EDGEOPS).parent / "prefect")


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    assert find_pg_bin(), "Debian's postgresql is needed (.ci/run installs it)"
    with PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


def test_training_runs_on_postgres_and_a_second_worker_takes_over(pg, tmp_path: Path) -> None:
    url = pg.create_database("prefect", "prefect", "pg-test-pw")
    st = Stack(tmp_path, **{"orchestration.database_url": url})
    second: subprocess.Popen | None = None
    try:
        assert "PostgreSQL" in st.up().stderr
        st.edgeops("run", "training", "--no-deploy", "--reason", "on postgres")
        run = st.flow_run(
            next(r["id"] for r in st.flow_runs() if r["parameters"].get("reason") == "on postgres")
        )
        assert run["state"]["type"] == "COMPLETED"
        rows = pg.query("SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'", "prefect")
        assert int(rows) >= 1  # the run is in PostgreSQL, not in a SQLite file
        assert not (st.home / "prefect.db").exists()

        # a second worker joins the pool, as documented for another machine
        env = st.env | {
            "PREFECT_API_URL": st.api_url,
            "PREFECT_HOME": str(tmp_path / "home-2"),
            "EDGEOPS_WORKSPACE": str(st.repo),
        }
        log = open(tmp_path / "worker-2.log", "wb")  # noqa: SIM115 (closed below)
        second = subprocess.Popen(
            [
                PREFECT,
                "worker",
                "start",
                "--pool",
                f"edgeops-test-{st.port}",
                "--type",
                "process",
                "--name",
                "second-machine",
                "--install-policy",
                "never",
            ],
            cwd=st.repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # the first worker goes away
        assert processes.stop(st.home / "run/worker-1.pid", "worker")
        st.edgeops("run", "training", "--no-deploy", "--reason", "second worker")
        run = next(r for r in st.flow_runs() if r["parameters"].get("reason") == "second worker")
        assert run["state"]["type"] == "COMPLETED"
        log.close()
        assert run["id"] in (tmp_path / "worker-2.log").read_text()
    finally:
        if second is not None:
            second.terminate()
            try:  # a worker says goodbye to the server first: slow on a loaded machine
                second.wait(timeout=30)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait(timeout=10)
        st.down()
