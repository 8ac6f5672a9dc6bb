"""Bearer-token checks for the agent's routes: a deploy, a predict and a feedback token.

The deploy token is the operator's: it may call everything, predicting included (post-deploy
golden checks). The predict token may call ``/v1/predict`` and ``/v1/status``; with
``predict_auth`` off (a trusted network) predicting needs no token at all. Labels are a
privilege: ``/v1/feedback`` needs the feedback token (or the deploy token), never the predict
token that plant clients hold, whatever ``predict_auth`` says.

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


def _is(token: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def require(request: Any, cfg: AgentConfig, kind: str) -> None:
    """Bearer-token check in constant time. kind: predict | feedback | deploy | any."""
    token = _token(request)
    if kind == "predict" and not cfg.predict_auth:
        return
    if not token:
        raise ApiError(
            401,
            "unauthorized",
            "missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    is_deploy = _is(token, cfg.deploy_token)
    is_predict = _is(token, cfg.predict_token)
    is_feedback = _is(token, cfg.feedback_token)
    # the deploy token is the operator's: it may also predict (post-deploy golden checks) and
    # label; the predict token, which plant clients hold, never labels
    ok = {
        "deploy": is_deploy,
        "predict": is_predict or is_deploy,
        "feedback": is_feedback or is_deploy,
        "any": is_deploy or is_predict or is_feedback,
    }[kind]
    if not ok:
        if is_deploy or is_predict or is_feedback:
            why = f"needs the {kind} token"
            if kind == "feedback" and not cfg.feedback_token:
                why = (
                    "needs the feedback token, and this agent has none: give it one "
                    "(--feedback-token-file or EDGEOPS_FEEDBACK_TOKEN) or label with the "
                    "deploy token"
                )
            raise ApiError(403, "forbidden", f"this token may not call this endpoint ({why})")
        raise ApiError(
            401, "unauthorized", "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
