"""The agent's in-flight limits, its metrics bookkeeping and their settings, without a server
(tests/integration/test_agent_flood.py and test_prometheus.py run them against real agents)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edgeops.edge.config import AgentConfig, ConfigError, load_config
from edgeops.edge.limits import InflightLimitMiddleware, raw_error
from edgeops.edge.metrics import Metrics


def cfg(tmp_path: Path, **kw: Any) -> AgentConfig:
    return AgentConfig(state_dir=tmp_path, public_key=tmp_path / "signing.pub", **kw)


def test_in_flight_limits_per_client_and_overall(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    metrics = Metrics()
    limit = InflightLimitMiddleware(
        app, cfg(tmp_path, max_inflight_requests=4, max_inflight_per_client=2), metrics
    )

    async def call(client: str, path: str = "/v1/predict") -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "path": path, "client": (client, 1234)}
        await limit(scope, None, send)
        return sent

    async def scenario() -> None:
        held = [asyncio.create_task(call(c)) for c in ("10.0.0.1", "10.0.0.1", "10.0.0.2")]
        await asyncio.sleep(0)
        assert limit.total == 3 and metrics.in_flight._value.get() == 3
        refused = await call("10.0.0.1")  # over its own limit
        assert refused[0]["status"] == 503
        assert (b"retry-after", b"1") in refused[0]["headers"]
        assert json.loads(refused[1]["body"])["error"]["code"] == "overloaded"
        assert b"this client" in refused[1]["body"]
        held.append(asyncio.create_task(call("10.0.0.2")))
        await asyncio.sleep(0)
        assert b"the agent" in (await call("10.0.0.3"))[1]["body"]  # over the overall limit
        probe = asyncio.create_task(call("10.0.0.3", "/healthz"))  # never refused
        release.set()
        assert (await probe)[0]["status"] == 200
        assert [(await t)[0]["status"] for t in held] == [200] * 4
        assert limit.total == 0 and limit.by_client == {}

    asyncio.run(scenario())


def test_raw_error_is_a_complete_json_response() -> None:
    raw = raw_error(408, "request_timeout", "too slow")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"content-type: application/json" in head and b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
    assert json.loads(body) == {"error": {"code": "request_timeout", "message": "too slow"}}


def test_dropped_log_rows_are_a_counter_across_a_reopened_log() -> None:
    m = Metrics()
    for dropped in (0, 3, 3, 5, 0, 2):  # the log was reopened after 5: it counts from 0 again
        m.log_stats({"rows": 1, "bytes": 2, "dropped": dropped})
    assert m.log_dropped._value.get() == 7


def test_metrics_token_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("EDGEOPS_METRICS_TOKEN", raising=False)
    base = {"state_dir": tmp_path, "public_key": tmp_path / "k.pub"}
    assert load_config(None, **base).metrics_token == ""
    monkeypatch.setenv("EDGEOPS_METRICS_TOKEN", "from-env")
    assert load_config(None, **base).metrics_token == "from-env"
    token = tmp_path / "metrics.token"
    token.write_text("from-file\n")
    assert load_config(None, metrics_token_file=str(token), **base).metrics_token == "from-file"
    with pytest.raises(ConfigError, match="not found"):
        load_config(None, metrics_token_file=str(tmp_path / "missing"), **base)


@pytest.mark.parametrize(
    "bad", [{"idle_timeout_seconds": 0}, {"max_connections": -1}, {"metrics_port": 8710}]
)
def test_bad_limits_are_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    (tmp_path / "signing.pub").write_text("key")
    with pytest.raises(ConfigError):
        cfg(tmp_path, deploy_token="d", predict_token="p", **bad).validate()
