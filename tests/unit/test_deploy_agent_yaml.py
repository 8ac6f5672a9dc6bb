"""src/edgeops/examples/agent.yaml documents the agent's real defaults, through the agent's own config loader.

Its settings are the defaults of ``AgentConfig``; a commented-out ``# key: value`` line shows a
change that is not the default. The file cannot drift from the loader unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edgeops.edge.config import AgentConfig, load_config

REPO = Path(__file__).resolve().parents[2]
AGENT_YAML = REPO / "src/edgeops/examples" / "agent.yaml"
# required, or secret: never documented with a value in the file
NOT_IN_FILE = {
    "state_dir",
    "public_key",
    "deploy_token",
    "predict_token",
    "feedback_token",
    "metrics_token",
}
COMMENTED_SETTING = re.compile(r"^# ([a-z_]+): \S")


def test_every_setting_in_the_file_is_the_loaders_default(tmp_path: Path):
    cfg = load_config(AGENT_YAML, state_dir=tmp_path, public_key=tmp_path / "signing.pub")
    documented = yaml.safe_load(AGENT_YAML.read_text())
    expected = AgentConfig.defaults()
    for key in documented:
        assert getattr(cfg, key) == expected[key], f"{key}: the file says {documented[key]!r}"
        assert type(documented[key]) is type(expected[key]), f"{key}: write {expected[key]!r}"


def test_every_setting_is_documented_and_no_secret_or_required_path():
    documented = set(yaml.safe_load(AGENT_YAML.read_text()))
    assert documented == set(AgentConfig.defaults()) - NOT_IN_FILE
    assert not documented & NOT_IN_FILE


def test_commented_out_settings_are_known_and_not_the_default():
    expected = AgentConfig.defaults()
    commented = [
        line for line in AGENT_YAML.read_text().splitlines() if COMMENTED_SETTING.match(line)
    ]
    assert commented, "the file shows at least the host a device listens on"
    for line in commented:
        ((key, value),) = yaml.safe_load(line[2:]).items()
        assert key in expected, f"{line!r}: no such setting"
        assert value != expected[key], f"{line!r} is the default: uncomment it or drop it"
        assert "not the default" in line, f"{line!r}: say that it is not the default"


def test_host_defaults_to_loopback():
    assert AgentConfig.defaults()["host"] == "127.0.0.1"
    assert yaml.safe_load(AGENT_YAML.read_text())["host"] == "127.0.0.1"
