"""The agent sends no telemetry: FastAPI's built-in OpenTelemetry stays off.

FastAPI >= 0.150 records spans, metrics and logs through whatever OpenTelemetry provider the
process has, and `FASTAPI_OTEL_AUTO_CONFIGURE=true` makes it add OTLP exporters from the
environment. Each check runs in a fresh interpreter: a global provider can be set only once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import tool_env

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    from pathlib import Path

    import httpx
    from fastapi import FastAPI
    from opentelemetry import trace

    spans = []

    class Recorder(trace.NoOpTracer):
        def start_span(self, name, *a, **k):
            spans.append(name)
            return super().start_span(name, *a, **k)

        def start_as_current_span(self, name, *a, **k):
            spans.append(name)
            return super().start_as_current_span(name, *a, **k)

    class Provider(trace.TracerProvider):
        def get_tracer(self, *a, **k):
            return Recorder()

    trace.set_tracer_provider(Provider())
    records = []
    logging.getLogger().addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r.getMessage())})())

    from edgeops.edge.agent import create_app
    from edgeops.edge.config import AgentConfig

    which, state, pub = sys.argv[1:4]
    if which == "agent":
        app = create_app(AgentConfig(state_dir=Path(state), public_key=Path(pub),
                                     deploy_token="d" * 24, predict_token="p" * 24).validate())
    else:
        app = FastAPI()
        app.get("/healthz")(lambda: {"ok": True})

    async def main():
        # the ASGI lifespan as uvicorn drives it (FastAPI's telemetry set-up hooks in there)
        inbox, outbox = asyncio.Queue(), asyncio.Queue()
        life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                       inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as c:
            for path in ("/healthz", "/v1/status", "/nowhere"):
                await c.get(path)
        await inbox.put({"type": "lifespan.shutdown"})
        await life

    asyncio.run(main())
    print(json.dumps({"spans": spans, "otel_logs": [m for m in records if "telemetry" in m.lower()]}))
    """
)


def run(which: str, tmp_path: Path) -> dict:
    env = tool_env()
    # the environment asks for OTLP export (edgeops' own default, OTEL_SDK_DISABLED, is lifted)
    env.pop("OTEL_SDK_DISABLED", None)
    env.update(FASTAPI_OTEL_AUTO_CONFIGURE="true", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    pub = Path(env["EDGEOPS_KEY_DIR"]) / "signing.pub"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, which, str(tmp_path), str(pub)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_plain_fastapi_would_trace_and_auto_configure(tmp_path: Path) -> None:
    # the control: the recorder sees a plain FastAPI app's spans and its OTLP auto-configuration
    seen = run("plain", tmp_path)
    assert seen["spans"], "the recording provider saw no spans: the check below would prove nothing"
    assert seen["otel_logs"]


def test_agent_makes_no_spans_and_ignores_otel_auto_configure(tmp_path: Path) -> None:
    seen = run("agent", tmp_path)
    assert seen == {"spans": [], "otel_logs": []}
