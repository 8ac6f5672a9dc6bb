"""Bearer-token checks for the agent's routes: a deploy token, and a predict token.

The deploy token is the operator's: it may call everything, predicting included (post-deploy
golden checks). The predict token may call ``/v1/predict``, ``/v1/feedback`` and ``/v1/status``;
with ``predict_auth`` off (a trusted network) predicting needs no token at all.

    require(request, cfg, "deploy")   # 401 without a valid token, 403 with the predict token
"""

from __future__ import annotations

import hmac
from typing import Any

from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import ApiError


def _token(request: Any) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require(request: Any, cfg: AgentConfig, kind: str) -> None:
    """Bearer-token check in constant time. kind: predict | deploy | any."""
    token = _token(request)
    if kind == "predict" and not cfg.predict_auth:
        return
    if not token:
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <token>)",
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    is_deploy = hmac.compare_digest(token.encode(), cfg.deploy_token.encode())
    is_predict = bool(cfg.predict_token) and hmac.compare_digest(
        token.encode(), cfg.predict_token.encode()
    )
    # the deploy token is the operator's: it may also predict (post-deploy golden checks)
    ok = {"deploy": is_deploy, "predict": is_predict or is_deploy, "any": is_deploy or is_predict}[
        kind
    ]
    if not ok:
        if is_deploy or is_predict:
            raise ApiError(
                403, "forbidden", f"this token may not call this endpoint (needs the {kind} token)"
            )
        raise ApiError(
            401, "unauthorized", "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
