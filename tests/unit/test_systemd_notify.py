"""edgeops.edge.systemd.notify against a real AF_UNIX datagram socket, as systemd listens."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeops.edge.systemd import notify


def listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def path_socket(tmp_path_factory, monkeypatch) -> Iterator[socket.socket]:
    # a short directory: a socket path is limited to 107 bytes
    path = Path(tmp_path_factory.mktemp("sd")) / "notify"
    with listener(str(path)) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_ready_and_stopping_reach_the_socket(path_socket: socket.socket):
    assert notify("READY=1") is True
    assert path_socket.recv(4096) == b"READY=1"
    assert notify("STOPPING=1") is True
    assert path_socket.recv(4096) == b"STOPPING=1"


def test_several_lines_go_in_one_datagram(path_socket: socket.socket):
    assert notify("READY=1\nSTATUS=serving 1.0.0") is True
    assert path_socket.recv(4096) == b"READY=1\nSTATUS=serving 1.0.0"


def test_abstract_socket_named_with_an_at_sign(monkeypatch):
    name = f"edgeops-test-notify-{os.getpid()}-{os.urandom(4).hex()}"
    with listener("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("READY=1") is True
        assert sock.recv(4096) == b"READY=1"


def test_a_socket_nobody_listens_on_is_reported_not_raised(tmp_path_factory, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path_factory.mktemp("sd") / "gone"))
    assert notify("READY=1") is False
    assert "could not notify systemd" in caplog.text


def test_an_address_that_is_not_a_socket_path_is_refused(monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert notify("READY=1") is False
    assert "not a socket path" in caplog.text
