"""The agent's HTTP routes, one module per concern, each a thin layer over the runtime.

- :mod:`~edgeops.edge.routes.serving`: ``POST /v1/predict``, ``POST /v1/feedback``
- :mod:`~edgeops.edge.routes.deploy`: ``POST /v1/bundles``, ``GET /v1/bundles/{version}``,
  ``POST /v1/rollback``
- :mod:`~edgeops.edge.routes.logs`: ``GET /v1/logs``, ``GET /v1/logs/feedback``
- :mod:`~edgeops.edge.routes.ops`: ``GET /v1/status``, ``/healthz``, ``/readyz``, ``/metrics``

Each module holds a class of handlers (one small async method per route that turns the request
into a call on :class:`~edgeops.edge.runtime.Runtime` and the result into JSON) and
``add_routes(app, runtime, cfg)``, which registers them with their OpenAPI description.
Routes go on the app itself (not an included ``APIRouter``) and in the order they were always
registered: a request is matched against them in that order.
"""
