"""The agent's start: ``create_app(cfg, boot_now=True)`` (what ``edgeops edge serve`` runs) loads
the model in a thread while the app is built and the server starts; the app's start waits for
that boot, and fails with its error."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeops.edge.agent import create_app
from edgeops.edge.config import AgentConfig
from edgeops.edge.runtime import Runtime


@pytest.fixture
def cfg(tmp_path: Path, signing_keys: Path) -> AgentConfig:
    state = tmp_path / "state"
    state.mkdir()
    return AgentConfig(
        state_dir=state,
        public_key=signing_keys / "signing.pub",
        deploy_token="d" * 24,
        predict_token="p" * 24,
    )


def test_the_boot_runs_in_its_own_thread_and_the_start_waits_for_it(cfg, monkeypatch):
    boot, seen = Runtime.boot, {}

    def slow_boot(self: Runtime) -> None:
        seen["thread"] = threading.current_thread().name
        time.sleep(0.3)
        boot(self)
        seen["done"] = time.monotonic()

    monkeypatch.setattr(Runtime, "boot", slow_boot)
    app = create_app(cfg, boot_now=True)
    assert seen.get("thread") in (None, "edgeops-boot")  # under way while the app is built
    with TestClient(app) as client:
        assert "done" in seen and app.state.booting.done()
        assert seen["thread"] == "edgeops-boot"
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503  # booted: no model deployed yet


def test_a_failed_boot_fails_the_start(cfg, monkeypatch):
    def failing_boot(self: Runtime) -> None:
        raise RuntimeError("the state store is unreadable")

    monkeypatch.setattr(Runtime, "boot", failing_boot)
    app = create_app(cfg, boot_now=True)
    with pytest.raises(RuntimeError, match="unreadable"), TestClient(app):
        pass


def test_without_boot_now_the_app_boots_when_it_starts(cfg, monkeypatch):
    calls: list[str] = []
    boot = Runtime.boot
    monkeypatch.setattr(Runtime, "boot", lambda self: (calls.append("boot"), boot(self)))
    app = create_app(cfg)
    time.sleep(0.05)
    assert calls == [] and app.state.booting is None
    with TestClient(app):
        assert calls == ["boot"]
