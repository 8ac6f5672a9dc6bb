"""A hostile "agent" for the monitor's tests: it answers the collector's calls the way a broken,
tampered-with or impostor device might. Run as its own process:

    python -m tests.hostile_agent --port P --mode stuck [--redirect-to URL] [--record FILE]

Modes (each answers ``GET /v1/logs`` like a real agent for the collector's first call, ``after=0
limit=1``, then misbehaves):

- ``stuck``: the same rows whatever the cursor says;
- ``backwards``: after the first page, ids that go back before the cursor;
- ``trickle``: a page announced whole, then sent one byte every two seconds;
- ``huge``: every page 300 MB, its length not announced (sent as it is made: the server holds
  one row);
- ``long_string``: the second row's remark is 40 MB of text;
- ``string_ids``, ``int_category``, ``nested``: rows whose id is text, whose categorical
  feature is a number, whose feature is an object;
- ``redirect``: 302 to ``--redirect-to`` (the collector must not follow it);
- ``server_error``: 500 with an error body that is not the agent's shape;
- ``deep_json``: a page of JSON nested 100,000 levels deep;
- ``record``: answers 404 to everything and appends each request's headers to ``--record``
  (the address a redirect points at).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOG_ID = "0123456789abcdef"
LAST = 1_000_000


def row(i: int, **features: Any) -> dict[str, Any]:
    base = {
        "timestamp": "2026-12-07T10:00:00Z",
        "machine_type": "M",
        "product_line": "pump",
        "air_temp_k": 300.0,
        "process_temp_k": 310.0,
        "spindle_speed_rpm": 1500.0,
        "torque_nm": 40.0,
        "tool_wear_min": 100.0,
        "vibration_mm_s": 3.0,
    }
    return {
        "id": i,
        "ts": time.time(),
        "request_id": f"{i:032x}",
        "row": 0,
        "model_version": "1.0.0",
        "label": 0,
        "probabilities": [0.9, 0.1],
        "features": {**base, **features},
    }


def page(items: list[Any]) -> bytes:
    return json.dumps({"items": items, "next": 0, "last": LAST, "log_id": LOG_ID}).encode()


class Handler(BaseHTTPRequestHandler):
    mode = "stuck"
    redirect_to = ""
    record = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        q = {k: int(v[0]) for k, v in parse_qs(url.query).items() if v[0].isdigit()}
        after, limit = q.get("after", 0), q.get("limit", 500)
        if self.mode == "record":
            with open(self.record, "a") as f:
                f.write(json.dumps({"path": self.path, "headers": dict(self.headers)}) + "\n")
            return self.send(404, b'{"error": {"code": "not_found", "message": "no"}}')
        if url.path == "/v1/status":
            return self.send(200, json.dumps({"active": {"version": "1.0.0"}}).encode())
        if url.path == "/v1/logs/feedback":
            return self.send(200, page([]))
        if url.path != "/v1/logs":
            return self.send(404, b'{"error": {"code": "not_found", "message": "no"}}')
        if after == 0 and limit == 1 and self.mode not in ("huge", "redirect"):
            return self.send(200, page([row(1)]))  # the collector's first call: like an agent
        getattr(self, "mode_" + self.mode)(after, limit)

    def mode_stuck(self, after: int, limit: int) -> None:
        self.send(200, page([row(i) for i in range(1, min(limit, 5000) + 1)]))

    def mode_backwards(self, after: int, limit: int) -> None:
        first = max(1, after - 50) if after else 1
        self.send(200, page([row(i) for i in range(first, first + min(limit, 100))]))

    def mode_trickle(self, after: int, limit: int) -> None:
        body = page([row(i) for i in range(after + 1, after + 11)])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for b in body:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(2)

    def mode_huge(self, after: int, limit: int) -> None:
        one = json.dumps(row(1, note="x" * 10_000)).encode()
        n = 300_000_000 // (len(one) + 1)
        head, tail = (
            b'{"items": [',
            b'], "next": 0, "last": 1000000, "log_id": "' + LOG_ID.encode() + b'"}',
        )
        self.send_response(200)  # no length announced: the collector learns it by reading
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(head)
            for i in range(n):
                self.wfile.write(one + (b"," if i < n - 1 else b""))
            self.wfile.write(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the collector stopped reading: what it should do

    def mode_long_string(self, after: int, limit: int) -> None:
        ids = range(after + 1, after + 1 + min(limit, 10))
        items = [row(i, note="y" * 40_000_000) if i == 2 else row(i) for i in ids]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send(200, page(items))

    def mode_string_ids(self, after: int, limit: int) -> None:
        self.send(200, page([{**row(after + 1), "id": "abc"}]))

    def mode_int_category(self, after: int, limit: int) -> None:
        self.send(200, page([row(after + 1), row(after + 2, machine_type=3)]))

    def mode_nested(self, after: int, limit: int) -> None:
        self.send(200, page([row(after + 1, torque_nm={"value": 40, "unit": "Nm"})]))

    def mode_server_error(self, after: int, limit: int) -> None:
        self.send(500, b'{"error": "x", "fields": ["a"]}')

    def mode_deep_json(self, after: int, limit: int) -> None:
        self.send(200, b"[" * 100_000 + b"]" * 100_000)

    def mode_redirect(self, after: int, limit: int) -> None:
        self.send_response(302)
        self.send_header("Location", self.redirect_to + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--redirect-to", default="")
    p.add_argument("--record", default="")
    args = p.parse_args()
    Handler.mode, Handler.redirect_to, Handler.record = args.mode, args.redirect_to, args.record
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
