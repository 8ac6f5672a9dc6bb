"""Fixtures the agent tests share: the trusted public key and agents started on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import Agents


@pytest.fixture(scope="module")
def pub(signing_keys: Path) -> Path:
    return signing_keys / "signing.pub"


@pytest.fixture
def agents(tmp_path: Path, pub: Path) -> Iterator[Agents]:
    a = Agents(tmp_path, pub)
    yield a
    a.stop_all()


@pytest.fixture(scope="module")
def module_agents(tmp_path_factory, pub: Path) -> Iterator[Agents]:
    a = Agents(tmp_path_factory.mktemp("agents"), pub)
    yield a
    a.stop_all()
