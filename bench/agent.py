"""Benchmark: the edge agent over loopback, against a bare echo endpoint, against scikit-learn
and against a peer model server (KServe) serving the same ONNX model.

    .venv/bin/python bench/agent.py [--duration 10] [--warmup 2] [--concurrency 8]
                                    [--loadgen auto|wrk|python] [--uvicorn-loop auto|asyncio|uvloop]
                                    [--uvicorn-http auto|h11|httptools] [--cases NAME ...]

Six cases (--cases picks some, e.g. ``--cases echo+onnx agent kserve``), each served by its own
process (1 worker, loopback, access log off; the first five with the settings of ``edgeops edge
serve``), measured one after the other, with 1-row POST requests:

  echo       the agent's create_app(cfg) plus one extra route, POST /bench/echo, that parses the
             JSON body and sends it back with the agent's own JSON answer: the same middleware,
             routing position and uvicorn settings, no model, no auth
  echo+ort-noop  the echo plus the cheapest onnxruntime call there is (a 1-input Identity
             model): the floor of anything that calls onnxruntime once per request
  echo+onnx  the echo plus the model call alone (feeds + onnxruntime, nothing else): the floor
             of any agent that serves this model through onnxruntime on this stack
  agent      the agent's POST /v1/predict with the demo bundle (auth, validation, model, log,
             metrics): models/bundle from `make demo` (re-signed with a throw-away key when its
             own key is not here), else a bundle built with tests/bundles.make_bundle
  sklearn    the same FastAPI + uvicorn stack serving models/model.joblib: a one-row DataFrame
             from the JSON row (edgeops.features.feature_frame), predict_proba
  kserve     a peer: KServe's ModelServer (KSERVE_VERSION) with a kserve.Model (bench/kserve_peer.py)
             that opens the same model.onnx with the agent's onnxruntime settings (1 intra-op
             thread), builds the feeds as echo+onnx does and answers label + probabilities per
             row; POST /v1/models/edgeops:predict with the V1 body {"instances": [row]}. KServe
             pins its own FastAPI/uvicorn/pydantic, so it runs from its own venv,
             .venv-bench/kserve (python 3.11; kserve, and the onnxruntime and numpy versions of
             this venv), created on first use with uv and reused after; 127.0.0.1 only, no gRPC,
             access and latency logs off, uvloop as KServe's event_loop "auto" means (asyncio
             with --uvicorn-loop asyncio), FastAPI's built-in telemetry off as in the agent and
             the project's telemetry switches set (KServe itself has no usage telemetry). Its
             answer is checked against the manifest's golden probabilities before the load.
             Without uv or the package index the case is reported as skipped, with the reason,
             and the rest runs

The load generator runs in another process: wrk when it is installed (apt-get install wrk),
else a closed-loop asyncio HTTP/1.1 client of this script. Each target gets a warm-up, then a
fixed duration at concurrency 1 (latency) and at --concurrency (throughput). With 2+ CPUs the
server is pinned to CPU 0 and the load generator to CPU 1 (--no-pin to switch that off).
Results: a table with the ratios against their targets (the agent against the echo and
scikit-learn, and "agent at least as fast as the peer": p50 kserve/agent >= 1 and throughput
agent/kserve >= 1; and, for reading them, the floor's own ratios and the agent's overhead over
the floor), and reports/bench/agent.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_load import run_load  # noqa: E402
from agent_servers import DEPLOY_TOKEN, PREDICT_TOKEN, REPO, UVICORN  # noqa: E402
from kserve_venv import KSERVE_EXCLUDE_NEWER, KSERVE_VENV, kserve_venv  # noqa: E402

SERVERS = Path(__file__).with_name("agent_servers.py")
TARGETS = {
    "p50 agent/echo": ("<=", 1.2),
    "throughput agent/echo": (">=", 0.8),
    "p50 sklearn/agent": (">=", 10.0),
    # the agent at least as fast as the peer model server serving the same model
    "p50 kserve/agent": (">=", 1.0),
    "throughput agent/kserve": (">=", 1.0),
}
# the peer: KServe's ModelServer from its own venv (pinned: bench/kserve_venv.py)
KSERVE_PEER = Path(__file__).with_name("kserve_peer.py")
KSERVE_MODEL = "edgeops"  # the model's name in KServe's URLs
# case -> (server kind, path, headers)
CASES: dict[str, tuple[str, str, dict[str, str]]] = {
    "echo": ("agent", "/bench/echo", {}),
    "echo+ort-noop": ("agent", "/bench/echo-ort-noop", {}),
    "echo+onnx": ("agent", "/bench/echo-onnx", {}),
    "agent": ("agent", "/v1/predict", {"Authorization": f"Bearer {PREDICT_TOKEN}"}),
    "sklearn": ("sklearn", "/v1/predict", {}),
    "kserve": ("kserve", f"/v1/models/{KSERVE_MODEL}:predict", {}),
}


# ---- driving it ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class ServerFailed(SystemExit):
    """A server that exited or did not answer its health check (the kserve case skips on it)."""


class Server:
    """A case's server process: ``bench/agent_servers.py SPEC`` unless ``cmd`` says otherwise;
    up once ``health`` answers 200."""

    def __init__(
        self,
        spec: dict[str, Any],
        log: Path,
        cmd: list[str] | None = None,
        health: str = "/healthz",
        env: dict[str, str] | None = None,
    ) -> None:
        self.spec, self.log, self.health = spec, log, health
        self.url = f"http://127.0.0.1:{spec['port']}"
        self.cmd = cmd or [sys.executable, str(SERVERS), json.dumps(spec)]
        self.env = env or dict(os.environ, ORT_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            self.cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.env, cwd=REPO
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.spec['kind']} server exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError):
                if http(self.url + self.health)[0] == 200:
                    return self
            time.sleep(0.1)
        self.__exit__()
        raise ServerFailed(f"{self.spec['kind']} server did not start:\n{self.log.read_text()}")

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def demo_model(tmp: Path) -> tuple[Path, Path, Path, str]:
    """(bundle dir, its public key, sklearn model.joblib, where they came from)."""
    from edgeops.edge.bundle import BundleError, key_id, load_public_key, verify_bundle
    from edgeops.keys import default_key_dir, init_keys, load_private_key

    bundle, joblib_path = REPO / "models" / "bundle", REPO / "models" / "model.joblib"
    if (bundle / "manifest.json").is_file() and joblib_path.is_file():
        pub = default_key_dir() / "signing.pub"
        if pub.is_file():
            with contextlib.suppress(BundleError):
                verify_bundle(bundle, load_public_key(pub))
                return bundle, pub, joblib_path, "models/bundle (make demo), signed by your key"
        # the demo's signing key is not on this machine: the same model and manifest, re-signed
        # with a throw-away key for this run
        from edgeops.stages.bundle import write_bundle

        init_keys(tmp / "keys")
        private = load_private_key(tmp / "keys" / "signing.key")
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest.pop("files", None)
        manifest["signing_key_id"] = key_id(private.public_key())
        out = write_bundle(tmp / "bundle", (bundle / "model.onnx").read_bytes(), manifest, private)
        return (
            out,
            tmp / "keys" / "signing.pub",
            joblib_path,
            "models/bundle (make demo), re-signed with a throw-away key",
        )
    # no demo: build both from the simulator data (hist_gradient_boosting, as the demo)
    import joblib

    sys.path.insert(0, str(REPO))
    from tests.bundles import PARAMS, make_bundle, plant_schema, plant_split

    from edgeops.stages.train import train

    init_keys(tmp / "keys")
    out = make_bundle(tmp / "bundle", tmp / "keys", "1.0.0", model="hist_gradient_boosting")
    train_df, _ = plant_split()
    cfg = {**PARAMS["train"], "model": "hist_gradient_boosting"}
    cfg["hist_gradient_boosting"] = {**cfg["hist_gradient_boosting"], "max_iter": 30}
    joblib.dump(train(train_df, plant_schema(), cfg), tmp / "model.joblib")
    return (
        out,
        tmp / "keys" / "signing.pub",
        tmp / "model.joblib",
        "built by tests/bundles.make_bundle (hist_gradient_boosting): no `make demo` output",
    )


def resolved_stack(loop: str, http_impl: str) -> dict[str, str]:
    import importlib.util

    import uvicorn

    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if http_impl == "auto":
        http_impl = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {"uvicorn": uvicorn.__version__, "loop": loop, "http": http_impl}


# ---- the KServe peer (bench/kserve_peer.py, from its own venv: bench/kserve_venv.py) ---------
def kserve_server(b: Bench, spec: dict[str, Any], log: Path) -> Server:
    """The peer, started with the KServe venv's python (isolated: nothing of this venv leaks)."""
    from edgeops.offline import TELEMETRY_OFF

    peer = {
        "model": str(b.bundle / "model.onnx"),
        "inputs": b.manifest["inputs"],
        "classes": b.manifest["classes"],
        "name": KSERVE_MODEL,
        "port": spec["port"],
        "loop": spec["loop"],
        "cpu": spec["cpu"],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    cmd = [b.kserve["python"], "-I", str(KSERVE_PEER), json.dumps(peer)]
    return Server(spec, log, cmd, health=f"/v1/models/{KSERVE_MODEL}", env={**env, **TELEMETRY_OFF})


def check_peer_answer(name: str, answer: Any, b: Bench) -> float:
    """The peer's answer has the example's golden probabilities and label: max |p diff|."""
    golden = b.manifest["golden"]
    try:
        pred = answer["predictions"][0]
        got = [pred["probabilities"][str(c)] for c in b.manifest["classes"]]
        diff = max(abs(g - e) for g, e in zip(got, b.example["probabilities"], strict=True))
        ok = diff <= float(golden.get("tolerance", 1e-5)) and str(pred["label"]) == str(
            b.example["label"]
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SystemExit(f"{name}: unexpected answer {answer!r} ({exc!r})") from None
    if not ok:
        raise SystemExit(f"{name}: answer {pred} is not the golden {b.example['probabilities']}")
    return diff


# ---- driving it ----------------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    gen: str
    tmp: Path
    bundle: Path
    public_key: Path
    model: Path
    manifest: dict[str, Any]
    example: dict[str, Any]
    server_cpu: int | None
    client_cpu: int | None
    kserve: dict[str, Any] = field(default_factory=dict)

    def body(self, name: str) -> str:
        key = "instances" if name == "kserve" else "rows"  # KServe's V1 protocol
        return json.dumps({key: [self.example["inputs"]]}, separators=(",", ":"))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per case")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per case")
    ap.add_argument("--concurrency", type=int, default=8, help="connections for throughput")
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--uvicorn-loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    ap.add_argument("--uvicorn-http", choices=["auto", "h11", "httptools"], default="auto")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    ap.add_argument(
        "--cases",
        "--only",
        dest="cases",
        nargs="+",
        choices=list(CASES),
        default=None,
        metavar="CASE",
        help=f"the cases to run, in this order (default: all: {' '.join(CASES)})",
    )
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "agent.json"))
    return ap.parse_args()


def load_generator(choice: str) -> tuple[str, str]:
    gen = choice
    if gen == "auto":
        gen = "wrk" if shutil.which("wrk") else "python"
    elif gen == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), or use --loadgen python")
    gen_desc = (
        "wrk " + subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
        if gen == "wrk"
        else "python asyncio closed-loop client (bench/agent_load.py)"
    )
    return gen, gen_desc


def first_answer(name: str, b: Bench, srv: Server, path: str, headers: dict[str, str]) -> Any:
    """Deploy the bundle (agent kinds), send the case's request once: its 200 answer."""
    from edgeops.edge.store import tar_bundle

    if srv.spec["kind"] == "agent":
        status, out = http(
            srv.url + "/v1/bundles",
            "POST",
            tar_bundle(b.bundle),
            {"Authorization": f"Bearer {DEPLOY_TOKEN}", "Content-Type": "application/gzip"},
        )
        if status != 201:
            raise SystemExit(f"deploy failed: {status} {out!r}")
    status, out = http(
        srv.url + path,
        "POST",
        b.body(name).encode(),
        {**headers, "Content-Type": "application/json"},
    )
    if status != 200:
        raise SystemExit(f"{name}: {status} {out!r}")
    answer = json.loads(out)
    if name == "kserve":
        diff = check_peer_answer(name, answer, b)
        print(f"  kserve answer: {out.decode()[:160]} (golden max |p diff| {diff:.1e})")
    return answer


def measure(name: str, b: Bench, port: int, path: str, headers: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for conc in (1, b.args.concurrency):
        load_args = (b.gen, port, path, b.body(name), headers, conc)
        if b.args.warmup > 0:
            run_load(*load_args, b.args.warmup, b.client_cpu, b.tmp)
        r = run_load(*load_args, b.args.duration, b.client_cpu, b.tmp)
        if r["errors"]:
            raise SystemExit(f"{name} c={conc}: {r['errors']} failed requests")
        result[f"c{conc}"] = r
        print(
            f"  {name:13s} c={conc:<3d} p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms"
            f"  {r['rps']:9.0f} req/s  ({r['requests']} requests)",
            flush=True,
        )
    return result


def run_case(name: str, b: Bench) -> tuple[dict[str, Any], Any]:
    """(the case's figures by concurrency, or {"skipped": why}; its first answer)."""
    kind, path, headers = CASES[name]
    if kind == "kserve" and "skipped" in b.kserve:
        print(f"  {name:13s} skipped: {b.kserve['skipped']}", flush=True)
        return {"skipped": b.kserve["skipped"]}, None
    state = b.tmp / f"state-{name}"
    state.mkdir()
    spec = {
        "kind": kind,
        "port": free_port(),
        "state_dir": str(state),
        "public_key": str(b.public_key),
        "model": str(b.model),
        "cpu": b.server_cpu,
        "loop": b.args.uvicorn_loop,
        "http": b.args.uvicorn_http,
    }
    log = b.tmp / f"{name}.log"
    srv = kserve_server(b, spec, log) if kind == "kserve" else Server(spec, log)
    try:
        with srv:
            answer = first_answer(name, b, srv, path, headers)
            if kind == "kserve":
                b.kserve["server"] = next(
                    (
                        line.removeprefix("kserve peer: ")
                        for line in log.read_text().splitlines()
                        if line.startswith("kserve peer: ")
                    ),
                    None,
                )
            return measure(name, b, spec["port"], path, headers), answer
    except ServerFailed as exc:
        if kind != "kserve":
            raise
        reason = f"the KServe server did not start: {str(exc).strip().splitlines()[-1][:300]}"
        print(f"  {name:13s} skipped: {reason}", flush=True)
        return {"skipped": reason}, None


def compute_ratios(results: dict[str, Any], c: str) -> tuple[dict[str, float], dict[str, float]]:
    """(the ratios that have targets, the floor's ratios without) over the measured cases."""
    done = {k for k, r in results.items() if "skipped" not in r}

    def p50(a: str, b: str) -> float:
        return results[a]["c1"]["p50_ms"] / results[b]["c1"]["p50_ms"]

    def rps(a: str, b: str) -> float:
        return results[a][c]["rps"] / results[b][c]["rps"]

    ratios: dict[str, float] = {}
    if {"agent", "echo"} <= done:
        ratios["p50 agent/echo"] = p50("agent", "echo")
        ratios["throughput agent/echo"] = rps("agent", "echo")
    if {"agent", "sklearn"} <= done:
        ratios["p50 sklearn/agent"] = p50("sklearn", "agent")
    if {"agent", "kserve"} <= done:
        ratios["p50 kserve/agent"] = p50("kserve", "agent")
        ratios["throughput agent/kserve"] = rps("agent", "kserve")
    # no targets: what the model call alone costs against the echo, what the agent adds to it,
    # and the peer against the same floor
    info: dict[str, float] = {}
    for a, b in (
        ("echo+ort-noop", "echo"),
        ("echo+onnx", "echo"),
        ("agent", "echo+onnx"),
        ("kserve", "echo+onnx"),
    ):
        if {a, b} <= done:
            info[f"p50 {a}/{b}"] = p50(a, b)
            info[f"throughput {a}/{b}"] = rps(a, b)
    return ratios, info


def print_results(
    results: dict[str, Any], ratios: dict[str, float], info: dict[str, float], concurrency: int
) -> dict[str, Any]:
    """The table and the verdicts; returns the verdicts."""
    c = f"c{concurrency}"
    print()
    hdr = f"{'':14s}{'p50 ms c=1':>12s}{'p99 ms c=1':>12s}{'req/s c=1':>11s}"
    hdr += f"{f'p50 ms c={concurrency}':>13s}{f'p99 ms c={concurrency}':>13s}{f'req/s c={concurrency}':>12s}"
    print(hdr)
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:14s}  skipped: {r['skipped']}")
            continue
        print(
            f"{name:14s}{r['c1']['p50_ms']:12.3f}{r['c1']['p99_ms']:12.3f}{r['c1']['rps']:11.0f}"
            f"{r[c]['p50_ms']:13.3f}{r[c]['p99_ms']:13.3f}{r[c]['rps']:12.0f}"
        )
    print()
    verdicts = {}
    for k, v in ratios.items():
        op, target = TARGETS[k]
        ok = v <= target if op == "<=" else v >= target
        verdicts[k] = {"value": v, "target": f"{op} {target}", "met": ok}
        floor = info.get(k.replace("agent/", "echo+onnx/"))
        floor_ok = floor is None or (floor <= target if op == "<=" else floor >= target)
        note = "" if ok or floor_ok else f"  (the model call alone: {floor:.2f})"
        print(f"{k:24s} {v:8.2f}   target {op} {target:<5g}  {'met' if ok else 'NOT met'}{note}")
    for k, v in info.items():
        print(f"{k:30s} {v:8.2f}")
    return verdicts


def agreement(answers: dict[str, Any]) -> None:
    """The agent, scikit-learn and the peer agree on the answer (they serve the same model)."""
    for other in ("sklearn", "kserve"):
        if answers.get("agent") is not None and answers.get(other) is not None:
            a = answers["agent"]["predictions"][0]["probabilities"]
            s = answers[other]["predictions"][0]["probabilities"]
            diff = max(abs(a[k] - s[k]) for k in a)
            print(f"agent vs {other} max |p diff| on the request row: {diff:.2e}")


def main() -> None:
    args = parse_args()
    gen, gen_desc = load_generator(args.loadgen)
    cpus = len(os.sched_getaffinity(0))
    pin = not args.no_pin and cpus >= 2
    server_cpu, client_cpu = (0, 1) if pin else (None, None)
    stack = resolved_stack(args.uvicorn_loop, args.uvicorn_http)
    names = args.cases or list(CASES)
    kserve = kserve_venv() if "kserve" in names else {}
    if kserve:
        print(
            "kserve: "
            + (
                f"skipped: {kserve['skipped']}"
                if "skipped" in kserve
                else f"{kserve['python']} ({'created' if kserve['created'] else 'reused'} in "
                f"{kserve['seconds']:.1f} s)"
            )
        )

    with tempfile.TemporaryDirectory(prefix="edgeops-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bundle, public_key, model, source = demo_model(tmp)
        manifest = json.loads((bundle / "manifest.json").read_text())
        categories = {i["name"]: set(i.get("categories") or ()) for i in manifest["inputs"]}
        example = next(
            e
            for e in manifest["golden"]["examples"]
            if all(not cats or e["inputs"][n] in cats for n, cats in categories.items())
        )
        b = Bench(
            args,
            gen,
            tmp,
            bundle,
            public_key,
            model,
            manifest,
            example,
            server_cpu,
            client_cpu,
            kserve,
        )
        print(
            f"model: {source}\n  version {manifest['model']['version']}, "
            f"{manifest['files']['model.onnx']['bytes'] / 1e6:.2f} MB ONNX; sklearn {model}"
        )
        print(
            f"load generator: {gen_desc}; {cpus} CPUs, "
            + (f"server on CPU {server_cpu}, client on CPU {client_cpu}" if pin else "not pinned")
            + f"; uvicorn {stack['uvicorn']} loop={stack['loop']} http={stack['http']}"
        )
        print(
            f"{args.warmup:g} s warm-up + {args.duration:g} s per case; "
            f"body: {len(b.body('agent'))} bytes ({len(b.body('kserve'))} for kserve)"
        )
        results: dict[str, Any] = {}
        answers: dict[str, Any] = {}
        for name in names:
            results[name], answers[name] = run_case(name, b)

    agreement(answers)
    ratios, info = compute_ratios(results, f"c{args.concurrency}")
    verdicts = print_results(results, ratios, info, args.concurrency)
    kbytes = len(b.body("kserve"))
    venv = {"venv": str(KSERVE_VENV.relative_to(REPO)), "exclude_newer": KSERVE_EXCLUDE_NEWER}
    peers = {"kserve": {**kserve, **venv}} if kserve else {}
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": cpus,
            "pinned": {"server": server_cpu, "client": client_cpu} if pin else None,
        },
        "load_generator": gen_desc,
        "server": {**stack, **{k: v for k, v in UVICORN.items() if k != "log_level"}, "workers": 1},
        "model": source,
        "request": {"rows": 1, "body_bytes": len(b.body("agent")), "kserve_body_bytes": kbytes},
        "warmup_seconds": args.warmup,
        "duration_seconds": args.duration,
        "concurrency": [1, args.concurrency],
        "peers": peers,
        "results": results,
        "ratios": verdicts,
        "floor_ratios": info,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
