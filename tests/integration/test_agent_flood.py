"""A flood of clients without a token against a real agent (`edgeops edge serve` on loopback).

Silent and slow clients are dropped on time, the probes and a predict with a token are answered
while they hang on, and a request beyond the in-flight limits gets the JSON 503 ``overloaded``:
never uvicorn's plain-text 503, whatever the number of connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent_process import PREDICT_TOKEN, AgentProcess, Agents
from tests.bundles import make_bundle

pytestmark = pytest.mark.integration

IDLE_S = HEADER_S = 3.0  # the agent's idle and header timeouts in these tests
IDLE_SOCKETS, SLOW_SOCKETS = 300, 20
PREDICT = {"Authorization": f"Bearer {PREDICT_TOKEN}"}


# ---- helpers ---------------------------------------------------------------------------------
def client(agent: AgentProcess, source: str | None = None, timeout: float = 10.0) -> httpx.Client:
    """An httpx client of the agent; ``source``: the loopback address it connects from."""
    transport = httpx.HTTPTransport(local_address=source) if source else None
    return httpx.Client(base_url=agent.url, timeout=timeout, trust_env=False, transport=transport)


def golden_rows(bundle: Path, n: int = 2) -> list[dict[str, Any]]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    cats = {i["name"]: set(i["categories"]) for i in manifest["inputs"] if "categories" in i}
    rows = [
        ex["inputs"]
        for ex in manifest["golden"]["examples"]
        if all(ex["inputs"][k] is None or ex["inputs"][k] in ok for k, ok in cats.items())
    ]
    return rows[:n]


def json_error(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json"), r.text
    return r.json()["error"]


def metric(c: httpx.Client, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    r = c.get("/metrics")
    assert r.status_code == 200, r.text
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def connect(agent: AgentProcess, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", agent.port))
    return s


def read_until_closed(
    socks: list[socket.socket], timeout: float
) -> dict[socket.socket, tuple[float, bytes]]:
    """Read every socket until the server closes it: ``{sock: (when, bytes read)}``; the ones
    still open after ``timeout`` are left out."""
    sel = selectors.DefaultSelector()
    got: dict[socket.socket, bytearray] = {}
    done: dict[socket.socket, tuple[float, bytes]] = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = bytearray()
    deadline = time.monotonic() + timeout
    while len(done) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # reset: closed too
                chunk = b""
            if chunk:
                got[s] += chunk
            else:
                done[s] = (time.monotonic(), bytes(got[s]))
                sel.unregister(s)
    sel.close()
    return done


def response_of(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, signing_keys: Path) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "v1", signing_keys, "1.0.0")


@pytest.fixture
def start_agent(tmp_path: Path, signing_keys: Path, bundle: Path) -> Iterator[Any]:
    agents = Agents(tmp_path, signing_keys / "signing.pub", bundle)
    yield agents.start
    agents.stop_all()


# ---- 1. silent and slow clients --------------------------------------------------------------
def test_idle_and_slow_clients_are_dropped_on_time_and_starve_nobody(
    start_agent: Any, bundle: Path
) -> None:
    agent = start_agent({"idle_timeout_seconds": IDLE_S, "header_timeout_seconds": HEADER_S})
    rows = golden_rows(bundle)
    idle: list[socket.socket] = []
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        opened = time.monotonic()
        idle = [connect(agent) for _ in range(IDLE_SOCKETS)]  # connect, then say nothing
        slow = [connect(agent) for _ in range(SLOW_SOCKETS)]
        slow_started = time.monotonic()
        for s in slow:  # a request line, then a header line every 0.3 s, never the blank line
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: agent\r\n")

        def dribble() -> None:
            n = 0
            while not stop.wait(0.3):
                n += 1
                for s in slow:
                    with contextlib.suppress(OSError):  # closed by the agent: as it should
                        s.send(f"X-Slow-{n}: 1\r\n".encode())

        threading.Thread(target=dribble, daemon=True).start()
        with client(agent) as c:
            wait_for(
                lambda: (metric(c, "edgeops_connections") or 0) >= IDLE_SOCKETS + SLOW_SOCKETS,
                2.0,
                "the agent to accept every connection",
            )
            # the uvicorn default of old (limit_concurrency=256) answered everything 503 here
            for path in ("/healthz", "/readyz"):
                t0 = time.monotonic()
                r = c.get(path)
                assert r.status_code == 200, r.text
                assert time.monotonic() - t0 < 1.0
            r = c.post("/v1/predict", json={"rows": rows}, headers=PREDICT)
            assert r.status_code == 200, r.text
            assert len(r.json()["predictions"]) == len(rows)
            assert time.monotonic() - opened < IDLE_S, "the checks ran after the idle timeout"

        # every silent socket is closed by the agent within the idle timeout (plus slack)
        closed = read_until_closed(idle + slow, timeout=max(IDLE_S, HEADER_S) + 3.0)
        stop.set()
        assert len(closed) == IDLE_SOCKETS + SLOW_SOCKETS, "some connections were never closed"
        for s in idle:
            when, data = closed[s]
            assert data == b""  # no request, nothing to answer
            assert IDLE_S - 0.5 <= when - opened <= IDLE_S + 2.0
        # headers dribbled byte by byte do not extend the deadline: 408 (JSON) and closed
        for s in slow:
            when, data = closed[s]
            assert HEADER_S - 0.5 <= when - slow_started <= HEADER_S + 2.0
            status, headers, body = response_of(data)
            assert status == 408 and headers["content-type"] == "application/json"
            assert json.loads(body)["error"]["code"] == "request_timeout"

        with client(agent) as c:
            assert metric(c, "edgeops_connections_closed_total", reason="idle") >= IDLE_SOCKETS
            assert (
                metric(c, "edgeops_connections_closed_total", reason="header_timeout")
                == SLOW_SOCKETS
            )
    finally:
        stop.set()
        for s in idle + slow:
            s.close()


def test_keep_alive_malformed_oversized_and_too_many_connections(start_agent: Any) -> None:
    agent = start_agent(
        {"idle_timeout_seconds": IDLE_S, "max_header_bytes": 8192, "max_connections": 100}
    )
    # a keep-alive connection is closed the idle timeout after its last response
    s = connect(agent)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n")
    t0 = time.monotonic()
    ((when, data),) = read_until_closed([s], timeout=IDLE_S + 3.0).values()
    assert response_of(data)[0] == 200 and IDLE_S - 0.5 <= when - t0 <= IDLE_S + 2.0
    s.close()
    # not HTTP: a JSON 400, then closed
    s = connect(agent)
    s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    ((_, data),) = read_until_closed([s], timeout=5).values()
    status, headers, body = response_of(data)
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_http"
    s.close()
    # headers over max_header_bytes: a JSON 431, then closed
    s = connect(agent)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n" + b"X-Big: " + b"a" * 9000)
    ((_, data),) = read_until_closed([s], timeout=5).values()
    status, headers, body = response_of(data)
    assert status == 431 and json.loads(body)["error"]["code"] == "header_too_large"
    s.close()

    # beyond max_connections the connections waiting longest are closed at once, the newest
    # (a probe's) is answered
    idle = [connect(agent) for _ in range(150)]
    try:
        closed = read_until_closed(idle[:50], timeout=IDLE_S / 2)
        assert len(closed) == 50 and all(data == b"" for _, data in closed.values())
        with client(agent) as c:
            assert c.get("/healthz").status_code == 200
            assert metric(c, "edgeops_connections_closed_total", reason="evicted") >= 50
            assert metric(c, "edgeops_connections") <= 100
    finally:
        for s in idle:
            s.close()


# ---- 2. the in-flight limits -----------------------------------------------------------------
def hold(agent: AgentProcess, source: str) -> socket.socket:
    """A predict with a token whose body never finishes: in flight until the socket closes."""
    s = connect(agent, source)
    s.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer "
        + PREDICT_TOKEN.encode()
        + b"\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"rows": ['
    )
    return s


def test_in_flight_limits_answer_json_503_and_spare_the_probes(
    start_agent: Any, bundle: Path
) -> None:
    agent = start_agent({"max_inflight_requests": 6, "max_inflight_per_client": 4})
    rows = golden_rows(bundle)
    held: list[socket.socket] = []
    try:
        with client(agent) as c, client(agent, "127.0.0.2") as c2, client(agent, "127.0.0.3") as c3:

            def in_flight() -> float:
                return metric(c3, "edgeops_requests_in_flight") or 0.0

            # one client at its limit: its next request is refused, another client's is not
            held += [hold(agent, "127.0.0.1") for _ in range(4)]
            wait_for(lambda: in_flight() == 4, 5, "4 requests in flight")
            r = c.post("/v1/predict", json={"rows": rows}, headers=PREDICT)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            err = json_error(r)
            assert err["code"] == "overloaded" and "this client" in err["message"]
            assert c2.post("/v1/predict", json={"rows": rows}, headers=PREDICT).status_code == 200

            # the agent at its limit: everyone's request is refused, but the probes answer
            held += [hold(agent, "127.0.0.2") for _ in range(2)]
            wait_for(lambda: in_flight() == 6, 5, "6 requests in flight")
            r = c3.post("/v1/predict", json={"rows": rows}, headers=PREDICT)
            assert r.status_code == 503 and "the agent" in json_error(r)["message"]
            r = c3.get("/v1/status", headers=PREDICT)  # any route but the probes
            assert r.status_code == 503 and json_error(r)["code"] == "overloaded"
            for path in ("/healthz", "/readyz", "/metrics"):
                assert c3.get(path).status_code == 200, path

            # the held requests end with their connections: everything is served again
            for s in held:
                s.close()
            held.clear()
            wait_for(lambda: in_flight() == 0, 5, "the held requests to end")
            assert c.post("/v1/predict", json={"rows": rows}, headers=PREDICT).status_code == 200

        # a burst of 100 keep-alive clients at once: 200 or the JSON 503, never plain text
        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            async with httpx.AsyncClient(
                base_url=agent.url, timeout=30, trust_env=False, limits=limits
            ) as ac:
                return await asyncio.gather(
                    *(
                        ac.post("/v1/predict", json={"rows": rows}, headers=PREDICT)
                        for _ in range(100)
                    )
                )

        answers = asyncio.run(burst())
        assert {r.status_code for r in answers} <= {200, 503}
        assert any(r.status_code == 200 for r in answers)
        for r in answers:
            if r.status_code == 503:
                assert json_error(r)["code"] == "overloaded" and r.headers["retry-after"] == "1"
    finally:
        for s in held:
            s.close()
