"""The load generator of bench/agent.py: wrk when it is installed, else a closed-loop asyncio
HTTP/1.1 client (``agent_load.py SPEC_JSON`` in a process of its own, pinned to ``spec["cpu"]``).

    run_load("wrk", port, "/v1/predict", body, headers, concurrency=8, duration=10, cpu=1, tmp=tmp)
    # {"requests", "seconds", "rps", "p50_ms", "p99_ms", "mean_ms", "errors"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


async def _client(
    spec: dict[str, Any], stop_at: float, lat: list[float], errors: list[int]
) -> None:
    body = spec["body"].encode()
    head = (
        f"POST {spec['path']} HTTP/1.1\r\nHost: 127.0.0.1:{spec['port']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in spec["headers"].items())
        + "\r\n"
    )
    request = head.encode() + body
    clen = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
    reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            writer.write(request)
            resp = await reader.readuntil(b"\r\n\r\n")
            m = clen.search(resp)
            await reader.readexactly(int(m.group(1)) if m else 0)
            lat.append(time.perf_counter() - t0)
            if resp[9:12] != b"200":
                errors[0] += 1
    finally:
        writer.close()


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    lat: list[float] = []
    errors = [0]
    start = time.perf_counter()
    stop_at = start + spec["duration"]
    await asyncio.gather(*(_client(spec, stop_at, lat, errors) for _ in range(spec["concurrency"])))
    elapsed = time.perf_counter() - start
    lat.sort()
    n = len(lat)
    return {
        "requests": n,
        "seconds": elapsed,
        "rps": n / elapsed,
        "p50_ms": lat[n // 2] * 1e3 if n else None,
        "p99_ms": lat[min(n - 1, int(0.99 * n))] * 1e3 if n else None,
        "mean_ms": sum(lat) / n * 1e3 if n else None,
        "errors": errors[0],
    }


def load(spec: dict[str, Any]) -> None:
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    print(json.dumps(_run_load(spec)))


def _run_load(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_load(spec))


# ---- wrk, or the client above in its own process ------------------------------------------------
WRK_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,"
    .. "\\"mean_us\\":%f,\\"status_errors\\":%d,\\"socket_errors\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def run_load(
    gen: str,
    port: int,
    path: str,
    body: str,
    headers: dict[str, str],
    concurrency: int,
    duration: float,
    cpu: int | None,
    tmp: Path,
) -> dict[str, Any]:
    preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    if gen == "wrk":
        lua = tmp / "post.lua"
        lua.write_text(
            WRK_LUA.format(
                body=body,
                headers="\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()),
            )
        )
        cmd = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}{path}",
        ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, preexec_fn=preexec, timeout=duration + 60
        )
        line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
        if out.returncode != 0 or line is None:
            raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        w = json.loads(line[len("WRKJSON ") :])
        secs = w["duration_us"] / 1e6
        return {
            "requests": w["requests"],
            "seconds": secs,
            "rps": w["requests"] / secs,
            "p50_ms": w["p50_us"] / 1e3,
            "p99_ms": w["p99_us"] / 1e3,
            "mean_ms": w["mean_us"] / 1e3,
            "errors": w["status_errors"] + w["socket_errors"],
        }
    spec = {
        "port": port,
        "path": path,
        "body": body,
        "headers": headers,
        "concurrency": concurrency,
        "duration": duration,
        "cpu": cpu,
    }
    out = subprocess.run(
        [sys.executable, __file__, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    load(json.loads(sys.argv[1]))
