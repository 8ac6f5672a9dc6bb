"""docs/data-protection.md cannot drift from the code.

Its inventory table (section 2) is parsed: every path must be what ``dvc.yaml``, ``params.yaml``,
``.dvc/config`` or the agent's configuration says, every default the shipped one, every file mode
what the ``UMask=`` of the systemd unit that writes the file allows. Every setting that decides
how long the agent keeps its log or what it logs must be in the table, and every setting named
anywhere in the document must exist.
"""

from __future__ import annotations

import configparser
import dataclasses
import hashlib
import json
import os
import posixpath
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.edge.config import AgentConfig

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "data-protection.md"
MARKER = "<!-- inventory: tests/unit/test_data_protection.py parses this table -->"
COLUMNS = ["Data", "Where", "Setting", "Default", "Mode", "Written by"]
AGENT_UNIT = "edgeops-agent.service"
#: DVC's built-in defaults for keys .dvc/config may leave unset (`dvc config cache.dir`)
DVC_DEFAULTS = {"cache.dir": ".dvc/cache"}
#: params.yaml keys that decide where data is stored or whether production data is kept
STORAGE_PARAMS = {
    "ingest.csv.path",
    "ingest.production.include",
    "ingest.production.path",
    "validate.schema.drop",
    "bundle.golden_examples",
    "monitor.store",
    "monitor.reports",
    "monitor.workspace",
    "deploy.registry",
    "deploy.audit_log",
    "orchestration.home",
}
#: Prefect server settings that delete old data or keep log lines out of its database
PREFECT_RETENTION = {
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD",
    "PREFECT_SERVER_EVENTS_RETENTION_PERIOD",
    "PREFECT_LOGGING_TO_API_ENABLED",
}
PARAM_TOKEN = re.compile(
    r"(ingest|validate|split|train|evaluate|export|bundle|deploy|monitor|"
    r"orchestration)(\.[a-z_]+)+"
)
FILE_SUFFIX = re.compile(r"\.(parquet|jsonl?|py|ya?ml|md|html|db|dvc|log|joblib|onnx)$")


@dataclasses.dataclass(frozen=True)
class Row:
    line: int
    data: str
    where: str
    source: str | None  # params.yaml, agent.yaml, dvc.yaml, .dvc/config, prefect.env; None: —
    key: str | None
    default: str | None  # the cell's text, None for —
    mode: int | None
    unit: str | None

    def __str__(self) -> str:
        return f"docs/data-protection.md:{self.line} ({self.where}, {self.source}:{self.key})"


def code(cell: str) -> str | None:
    """`x` -> x, — -> None (anything else is a format error)."""
    cell = cell.strip()
    if cell == "—":
        return None
    m = re.fullmatch(r"`([^`]+)`", cell)
    assert m, f"a table cell must be one `code` span or —, got {cell!r}"
    return m.group(1)


def inventory() -> list[Row]:
    lines = DOC.read_text().splitlines()
    start = lines.index(MARKER) + 1
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header == COLUMNS, f"inventory header: {header}"
    rows = []
    for number, line in enumerate(lines[start + 2 :], start + 3):
        if not line.startswith("|"):
            break
        data, where, setting, default, mode, unit = (c for c in line.strip().strip("|").split("|"))
        source, _, key = (code(setting) or "").partition(":")
        rows.append(
            Row(
                number,
                data.strip(),
                code(where) or "",
                source or None,
                key or None,
                code(default),
                int(code(mode) or "-1", 8) if code(mode) else None,
                code(unit),
            )
        )
    return rows


ROWS = inventory()


def rows(source: str | None) -> list[Row]:
    return [r for r in ROWS if r.source == source]


def param(params: dict[str, Any], dotted: str, where: object = "") -> Any:
    value: Any = params
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"{where}: params.yaml has no {dotted}"
        value = value[part]
    return value


def unit_settings(name: str) -> dict[str, str]:
    """The last value of each setting of a unit in deploy/ (continuation lines joined)."""
    text = (REPO / "src/edgeops/examples" / name).read_text().replace("\\\n", " ")
    return dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z]\w*=", line))


def state_dir() -> str:
    """Where src/edgeops/examples/edgeops-agent.service keeps the agent's state (its --state-dir)."""
    m = re.search(r"--state-dir\s+(\S+)", unit_settings(AGENT_UNIT)["ExecStart"])
    assert m, "src/edgeops/examples/edgeops-agent.service passes no --state-dir"
    return m.group(1)


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


PREFECT_SCRIPT = """
import json
from prefect.settings import Settings
defaults = Settings().to_environment_variables(exclude_unset=False)  # those without None
try:  # every name, also those whose default is None (PREFECT_API_URL)
    from prefect.settings.legacy import _get_valid_setting_names
    names = sorted(_get_valid_setting_names(Settings))
except ImportError:
    names = []
print(json.dumps({"defaults": defaults, "names": names}))
"""


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Prefect's settings as environment variables: ``defaults`` (in a clean environment) and
    ``names``."""
    pytest.importorskip("prefect")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path_factory.mktemp("home")),
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect")),
        "DO_NOT_TRACK": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", PREFECT_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    return {"defaults": found["defaults"], "names": set(found["names"]) | set(found["defaults"])}


# -- the table ---------------------------------------------------------------------------------


def test_the_inventory_is_found_and_well_formed() -> None:
    assert len(ROWS) >= 20
    for r in ROWS:
        assert r.where, f"{r}: no path"
        assert r.source in {
            None,
            "params.yaml",
            "agent.yaml",
            "dvc.yaml",
            ".dvc/config",
            "prefect.env",
        }, f"{r}: unknown setting source"
        assert (r.mode is None) == (r.unit is None), f"{r}: a mode needs the unit that writes it"


def test_dvc_rows_are_outputs_of_their_stage() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for r in rows("dvc.yaml"):
        assert r.key in stages, f"{r}: no stage {r.key} in dvc.yaml"
        outs = [
            next(iter(o)) if isinstance(o, dict) else o
            for kind in ("outs", "metrics", "plots")
            for o in stages[r.key].get(kind, [])
        ]
        assert r.where.rstrip("/") in outs, f"{r}: not an output of {r.key}: {outs}"
        assert r.default is None


def test_params_rows_exist_with_the_shipped_default(params: dict[str, Any]) -> None:
    for r in rows("params.yaml"):
        value = param(params, r.key or "", r)
        assert yaml.safe_load(r.default or "null") == value, f"{r}: params.yaml has {value!r}"
        if isinstance(value, str):  # a path: the row says where it leads
            assert r.where == value or r.where.startswith(value.rstrip("/") + "/"), (
                f"{r}: {r.key} is {value!r}"
            )


def test_agent_rows_are_config_fields_with_their_default() -> None:
    defaults, fields = AgentConfig.defaults(), {f.name for f in dataclasses.fields(AgentConfig)}
    for r in rows("agent.yaml"):
        assert r.key in fields, f"{r}: AgentConfig has no field {r.key}"
        expected = defaults[r.key] if r.key in defaults else state_dir()  # state_dir: the unit's
        assert yaml.safe_load(r.default or "null") == expected, f"{r}: the default is {expected!r}"
        assert r.where.startswith(state_dir().rstrip("/") + "/"), f"{r}: not in the state dir"


def dvc_config() -> dict[str, str]:
    """.dvc/config as dotted keys: ``['remote "localstore"'] url`` -> ``remote.localstore.url``."""
    cfg = configparser.ConfigParser()
    cfg.read_string((REPO / ".dvc" / "config").read_text())
    out = {}
    for section in cfg.sections():
        prefix = ".".join(section.strip("'").replace('"', "").split())
        out.update({f"{prefix}.{key}": value for key, value in cfg[section].items()})
    return out


def test_dvc_config_rows_match_dot_dvc_config() -> None:
    values = dvc_config()
    for r in rows(".dvc/config"):
        value = values.get(r.key or "", DVC_DEFAULTS.get(r.key or ""))
        assert value is not None, f"{r}: not in .dvc/config, no known DVC default"
        assert r.default == value, f"{r}: .dvc/config has {value!r}"
        path = (
            posixpath.normpath(posixpath.join(".dvc", value)) if value.startswith("..") else value
        )
        assert r.where.rstrip("/") == path, f"{r}: {r.key} leads to {path}"


def test_prefect_rows_are_prefect_settings_with_their_default(prefect: dict[str, Any]) -> None:
    for r in rows("prefect.env"):
        default = prefect["defaults"].get(r.key)
        assert r.key in prefect["names"], f"{r}: Prefect has no setting {r.key}"
        assert r.default == default, f"{r}: Prefect's default is {default!r}"


def test_rows_without_a_setting_lie_under_a_checked_location() -> None:
    checked = [r.where for r in ROWS if r.source and r.where.endswith("/")]
    for r in rows(None):
        assert any(r.where.startswith(d) for d in checked), f"{r}: under no checked directory"


# -- modes -------------------------------------------------------------------------------------


#: what edgeops makes private itself, whatever the unit's umask (edgeops.atomic.private_dir)
PRIVATE = {"data/production/": 0o700}


def test_modes_are_what_the_writing_unit_allows() -> None:
    state = state_dir().rstrip("/")
    for r in ROWS:
        if r.unit is None:
            continue
        settings = unit_settings(r.unit)
        umask = int(settings["UMask"], 8)
        if r.where in PRIVATE:
            expected = PRIVATE[r.where]
        elif r.where.rstrip("/") == state:
            expected = int(settings["StateDirectoryMode"], 8)
            assert f"/var/lib/{settings['StateDirectory']}" == state
        else:
            expected = (0o777 if r.where.endswith("/") else 0o666) & ~umask
        assert r.mode == expected, f"{r}: {r.unit} (UMask={umask:04o}) gives {expected:04o}"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_the_server_side_writers_follow_the_workers_umask(tmp_path: Path) -> None:
    """The files edgeops writes itself (audit log, reports, production parts) get no more than
    the mode the table states for them."""
    from edgeops import atomic
    from edgeops.deploy.registry import AuditLog
    from edgeops.monitor.store import ProductionStore, write_part
    from tests.unit.test_monitor import _items

    worker = int(unit_settings("edgeops-prefect-worker.service")["UMask"], 8)
    stated = {r.where: r.mode for r in ROWS}
    with umask(worker):
        AuditLog(tmp_path / "audit.jsonl").append("gate", by="test")
        atomic.write_json(tmp_path / "reports" / "quality.json", {})
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == stated["deploy/audit.jsonl"]
    assert (tmp_path / "reports" / "quality.json").stat().st_mode & 0o777 == 0o666 & ~worker
    assert (tmp_path / "reports").stat().st_mode & 0o777 == stated["reports/monitoring/"]
    # the collected rows: the owner's only, also under a umask that would let everyone read
    from edgeops.monitor.store import rows_frame

    with umask(0o022):
        series = ProductionStore(tmp_path / "production")._series_for("line-1", "ab" * 8, False)
        part = write_part(series, "rows", 1, 5, rows_frame(_items(1, 5)))
    assert series.stat().st_mode & 0o777 == series.parent.stat().st_mode & 0o777 == 0o700
    assert part.stat().st_mode & 0o777 == 0o600 and stated["data/production/"] == 0o700


def test_the_dvc_cache_mode_is_dvcs_own_constant() -> None:
    """DVC chmods cached files to a fixed mode: the document names it."""
    local = pytest.importorskip("dvc_data.hashfile.db.local")
    mode = local.LocalHashFileDB.CACHE_MODE
    assert f"DVC sets the files in its cache and a local remote to `{mode:04o}`" in " ".join(
        DOC.read_text().split()
    )


def test_the_signing_key_is_private_whatever_the_umask(tmp_path: Path) -> None:
    from edgeops.keys import init_keys

    with umask(0o022):
        private, _ = init_keys(tmp_path / "keys")
    assert private.stat().st_mode & 0o777 == 0o600 and "`0600` in a `0700`" in DOC.read_text()
    assert private.parent.stat().st_mode & 0o777 == 0o700


# -- coverage: every setting in, every name real -----------------------------------------------


def test_every_retention_and_logging_setting_is_in_the_inventory() -> None:
    agent = {f.name for f in dataclasses.fields(AgentConfig) if f.name.startswith("log_")} | {
        "keep_versions",
        "state_dir",
    }
    for source, wanted in (
        ("agent.yaml", agent),
        ("params.yaml", STORAGE_PARAMS),
        ("prefect.env", PREFECT_RETENTION),
    ):
        missing = wanted - {r.key for r in rows(source)}
        assert not missing, f"docs/data-protection.md, section 2: add {source} {sorted(missing)}"


def code_spans() -> list[tuple[int, str]]:
    """Every `code` span outside fenced blocks, with its line."""
    spans, fenced = [], False
    for number, line in enumerate(DOC.read_text().splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            spans += [(number, s) for s in re.findall(r"`([^`]+)`", line)]
    return spans


def test_every_setting_named_in_the_text_exists(params: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(AgentConfig)}
    for number, span in code_spans():
        name = re.split(r"[:=]\s", span)[0]  # `monitor.store: x`, `log_max_rows = 1`
        if name.startswith(("params.yaml:", "agent.yaml:")) and "<" not in name:
            name = name.split(":", 1)[1]
        if re.fullmatch(r"log_[a-z_]+|keep_versions", name):
            assert name in fields, f"docs/data-protection.md:{number}: no agent setting {name}"
        elif PARAM_TOKEN.fullmatch(name) and not FILE_SUFFIX.search(name):
            param(params, name, f"docs/data-protection.md:{number}")  # asserts it exists


def test_prefect_names_in_the_text_exist(prefect: dict[str, Any]) -> None:
    for name in sorted(set(re.findall(r"\bPREFECT_[A-Z0-9_]+", DOC.read_text()))):
        assert name in prefect["names"], f"docs/data-protection.md: Prefect has no {name}"


def test_the_retention_sentences_match_the_defaults() -> None:
    d, text = AgentConfig.defaults(), " ".join(DOC.read_text().split())
    wanted = [
        f"{d['log_retention_days']:g} days",
        f"{d['log_max_rows']:,} rows",
        f"{d['log_max_bytes'] >> 30} GiB",
        f"every {d['log_purge_interval_seconds']:g} s",
        f"the newest {d['keep_versions']}",
    ]
    for phrase in wanted:
        assert phrase in text, f"docs/data-protection.md, section 3: says no {phrase!r}"


def test_the_hash_is_what_the_document_says(tmp_path: Path) -> None:
    from edgeops.edge.inference_log import InferenceLog

    log = InferenceLog(
        tmp_path / "inference.db",
        drop_fields=["note"],
        hash_fields=["operator"],
        hash_salt="pepper",
    )
    try:
        row = log.minimise({"operator": "4711", "note": "free text", "torque_nm": 40.0})
    finally:
        log.close()
    digest = hashlib.sha256(b"pepper4711").hexdigest()[:16]
    assert row == {"operator": f"sha256:{digest}", "torque_nm": 40.0}
    assert "first 16 hex digits of SHA-256(salt + value)" in " ".join(DOC.read_text().split())
