"""The KServe peer of bench/agent.py: KServe's ModelServer serving the demo ONNX model.

    <kserve venv>/bin/python -I bench/kserve_peer.py SPEC_JSON

Runs in its own virtual environment (KServe pins its own FastAPI, uvicorn, pydantic, ...), so it
must not import edgeops. SPEC_JSON (from bench/agent.py) has ``model`` (the .onnx file),
``inputs`` (the manifest's inputs: name, input, dtype), ``classes``, ``name`` (the model's name
in the URL), ``port``, ``loop`` and ``cpu`` (pin to that CPU, or null).

POST /v1/models/<name>:predict with {"instances": [row, ...]} (a row is the JSON dict that the
agent's /v1/predict takes) answers {"predictions": [{"label", "probabilities"}, ...]}, as the
agent does. The feeds are built as edgeops.edge.inference builds them (rows_to_columns +
columns_to_feeds, copied below) and the session has the agent's settings (make_session), so the
work per request is the agent's model call. One worker, 127.0.0.1 only (KServe binds 0.0.0.0:
LoopbackModelServer), no gRPC, access and latency logging off. The loop is the one KServe's
``event_loop`` names ("auto": uvloop; see use_loop). KServe has no usage telemetry of its own;
FastAPI's built-in OpenTelemetry is switched off as in the agent, and bench/agent.py starts this
with the project's telemetry switches set.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

SPEC: dict[str, Any] = json.loads(sys.argv[1])
if SPEC.get("cpu") is not None:
    os.sched_setaffinity(0, {SPEC["cpu"]})
# kserve.model_server parses sys.argv when it is imported: leave it none of ours
sys.argv = sys.argv[:1]

import asyncio  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import logging  # noqa: E402
from importlib.metadata import version  # noqa: E402

import fastapi  # noqa: E402

# edgeops.edge.agent.FASTAPI_TELEMETRY_OFF: FastAPI >= 0.150 has OpenTelemetry built in
# (`FASTAPI_OTEL_AUTO_CONFIGURE` adds OTLP exporters); the agent switches all of it off
FASTAPI_TELEMETRY_OFF = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def fastapi_telemetry_off() -> bool:
    """KServe's app (kserve.model_server.app, made on import) with FastAPI's telemetry off."""
    init = fastapi.FastAPI.__init__
    if "telemetry" not in inspect.signature(init).parameters:
        return False  # a FastAPI without it

    @functools.wraps(init)
    def off(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("telemetry", FASTAPI_TELEMETRY_OFF)
        init(self, *args, **kwargs)

    fastapi.FastAPI.__init__ = off
    return True


TELEMETRY = "off" if fastapi_telemetry_off() else "not in this FastAPI"

import kserve  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

FLOAT = "float32"  # edgeops.edge.inference.FLOAT: numeric columns; anything else is a string


def rows_to_columns(rows: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> dict[str, list]:
    """edgeops.edge.inference.rows_to_columns."""
    return {spec["name"]: [row.get(spec["name"]) for row in rows] for spec in inputs}


def columns_to_feeds(columns: dict[str, list], inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """edgeops.edge.inference.columns_to_feeds: float32 / object arrays of shape [n, 1]."""
    feeds: dict[str, Any] = {}
    for spec in inputs:
        values = columns[spec["name"]]
        if spec["dtype"] == FLOAT:
            arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float32)
        else:
            arr = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
        feeds[spec["input"]] = arr.reshape(-1, 1)
    return feeds


def make_session(path: str) -> Any:
    """edgeops.edge.inference.make_session(threads=1, spin=True): the agent's settings."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class OnnxModel(kserve.Model):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec["name"])
        self.spec = spec
        self.inputs = [
            {"name": i["name"], "input": i.get("input") or i["name"], "dtype": i["dtype"]}
            for i in spec["inputs"]
        ]
        self.classes = [str(c) for c in spec["classes"]]
        self.session: Any = None
        self.outputs: list[str] = []

    def load(self) -> bool:
        self.session = make_session(self.spec["model"])
        self.outputs = [o.name for o in self.session.get_outputs()][:2]  # label, probabilities
        self.ready = True
        return self.ready

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict:
        rows = payload["instances"]
        feeds = columns_to_feeds(rows_to_columns(rows, self.inputs), self.inputs)
        label, proba = self.session.run(self.outputs, feeds)
        labels = np.asarray(label).reshape(-1).tolist()
        probas = np.asarray(proba, dtype=np.float64).tolist()
        return {
            "predictions": [
                {"label": lab, "probabilities": dict(zip(self.classes, p, strict=True))}
                for lab, p in zip(labels, probas, strict=True)
            ]
        }


class LoopbackModelServer(kserve.ModelServer):
    """ModelServer whose REST server listens on 127.0.0.1 (KServe binds 0.0.0.0) with uvicorn's
    access log off. ``_serve`` runs once start() has built the REST server, before it binds."""

    async def _serve(self) -> None:
        config = self._rest_server.config
        config.host, config.access_log = "127.0.0.1", False
        loop = type(asyncio.get_running_loop())
        print(
            f"kserve peer: kserve {version('kserve')} on {config.host}:{config.port},"
            f" loop {loop.__module__}.{loop.__name__}, http {config.http},"
            f" FastAPI telemetry {TELEMETRY}",
            flush=True,
        )
        await super()._serve()


def use_loop(choice: str) -> None:
    """The loop KServe's ``event_loop`` means ("auto": uvloop when installed). Its one-worker
    server awaits uvicorn's serve() in its own asyncio.run, and uvicorn (>= 0.36) picks the loop
    only in run(): without this it would be asyncio's whatever it is told."""
    if choice == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # ModelServer.start calls asyncio.get_event_loop(), which asyncio's policy answers with a
    # new loop and uvloop's with an error: give it one, as asyncio would
    asyncio.set_event_loop(asyncio.new_event_loop())


def main() -> None:
    model = OnnxModel(SPEC)
    model.load()
    server = LoopbackModelServer(
        http_port=SPEC["port"],
        workers=1,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
        event_loop=SPEC.get("loop", "auto"),
        grace_period=5,
    )
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    use_loop(SPEC.get("loop", "auto"))
    server.start([model])


if __name__ == "__main__":
    main()
