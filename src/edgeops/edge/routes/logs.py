"""Log routes: the inference log and its feedback events, read by cursor (the deploy token).

    GET /v1/logs?after=ID&limit=N            logged predictions with id > after
    GET /v1/logs/feedback?after=SEQ&limit=N  feedback events with seq > after

Both answer ``{"items", "next", "last", "log_id"}``: ``edgeops monitor`` collects with them and
tells a reset log by its ``log_id``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from edgeops.edge.auth import require
from edgeops.edge.bodies import json_response
from edgeops.edge.config import AgentConfig
from edgeops.edge.runtime import Runtime


class LogRoutes:
    """The handlers of ``/v1/logs`` and ``/v1/logs/feedback`` over ``runtime``'s inference log."""

    def __init__(self, runtime: Runtime, cfg: AgentConfig) -> None:
        self.runtime, self.cfg = runtime, cfg

    async def logs(
        self,
        request: Request,
        after: int = Query(0, ge=0, le=2**62),
        limit: int = Query(500, ge=1, le=5000),
    ) -> Any:
        """Logged predictions with id > ``after`` (a cursor), oldest first.

        ``{"items", "next", "last", "log_id"}``: ``next`` is the cursor for the next call,
        ``last`` the highest id in the log, ``log_id`` names the log (a new one: it was reset).
        """
        require(request, self.cfg, "deploy")
        inference_log = self.runtime.log

        def page() -> tuple[list[dict[str, Any]], int, int]:
            items, cursor = inference_log.read(after, limit)
            return items, cursor, inference_log.last_id()

        items, cursor, last = await run_in_threadpool(page)
        return json_response(
            {"items": items, "next": cursor, "last": last, "log_id": inference_log.log_id}
        )

    async def feedback_log(
        self,
        request: Request,
        after: int = Query(0, ge=0, le=2**62),
        limit: int = Query(500, ge=1, le=5000),
    ) -> Any:
        """Feedback events with seq > ``after`` (a cursor): labels given after a row was read.

        ``{"items", "next", "last", "log_id"}``, items ``{id, request_id, row, feedback,
        feedback_ts, seq}``; each ``POST /v1/feedback`` is one seq. A page holds whole seqs
        (one seq's rows are never split, so a page may exceed ``limit`` when a single feedback
        call updated more rows); ``last`` is the last seq handed out.
        """
        require(request, self.cfg, "deploy")
        inference_log = self.runtime.log

        def page() -> tuple[list[dict[str, Any]], int, int]:
            items, cursor = inference_log.read_feedback(after, limit)
            return items, cursor, inference_log.last_feedback_seq()

        items, cursor, last = await run_in_threadpool(page)
        return json_response(
            {"items": items, "next": cursor, "last": last, "log_id": inference_log.log_id}
        )


def add_routes(app: FastAPI, runtime: Runtime, cfg: AgentConfig) -> None:
    """Register ``GET /v1/logs`` and ``GET /v1/logs/feedback`` on ``app``."""
    routes = LogRoutes(runtime, cfg)
    app.add_api_route("/v1/logs", routes.logs, methods=["GET"], tags=["monitor"])
    app.add_api_route("/v1/logs/feedback", routes.feedback_log, methods=["GET"], tags=["monitor"])
