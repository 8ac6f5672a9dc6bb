"""Telemetry off, from one place: src/edgeops/telemetry-off.env.

Every entry point reads that file (Python through edgeops.offline, the Makefile by ``include``,
.ci/run by ``set -a; .``, the systemd units by ``EnvironmentFile=``), and no other file sets one
of its switches itself.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from edgeops import offline
from edgeops.offline import ENV_FILE, TELEMETRY_OFF, parse_env_file, telemetry_off

REPO = Path(__file__).resolve().parents[2]
REL_ENV_FILE = "src/edgeops/telemetry-off.env"
#: Where the systemd units read it (docs/operations.md, section 5, copies it there).
ETC_ENV_FILE = "/etc/edgeops/telemetry-off.env"
#: The files allowed to name a switch's value: the source and its parser.
SOURCES = {REL_ENV_FILE, "src/edgeops/offline.py"}
#: Every entry point's files: they must take the switches from the source, not set them.
SCANNED = (
    "Makefile",
    ".ci/run",
    "bin/*",
    "deploy/*.service",
    "prefect.yaml",
    "src/**/*.py",
    "flows/*.py",
)

# a switch's name says which value is "off": DO_NOT_TRACK / *_DISABLE_* want it true,
# *_ENABLED wants it false
NEGATED = re.compile(r"(^|_)(DO_NOT|NO|DISABLE|DISABLED)(_|$)")
TRUE, FALSE = {"1", "true"}, {"0", "false"}


# -- (1) the file ------------------------------------------------------------------------------


def test_the_env_file_is_the_one_beside_the_module() -> None:
    assert Path(offline.__file__).with_name("telemetry-off.env") == ENV_FILE
    assert parse_env_file((REPO / REL_ENV_FILE).read_text()) == TELEMETRY_OFF
    assert len(TELEMETRY_OFF) >= 7 and "DO_NOT_TRACK" in TELEMETRY_OFF


@pytest.mark.parametrize("name", sorted(TELEMETRY_OFF))
def test_every_value_switches_telemetry_off(name: str) -> None:
    value = TELEMETRY_OFF[name]
    if NEGATED.search(name):
        assert value in TRUE, f"{name}={value}: a 'do not / disable' switch must be true to be off"
    else:
        assert name.endswith("_ENABLED"), f"{name}: name it *_ENABLED or *_DISABLE*, or add a rule"
        assert value in FALSE, f"{name}={value}: an '*_ENABLED' switch must be false to be off"


def test_doctor_agrees_that_the_file_is_all_off() -> None:
    from edgeops.orchestration.doctor import check_telemetry

    assert check_telemetry({}, dict(TELEMETRY_OFF)).status == "OK"


def test_every_switch_is_explained_by_a_comment_above_it() -> None:
    lines = ENV_FILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert i and lines[i - 1].startswith("# "), f"telemetry-off.env:{i + 1}: no comment"


@pytest.mark.parametrize(
    "line",
    [
        'DO_NOT_TRACK="1"',
        "export DO_NOT_TRACK=1",
        "DO_NOT_TRACK=1  # off",
        "DO_NOT_TRACK = 1",
        "do_not_track=1",
        "DO_NOT_TRACK",
    ],
)
def test_lines_bash_make_and_systemd_would_read_differently_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not a plain KEY=value line"):
        parse_env_file(f"# ok\n{line}\n")


def test_a_switch_set_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="set twice"):
        parse_env_file("DO_NOT_TRACK=1\nDO_NOT_TRACK=1\n")


def test_bash_reads_the_same_values() -> None:
    out = subprocess.run(
        ["bash", "-c", f"set -a; . {ENV_FILE}; set +a; env -0"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    assert {k: env.get(k) for k in TELEMETRY_OFF} == TELEMETRY_OFF


def test_telemetry_off_keeps_what_the_operator_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TELEMETRY_OFF:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "true")
    telemetry_off()
    assert os.environ["GX_ANALYTICS_ENABLED"] == "true"
    assert all(os.environ[k] == v for k, v in TELEMETRY_OFF.items() if k != "GX_ANALYTICS_ENABLED")


# -- (2) one place -----------------------------------------------------------------------------


def setting_patterns(name: str) -> list[re.Pattern[str]]:
    """What setting ``name`` looks like in shell, make, systemd units and Python."""
    n = re.escape(name)
    return [
        re.compile(rf"\b{n}\s*(:=|::=|\?=|\+=|=(?!=))"),  # NAME=1, NAME := 1, dict(NAME="1")
        re.compile(rf"setdefault\(\s*['\"]{n}['\"]"),  # os.environ.setdefault("NAME", ...)
        re.compile(rf"\[\s*['\"]{n}['\"]\s*\]\s*=(?!=)"),  # environ["NAME"] = ...
        re.compile(rf"['\"]{n}['\"]\s*:\s*['\"]"),  # {"NAME": "1"}
        re.compile(rf"putenv\(\s*['\"]{n}['\"]"),
    ]


def settings_outside_the_source() -> list[str]:
    """``file:line: text`` of every line that sets a switch with a value of its own."""
    patterns = [p for name in TELEMETRY_OFF for p in setting_patterns(name)]
    found = []
    for pattern in SCANNED:
        for path in sorted(REPO.glob(pattern)):
            rel = path.relative_to(REPO).as_posix()
            if not path.is_file() or rel in SOURCES or "__pycache__" in rel:
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                text = line.strip()
                if text.startswith(("#", ";")) or "TELEMETRY_OFF[" in text:
                    continue  # a comment; a value taken from the source
                if any(p.search(text) for p in patterns):
                    found.append(f"{rel}:{number}: {text}")
    return found


def test_no_other_file_sets_a_telemetry_switch() -> None:
    found = settings_outside_the_source()
    assert not found, (
        "telemetry switches are set only in src/edgeops/telemetry-off.env; use "
        "edgeops.offline.telemetry_off() / TELEMETRY_OFF (Python), or read the file:\n"
        + "\n".join(found)
    )


def test_the_scan_finds_each_way_of_setting_a_switch() -> None:
    lines = [
        "export DO_NOT_TRACK := 1",
        "Environment=A=1 DVC_NO_ANALYTICS=1",
        'os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")',
        "env['OTEL_SDK_DISABLED'] = 'x'",
        'dict(os.environ, DO_NOT_TRACK="1")',
        'env.update({"GX_ANALYTICS_ENABLED": "false"})',
    ]
    for line in lines:
        assert any(p.search(line) for name in TELEMETRY_OFF for p in setting_patterns(name)), line
    harmless = ['if env.get("DO_NOT_TRACK") == "1":', 'UI_FORCED_OFF = ("DO_NOT_TRACK",)']
    for line in harmless:
        assert not any(p.search(line) for name in TELEMETRY_OFF for p in setting_patterns(name))


# -- (3) every entry point reads the file ------------------------------------------------------


@pytest.mark.parametrize(
    "unit", sorted((REPO / "src/edgeops/examples").glob("*.service")), ids=lambda p: p.name
)
def test_each_systemd_unit_reads_the_file_and_fails_without_it(unit: Path) -> None:
    lines = [line.strip() for line in unit.read_text().splitlines()]
    assert f"EnvironmentFile={ETC_ENV_FILE}" in lines, (
        f"{unit.name}: needs EnvironmentFile={ETC_ENV_FILE} (no '-': a missing file must fail)"
    )
    assert f"EnvironmentFile=-{ETC_ENV_FILE}" not in lines


def test_the_install_steps_copy_the_file_to_etc() -> None:
    ops = (REPO / "docs/operations.md").read_text()
    assert f"install -D -m 0644 {REL_ENV_FILE} {ETC_ENV_FILE}" in ops
    assert "import edgeops.offline as o; print(o.ENV_FILE)" in ops  # the wheel's copy, on devices


def test_the_makefile_includes_the_file() -> None:
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^TELEMETRY_OFF_ENV := (\S+)$", text, re.M)
    included = {m.group(1)} if m else set()
    includes = set(re.findall(r"^-?include (\S+)$", text, re.M))
    assert REL_ENV_FILE in {i.replace("$(TELEMETRY_OFF_ENV)", *included) for i in includes}


@pytest.mark.skipif(not shutil.which("make"), reason="GNU make not installed")
def test_make_exports_every_switch_to_what_it_starts() -> None:
    out = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "-f",
            "Makefile",
            "--eval",
            "_telemetry_env: ; @env -0",
            "_telemetry_env",
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    assert {k: env.get(k) for k in TELEMETRY_OFF} == TELEMETRY_OFF


def test_ci_sources_the_file_before_the_tests() -> None:
    text = (REPO / ".ci/run").read_text()
    m = re.search(rf"^set -a; \. {re.escape(REL_ENV_FILE)}; set \+a$", text, re.M)
    assert m, f".ci/run: needs `set -a; . {REL_ENV_FILE}; set +a`"
    assert m.start() < text.index("make test")


def test_python_entry_points_call_telemetry_off() -> None:
    # the CLI's command wrapper, every stage's main, the agent, the flows run by a worker
    for rel in (
        "src/edgeops/cli.py",
        "src/edgeops/stages/runner.py",
        "src/edgeops/edge/agent.py",
        "src/edgeops/edge/inference.py",
        "src/edgeops/flows/training.py",
        "src/edgeops/flows/monitoring.py",
    ):
        assert "telemetry_off()" in (REPO / rel).read_text(), rel


# -- (4) it ships in the package ---------------------------------------------------------------


def test_importlib_resources_finds_the_file() -> None:
    resource = importlib.resources.files("edgeops") / "telemetry-off.env"
    assert resource.is_file()
    assert parse_env_file(resource.read_text()) == TELEMETRY_OFF
    assert Path(str(resource)) == Path(offline.__file__).with_name("telemetry-off.env")


def test_the_wheel_build_does_not_leave_the_file_out() -> None:
    """hatchling packs src/edgeops, less what .gitignore or an exclude names (`uv build --wheel`
    lists edgeops/telemetry-off.env)."""
    hatch = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    wheel = hatch["targets"]["wheel"]
    assert wheel["packages"] == ["src/edgeops"]
    assert not {"exclude", "only-include"} & (set(hatch) | set(wheel)), "check the excludes"
    if shutil.which("git") and (REPO / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", REL_ENV_FILE], cwd=REPO)
        assert ignored.returncode == 1, f".gitignore ignores {REL_ENV_FILE}: hatchling drops it"
