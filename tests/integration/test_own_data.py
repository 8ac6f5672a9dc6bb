"""Own data, as a Swiss company has it: an Excel export through docs/own-data.md's worked example.

A fresh copy of the repository gets a semicolon-separated, decimal-comma, cp1252, CRLF export
with `dd.mm.yyyy HH:MM` timestamps, spaces, a `/` and umlauts in column names and categories, an
order number and a free-text remark, and a `ja`/`nein` target. The test then runs the worked example's
own commands, as written (only the agent's port is a free one): `schema infer --apply`,
`dvc repro`, `edgeops agent start`, `edgeops deploy` and the `curl` call with the original column names.
The same rows as Excel's "CSV UTF-8" (comma, BOM, CRLF) and as an SQLite table then give the
same model.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.agent_process import free_port
from tests.conftest import REPO, init_project, tool_env
from tests.integration.test_pipeline import set_params

pytestmark = pytest.mark.integration

GERMAN = {
    "timestamp": "Zeitstempel",
    "machine_type": "Maschinentyp",
    "product_line": "Produktlinie",
    "air_temp_k": "Lufttemperatur K",
    "process_temp_k": "Prozesstemperatur K",
    "spindle_speed_rpm": "Drehzahl U/min",
    "torque_nm": "Drehmoment Nm",
    "tool_wear_min": "Werkzeugverschleiss min",
    "vibration_mm_s": "Vibration mm/s",
    "failure": "Ausfall",
}
PRODUCTS = {
    "gearbox": "Getriebe",
    "pump": "Pumpe",
    "valve": "Ventil DN 50",
    "spindle": "Drehkörper",
}
TYPES = {"L": "Leicht", "M": "Mittel", "H": "Schwer"}


def readme_example() -> list[str]:
    """The commands of the README's worked example (the bash block after its marker)."""
    text = (REPO / "docs/own-data.md").read_text()
    block = re.search(r"<!-- own-data-example -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "docs/own-data.md lost its own-data example (marker <!-- own-data-example -->)"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))  # continuation lines
    commands = [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]
    return [c for c in commands if c and not c.startswith("#")]


def machine_rows(rows: int = 3000) -> pd.DataFrame:
    """Plant readings as the machine's export has them: German names, an order number, a remark."""
    from edgeops.sources.simulator import simulate

    df = simulate(rows=rows, seed=7)
    df["machine_type"] = df["machine_type"].map(TYPES)
    df["product_line"] = df["product_line"].map(PRODUCTS)
    df["failure"] = df["failure"].map({0: "nein", 1: "ja"})
    df["timestamp"] = df["timestamp"].dt.floor("min")
    df = df.rename(columns=GERMAN)
    df.insert(0, "Auftragsnummer", [f"A-{100000 + i}" for i in range(len(df))])
    df["Bemerkung"] = [
        f"Schicht {i % 3 + 1}, geprüft von MA{i % 97:02d} um {i % 24}h" for i in range(len(df))
    ]
    return df


def write_excel_export(df: pd.DataFrame, path: Path) -> None:
    """What Excel's "CSV (semicolon-separated)" gives on a Swiss/German Windows machine."""
    out = df.copy()
    out["Zeitstempel"] = out["Zeitstempel"].dt.strftime("%d.%m.%Y %H:%M")
    text = out.to_csv(sep=";", decimal=",", index=False, lineterminator="\r\n")
    path.write_bytes(text.encode("cp1252"))


def sh(
    cmd: str | list[str], cwd: Path, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        shell=isinstance(cmd, str),
        capture_output=True,
        text=True,
        timeout=timeout,
        executable="/bin/bash" if isinstance(cmd, str) else None,
    )
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    repo = init_project(tmp_path_factory.mktemp("own-data"))
    env = tool_env()
    env["AGENT_PORT"] = str(free_port())
    yield repo, env
    subprocess.run(["edgeops", "agent", "stop"], cwd=repo, env=env, capture_output=True, timeout=60)


def test_the_readme_example_from_an_excel_export_to_a_prediction(clone) -> None:
    repo, env = clone
    port = env["AGENT_PORT"]
    targets = repo / "deploy/targets.yaml"
    targets.write_text(targets.read_text().replace("127.0.0.1:8710", f"127.0.0.1:{port}"))
    df = machine_rows()
    write_excel_export(df, repo / "data/external/Maschinendaten.csv")

    commands = readme_example()
    assert len(commands) <= 5, commands
    outputs = [sh(c.replace("8710", port), repo, env).stdout for c in commands]

    params = (repo / "params.yaml").read_text()
    assert "positive_class: ja" in params
    assert "Auftragsnummer" in params and "Bemerkung" in params  # proposed under drop
    ingest = json.loads((repo / "reports/ingest.json").read_text())
    assert ingest["csv"]["sep"] == ";" and ingest["csv"]["decimal"] == ","
    assert ingest["csv"]["encoding"] == "cp1252"
    assert "Bemerkung" not in ingest["columns"]  # dropped columns are never stored
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["positive_class"] == "ja"
    assert metrics["roc_auc"] > 0.8

    answer = json.loads(outputs[-1])  # the curl call: original column names, a whole row
    assert answer["predictions"][0]["label"] in ("ja", "nein")
    assert set(answer["predictions"][0]["probabilities"]) == {"ja", "nein"}


def test_the_same_rows_as_utf8_csv_and_sqlite_give_the_same_model(clone) -> None:
    repo, env = clone
    first = json.loads((repo / "reports/metrics.json").read_text())
    snapshot = json.loads((repo / "reports/ingest.json").read_text())["sha256"]
    df = machine_rows()
    plain = df.copy()
    plain["Zeitstempel"] = plain["Zeitstempel"].dt.strftime("%Y-%m-%d %H:%M")
    (repo / "data/utf8").mkdir()
    # as Excel's "CSV UTF-8" writes it: comma, decimal point, a BOM, CRLF
    plain.to_csv(
        repo / "data/utf8/maschinen.csv", index=False, encoding="utf-8-sig", lineterminator="\r\n"
    )
    set_params(repo, **{"ingest.csv.path": "data/utf8/maschinen.csv"})
    sh(["dvc", "repro"], repo, env)
    assert json.loads((repo / "reports/ingest.json").read_text())["csv"]["encoding"] == "utf-8-sig"
    assert json.loads((repo / "reports/metrics.json").read_text()) == first
    assert json.loads((repo / "reports/ingest.json").read_text())["sha256"] == snapshot
    # the same bytes: DVC had nothing to re-run after ingest
    assert json.loads((repo / "reports/ingest.json").read_text())["sha256"] == snapshot

    with sqlite3.connect(repo / "data/external/maschinen.db") as db:
        plain.to_sql("messungen", db, index=False)
    set_params(
        repo,
        **{
            "ingest.source": "sql",
            "ingest.sql.url": "sqlite:///data/external/maschinen.db",
            "ingest.sql.table": "messungen",
            "ingest.sql.query": None,
        },
    )
    sh(["dvc", "repro"], repo, env)
    assert json.loads((repo / "reports/metrics.json").read_text()) == first
    assert json.loads((repo / "reports/ingest.json").read_text())["sha256"] == snapshot
