"""The registry under concurrent deploys: never rewritten from a stale read, no version lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgeops.deploy.registry import Registry
from edgeops.errors import EdgeopsError


def manifest(version: str) -> dict:
    return {"model": {"name": "plant-failure", "version": version}, "metrics": {"roc_auc": 0.9}}


def test_a_save_from_a_stale_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    a, b = Registry(path), Registry(path)  # both read the (absent) registry
    a.register(manifest("1.0.0"), "sha-a", "alice")
    a.save()
    b.register(manifest("2.0.0"), "sha-b", "bob")
    with pytest.raises(EdgeopsError, match="changed on disk since this command read it"):
        b.save()
    assert list(Registry(path).data["models"]["plant-failure"]["versions"]) == ["1.0.0"]
    a.set_stage("plant-failure", "1.0.0", "staging", "alice")
    a.save()  # its own earlier write is not "stale"


def test_a_second_deploy_waits_for_the_lock_and_reads_afresh(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    first, second = Registry(path), Registry(path)
    holding = threading.Event()

    def deploy_first() -> None:
        with first.locked():
            holding.set()
            first.register(manifest("1.0.0"), "sha-a", "alice")
            time.sleep(0.6)
            first.save()

    t = threading.Thread(target=deploy_first)
    t.start()
    holding.wait(5)
    said: list[str] = []
    start = time.monotonic()
    with second.locked(log=said.append):
        waited = time.monotonic() - start
        second.register(manifest("2.0.0"), "sha-b", "bob")
        second.save()
    t.join()
    assert waited >= 0.4
    assert len(said) == 1 and "waiting for another deploy to finish: pid" in said[0]
    assert sorted(Registry(path).data["models"]["plant-failure"]["versions"]) == ["1.0.0", "2.0.0"]


def test_a_lock_held_too_long_stops_with_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    holder, waiter = Registry(path), Registry(path)
    with (
        holder.locked(),
        pytest.raises(EdgeopsError, match=r"held by another deploy \(pid \d+ on .*since"),
        waiter.locked(timeout=0.3, log=lambda _m: None),
    ):
        pass
