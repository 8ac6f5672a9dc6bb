"""Connection and request limits: what a flood of clients without a token cannot exhaust.

Two layers, both answering the agent's JSON error body (never uvicorn's plain text):

- :func:`guarded_protocol`, uvicorn's httptools protocol with the deadlines uvicorn lacks (it
  times out nothing before a request's headers are complete). A connection that starts no
  request within ``idle_timeout_seconds`` (a new one, or between keep-alive requests) is closed;
  a request whose headers are not complete ``header_timeout_seconds`` after its first byte gets
  408, over ``max_header_bytes`` 431, a malformed one 400, and is closed. Beyond
  ``max_connections`` the connection waiting longest for a request is closed to make room; a
  request being handled is never cut off.
- :class:`InflightLimitMiddleware`: at most ``max_inflight_requests`` requests in the app at
  once, and ``max_inflight_per_client`` from one client address; beyond, 503 ``overloaded`` with
  ``Retry-After``. ``/healthz``, ``/readyz`` and ``/metrics`` are always answered.

Uvicorn's own ``limit_concurrency`` (which counts idle connections too, and answers plain-text
503s) stays off.

    uvicorn.Config(app, http=guarded_protocol(cfg, metrics), limit_concurrency=None, ...)
    app.add_middleware(InflightLimitMiddleware, cfg=cfg, metrics=metrics)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edgeops.edge.config import AgentConfig
from edgeops.edge.errors import error_body
from edgeops.edge.metrics import Metrics

log = logging.getLogger("edgeops.agent")

#: always answered, however loaded the agent is: the probes and the metrics
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: seconds a client is told to wait after a 503 overloaded
RETRY_AFTER = 1
TICK = 0.25  # seconds between the reaper's checks of the connection deadlines
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def raw_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with the JSON error body."""
    body = error_body(code, message)
    head = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def guarded_protocol(cfg: AgentConfig, metrics: Metrics | None = None) -> type[asyncio.Protocol]:
    """Uvicorn's httptools protocol class with ``cfg``'s connection deadlines and cap."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    idle_s, header_s = cfg.idle_timeout_seconds, cfg.header_timeout_seconds
    max_header, max_conn = cfg.max_header_bytes, cfg.max_connections

    def closed(reason: str) -> None:
        if metrics is not None:
            metrics.closed.labels(reason).inc()

    class GuardedProtocol(HttpToolsProtocol):
        # connections without a request in the app (idle, or still sending headers), the one
        # waiting longest first: the ones closed to make room beyond max_connections. Their
        # deadlines are checked by one reaper per event loop (every TICK s), not by a timer per
        # request: two timers per keep-alive request cost ~15 % of the throughput of the echo.
        waiting: dict[GuardedProtocol, None] = {}
        reaper: asyncio.TimerHandle | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._since = 0.0  # when the current wait (idle, or for the headers) began
            self._in_headers = False  # a request's first byte arrived, its headers have not
            self._header_bytes = 0
            self._dispatched = False  # a request is in the app (or queued behind one)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if metrics is not None:
                metrics.connections.inc()
            if len(self.connections) > max_conn and not self._evict_one():
                closed("refused")
                self._answer(
                    503,
                    "overloaded",
                    "too many open connections; retry shortly",
                    {"retry-after": str(RETRY_AFTER)},
                )
                return
            self._wait()

        def connection_lost(self, exc: Exception | None) -> None:
            self.waiting.pop(self, None)
            if metrics is not None:
                metrics.connections.dec()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            counting = not self._dispatched
            super().data_received(data)
            if counting and self._in_headers and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._header_bytes > max_header:
                    closed("header_too_large")
                    self._answer(
                        431,
                        "header_too_large",
                        f"the request line and headers are over {max_header} bytes",
                    )

        def send_400_response(self, msg: str) -> None:
            closed("invalid_http")
            self._answer(400, "invalid_http", f"not a valid HTTP/1.1 request: {msg}")

        # parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers, self._header_bytes = True, 0
            self._since = self.loop.time()  # the header deadline runs from the first byte

        def on_headers_complete(self) -> None:
            self._in_headers, self._dispatched = False, True
            self.waiting.pop(self, None)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            if not pipelined and not self.transport.is_closing():
                self._dispatched = False
                self._wait()

        # deadlines
        def _wait(self) -> None:
            """No request now: the next must start within idle_timeout_seconds."""
            self.waiting.pop(self, None)
            self.waiting[self] = None
            self._in_headers, self._since = False, self.loop.time()
            if GuardedProtocol.reaper is None:  # (it stops while nothing waits)
                GuardedProtocol.reaper = self.loop.call_later(
                    TICK, GuardedProtocol._reap, self.loop
                )

        @classmethod
        def _reap(cls, loop: asyncio.AbstractEventLoop) -> None:
            """Close the waiting connections past their deadline; run again in TICK s."""
            now = loop.time()
            for proto in list(cls.waiting):
                if proto._in_headers and now - proto._since >= header_s:
                    proto._header_timeout()
                elif not proto._in_headers and now - proto._since >= idle_s:
                    proto._idle_timeout()
            cls.reaper = loop.call_later(TICK, cls._reap, loop) if cls.waiting else None

        def _idle_timeout(self) -> None:
            self.waiting.pop(self, None)
            if not self.transport.is_closing():
                closed("idle")
                self.transport.close()

        def _header_timeout(self) -> None:
            self.waiting.pop(self, None)
            if not self.transport.is_closing():
                closed("header_timeout")
                self._answer(
                    408,
                    "request_timeout",
                    f"the request headers did not arrive within {header_s:g} s",
                )

        def _evict_one(self) -> bool:
            for other in self.waiting:
                if other is not self:
                    self.waiting.pop(other)
                    closed("evicted")
                    other.transport.close()
                    return True
            return False

        def _answer(
            self, status: int, code: str, message: str, headers: dict[str, str] | None = None
        ) -> None:
            """Answer (unless a response of the app is under way) and close the connection."""
            self.waiting.pop(self, None)
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(raw_error(status, code, message, headers))
            self.transport.close()

    return GuardedProtocol


class InflightLimitMiddleware:
    """Pure ASGI middleware: 503 ``overloaded`` (JSON, ``Retry-After``) beyond
    ``max_inflight_requests`` requests in the app at once, or ``max_inflight_per_client`` from
    one client address; :data:`EXEMPT_PATHS` always pass. 0 switches a limit off."""

    def __init__(self, app: Any, cfg: AgentConfig, metrics: Metrics | None = None) -> None:
        self.app, self.metrics = app, metrics
        self.max_total = cfg.max_inflight_requests or float("inf")
        self.max_client = cfg.max_inflight_per_client or float("inf")
        self.total = 0
        self.by_client: dict[str, int] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown",))[0]
        mine = self.by_client.get(client, 0)
        if self.total >= self.max_total or mine >= self.max_client:
            who = "the agent" if self.total >= self.max_total else "this client"
            await _send_error(
                send,
                503,
                "overloaded",
                f"{who} has too many requests in flight; retry in {RETRY_AFTER} s",
                [(b"retry-after", str(RETRY_AFTER).encode())],
            )
            return
        self.total += 1
        self.by_client[client] = mine + 1
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.total -= 1
            left = self.by_client[client] - 1
            if left:
                self.by_client[client] = left
            else:
                del self.by_client[client]
            if self.metrics is not None:
                self.metrics.in_flight.dec()


async def _send_error(
    send: Any, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = error_body(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def raise_open_files_limit(max_connections: int) -> int:
    """Raise the soft open-files limit to fit ``max_connections`` (+ the agent's own files);
    return how many connections fit (fewer, with a warning, if the hard limit is lower)."""
    import resource

    need = max_connections + 128
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fit = max(16, soft - 128)
        log.warning(
            "open-files limit %d: max_connections lowered from %d to %d (raise LimitNOFILE)",
            soft,
            max_connections,
            fit,
        )
        return fit
    return max_connections
