"""The servers of bench/agent.py: each case's server runs as ``agent_servers.py SPEC_JSON`` in a
process of its own (pinned to ``spec["cpu"]`` when given).

``spec["kind"]``: ``agent`` (the agent's create_app with the echo routes of :func:`echo_route`,
served with the agent's own uvicorn settings) or ``sklearn`` (the same FastAPI + uvicorn stack
serving models/model.joblib). The KServe peer is bench/kserve_peer.py, from its own venv.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]
DEPLOY_TOKEN = "bench-deploy-token-0123456789"
PREDICT_TOKEN = "bench-predict-token-9876543210"
# the scikit-learn baseline's uvicorn settings (the agent and echo cases use the agent's own:
# edgeops.edge.agent.uvicorn_settings, with its connection guard)
UVICORN = dict(log_level="warning", access_log=False, timeout_keep_alive=5, server_header=False)


def echo_route(app: Any) -> None:
    """POST /bench/echo, /bench/echo-onnx and /bench/echo-ort-noop on the agent's own app."""
    from starlette.requests import Request
    from starlette.responses import Response

    from edgeops.edge.agent import _json
    from edgeops.edge.inference import columns_to_feeds, rows_to_columns

    noop_session, noop_feed = noop_model()

    def model_call(body: dict[str, Any]) -> None:
        model = app.state.runtime.bundle.model
        model.predict_feeds(
            columns_to_feeds(rows_to_columns(body["rows"], model.inputs), model.inputs)
        )

    work = {
        "/bench/echo": lambda body: None,  # parse, answer with the agent's own JSON helper
        "/bench/echo-onnx": model_call,  # + the demo model's call alone
        "/bench/echo-ort-noop": lambda body: noop_session.run(None, noop_feed),  # + a no-op call
    }

    def endpoint(call: Any) -> Any:
        async def handler(request: Request) -> Response:
            body = json.loads(await request.body())
            call(body)
            return _json(body)

        # resolved here: this module's `from __future__ import annotations` leaves them as strings
        handler.__annotations__ = {"request": Request, "return": Response}
        return handler

    for path, call in work.items():
        app.add_api_route(path, endpoint(call), methods=["POST"], include_in_schema=False)
    # routes match in order: put these just before /v1/predict so they pay what it pays
    routes = app.router.routes
    added = routes[-len(work) :]
    del routes[-len(work) :]
    at = next(i for i, r in enumerate(routes) if getattr(r, "path", None) == "/v1/predict")
    routes[at:at] = added


def noop_model() -> tuple[Any, dict[str, Any]]:
    """An onnxruntime session (the agent's settings) of a 1-input Identity model, and its feed."""
    import numpy as np
    from onnx import TensorProto, helper

    from edgeops.edge.inference import make_session

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "noop", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return make_session(model.SerializeToString()), {"x": np.zeros((1, 1), np.float32)}


def agent_app(spec: dict[str, Any]) -> Any:
    from edgeops.edge.agent import create_app
    from edgeops.edge.config import AgentConfig

    cfg = AgentConfig(
        state_dir=Path(spec["state_dir"]),
        public_key=Path(spec["public_key"]),
        deploy_token=DEPLOY_TOKEN,
        predict_token=PREDICT_TOKEN,
        port=spec["port"],
    ).validate()
    app = create_app(cfg)
    echo_route(app)
    return app


def sklearn_app(spec: dict[str, Any]) -> Any:
    import joblib
    import numpy as np
    import pandas as pd
    import yaml
    from fastapi import FastAPI, Request
    from starlette.responses import Response

    from edgeops.edge.agent import FASTAPI_TELEMETRY_OFF, Metrics, MetricsMiddleware
    from edgeops.features import feature_frame
    from edgeops.schema import schema_from_dict

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    schema = schema_from_dict(params["validate"]["schema"])
    pipe = joblib.load(spec["model"])
    classes = [str(c) for c in pipe.classes_]
    names = [c.name for c in schema.features]
    app = FastAPI(title="sklearn baseline", telemetry=FASTAPI_TELEMETRY_OFF)
    app.add_middleware(MetricsMiddleware, metrics=Metrics())

    async def predict(request: Request) -> Response:
        rows = json.loads(await request.body())["rows"]
        X = feature_frame(pd.DataFrame(rows, columns=names), schema)
        proba = pipe.predict_proba(X)
        labels = pipe.classes_[np.argmax(proba, axis=1)]
        preds = [
            {
                "label": lab.item() if hasattr(lab, "item") else lab,
                "probabilities": dict(zip(classes, p.tolist(), strict=True)),
            }
            for lab, p in zip(labels, proba, strict=True)
        ]
        return Response(json.dumps({"predictions": preds}), media_type="application/json")

    predict.__annotations__ = {"request": Request, "return": Response}  # see echo_route
    app.add_api_route("/v1/predict", predict, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response('{"status":"ok"}', media_type="application/json")

    return app


def serve(spec: dict[str, Any]) -> None:
    import logging

    import uvicorn

    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    logging.basicConfig(level=logging.WARNING)
    if spec["kind"] in ("agent", "echo"):
        from edgeops.edge.agent import uvicorn_settings

        app = agent_app(spec)
        settings = uvicorn_settings(app.state.runtime.cfg, app)  # http: the guarded httptools
    else:
        app, settings = sklearn_app(spec), {**UVICORN, "http": spec["http"]}
    uvicorn.run(app, host="127.0.0.1", port=spec["port"], loop=spec["loop"], **settings)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
