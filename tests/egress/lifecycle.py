"""The whole edgeops lifecycle, driven from inside the egress test's network namespace (loopback
only): ``python -m tests.egress.lifecycle --root DIR --result FILE`` from the repository root,
started by tests/integration/test_egress.py through :func:`tests.egress.recorder.run_in_namespace`.

The steps, each checked (a failed step ends the run; the cleanup always runs):

1. ``lo`` up; the namespace has no other interface.
2. An edge agent (``edgeops edge serve``) on loopback; a workspace copy of the repository (git,
   DVC remote in a local folder, demo plant data as small as the schema allows).
3. ``dvc repro``: ingest, validate (Great Expectations), split, train, evaluate, export (ONNX),
   bundle (signed).
4. ``edgeops deploy --all``: the gate, the rollout to the agent; ``edgeops predict``: the agent
   answers with the deployed version.
5. ``edgeops up``: the Prefect server, the deployments, a process worker; ``edgeops run training``
   through them (the stages are up to date, the agent has the version: the flow still runs the
   DVC tasks, the gate, the rollout, the push), COMPLETED (read back from the server's API).
6. ``edgeops simulate``: traffic with feedback to the agent; ``edgeops monitor``: collect, quality,
   drift (Evidently), a verdict, DVC-versioned rows, the Evidently workspace.
7. ``edgeops monitor ui`` (the Evidently UI) started; ``edgeops run monitoring`` through the server
   and worker, COMPLETED with a verdict on drift; the UI answers on loopback and lists the project.
8. Cleanup: the UI stopped, ``edgeops down``, the agent stopped, then every process still alive in
   the namespace killed (their command lines go to the result as ``leftovers``).

The result file (JSON) holds each step's name, seconds, outcome and details.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.agent_process import DEPLOY_TOKEN, AgentProcess, free_port, http
from tests.egress.recorder import bring_up_loopback
from tests.prefect_stack import DVC, EDGEOPS, Stack, sh

# As small as the schema allows (validate.schema.min_rows: 1000) and quick to train and export;
# the data, the split and the model are seeded, so the gate's verdict is the same on every run.
PARAMS: dict[str, Any] = {
    "ingest.simulator.rows": 1500,
    "train.hist_gradient_boosting.max_iter": 50,
    "export.latency_repeats": 0,
    "monitor.window.rows": 800,
    "monitor.window.min_rows": 500,
}
TRAFFIC_ROWS = 800


class Steps:
    """Runs named steps under one deadline; records each step's time, outcome and details."""

    def __init__(self, result: Path, budget: float) -> None:
        self.result, self.deadline = result, time.monotonic() + budget
        self.steps: list[dict[str, Any]] = []
        self.leftovers: list[str] = []

    def left(self, cap: float) -> float:
        """Seconds a command may take: ``cap``, or what is left of the budget if less."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the lifecycle's time budget is spent")
        return min(cap, left)

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {"step": name, "ok": False}
        self.steps.append(entry)
        print(f"--- {name}", flush=True)
        start = time.monotonic()
        try:
            yield entry
            entry["ok"] = True
        except BaseException as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[-4000:]
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - start, 1)
            print(f"    {entry['seconds']} s {'ok' if entry['ok'] else 'FAILED'}", flush=True)
            self.write()

    def write(self) -> None:
        self.result.write_text(
            json.dumps({"steps": self.steps, "leftovers": self.leftovers}, indent=2)
        )


def run_id_of(output: str) -> str:
    """The flow run id ``edgeops run`` prints (``.../runs/flow-run/<id>``)."""
    return output.split("/runs/flow-run/")[1].split()[0].strip("/.)")


def wait_http(url: str, timeout: float) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = http(url, "GET", "", timeout=5)
            if status == 200:
                return status, body
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 in {timeout} s")
        time.sleep(0.5)


def stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process group, then SIGKILL it."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def in_the_namespace() -> bool:
    """Whether this runs where :func:`tests.egress.recorder.namespace_command` puts it: a pid
    namespace whose pid 1 is strace, our parent (so :func:`kill_the_rest` kills only ours)."""
    try:
        init = Path("/proc/1/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.getppid() == 1 and os.path.basename(init) == b"strace"


def kill_the_rest() -> list[str]:
    """Kill every process of the namespace but pid 1 (strace) and this one; their command lines."""
    if not in_the_namespace():  # never anywhere else
        return []
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in (1, os.getpid()):
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            if cmd:  # a zombie has none: it has exited already
                found[int(entry.name)] = cmd
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(2)
    return [f"pid {pid}: {cmd}" for pid, cmd in found.items()]


def lifecycle(root: Path, steps: Steps) -> None:
    agent: AgentProcess | None = None
    stack: Stack | None = None
    ui: subprocess.Popen[bytes] | None = None
    try:
        with steps.step("namespace: lo up, no other interface") as s:
            bring_up_loopback()
            s["interfaces"] = [name for _, name in socket.if_nameindex()]
            assert s["interfaces"] == ["lo"], s["interfaces"]

        with steps.step("agent and workspace") as s:
            pub = Path(os.environ["EDGEOPS_KEY_DIR"]) / "signing.pub"
            agent = AgentProcess(root / "agent-state", pub).start(timeout=steps.left(60))
            stack = Stack(root, **PARAMS)
            token = root / "deploy.token"
            token.write_text(DEPLOY_TOKEN + "\n")
            (stack.repo / "deploy/targets.yaml").write_text(
                "targets:\n"
                f"  - {{name: line-1, url: '{agent.url}', canary: true, token_file: '{token}'}}\n"
            )
            sh(["git", "commit", "-qam", "targets: the egress test's agent"], stack.repo)
            s["agent"], s["workspace"] = agent.url, str(stack.repo)

        with steps.step("dvc repro") as s:
            out = sh([DVC, "repro"], stack.repo, env=stack.env, timeout=steps.left(240))
            manifest = json.loads((stack.repo / "models/bundle/manifest.json").read_text())
            version = manifest["model"]["version"]
            s["version"], s["tail"] = version, out.stdout[-300:]

        with steps.step("edgeops deploy, edgeops predict") as s:
            stack.edgeops("deploy", "--all", "--reason", "egress test", timeout=steps.left(120))
            code, body = http(
                agent.url, "GET", "/v1/status", None, {"Authorization": f"Bearer {DEPLOY_TOKEN}"}
            )
            active = json.loads(body)["active"]["version"]
            assert (code, active) == (200, version), (code, body[:500])
            answer = json.loads(
                stack.edgeops("predict", "--target", "line-1", timeout=steps.left(60)).stdout
            )
            s["answer"] = answer
            assert version in json.dumps(answer), answer

        with steps.step("edgeops up: Prefect server, deployments, a worker") as s:
            stack.edgeops("up", timeout=steps.left(240))
            s["prefect"] = stack.api_url

        with steps.step("edgeops run training (through the server and worker)") as s:
            out = stack.edgeops(
                "run", "training", "--reason", "egress test", timeout=steps.left(300)
            )
            run = stack.wait_final(run_id_of(out.stderr), timeout=steps.left(60))
            s["state"] = run["state"]["type"]
            assert s["state"] == "COMPLETED", run["state"]
            tasks = {t["name"].rsplit("-", 1)[0] for t in stack.finished_task_runs(run["id"])}
            s["tasks"] = sorted(tasks)
            assert tasks >= {
                "ingest",
                "validate",
                "split",
                "train",
                "evaluate",
                "export",
                "bundle",
                "gate",
                "rollout",
                "push",
                "record",
            }, tasks

        with steps.step("edgeops simulate, edgeops monitor") as s:
            stack.edgeops(
                "simulate",
                "--target",
                "line-1",
                "--rows",
                str(TRAFFIC_ROWS),
                "--batch",
                "50",
                "--seed",
                "7",
                "--feedback-share",
                "0.3",
                timeout=steps.left(120),
            )
            out = stack.edgeops(
                "monitor", "--target", "line-1", "--json", check=False, timeout=steps.left(180)
            )
            assert out.returncode in (0, 5), f"exit {out.returncode}:\n{out.stdout}\n{out.stderr}"
            s["decision"] = json.loads(out.stdout)["decision"]  # keep (0) or retrain (5): a verdict
            assert (stack.repo / ".evidently").is_dir()

        with steps.step("edgeops monitor ui started; edgeops run monitoring") as s:
            ui_port = free_port()
            with open(root / "evidently-ui.log", "wb") as log:  # ready while the flow runs
                ui = subprocess.Popen(
                    [EDGEOPS, "monitor", "ui", "--port", str(ui_port)],
                    cwd=stack.repo,
                    env=stack.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            # --no-retrain: a "retrain" verdict would start a second training run (time, not proof)
            out = stack.edgeops("run", "monitoring", "--no-retrain", timeout=steps.left(300))
            run = stack.wait_final(run_id_of(out.stderr), timeout=steps.left(60))
            s["state"] = run["state"]["type"]
            assert s["state"] == "COMPLETED", run["state"]
            decision = json.loads((stack.repo / "reports/monitoring/decision.json").read_text())
            s["decision"] = decision["decision"]
            assert s["decision"] in ("keep", "retrain"), decision["reasons"]  # drift was judged

        with steps.step("the Evidently UI answers on loopback") as s:
            base = f"http://127.0.0.1:{ui_port}"
            assert ui.poll() is None, (root / "evidently-ui.log").read_text()[-2000:]
            wait_http(base + "/", timeout=steps.left(90))
            projects = json.loads(wait_http(base + "/api/projects", timeout=steps.left(30))[1])
            s["projects"] = [p["name"] for p in projects]
            assert "plant-failure" in s["projects"], projects
            project = next(p["id"] for p in projects if p["name"] == "plant-failure")
            runs = json.loads(wait_http(f"{base}/api/projects/{project}/snapshots", 30)[1])
            s["drift_runs"] = len(runs)  # edgeops monitor's and the monitoring flow's
            assert len(runs) >= 2, runs
    finally:
        with steps.step("cleanup: UI, edgeops down, agent, the rest") as s:
            errors = []
            for what, stop in (
                ("Evidently UI", lambda: stop_group(ui)),
                ("edgeops down", stack and stack.down),
                ("agent", agent and agent.stop),
            ):
                try:
                    if stop:
                        stop()
                except Exception as exc:  # the rest still has to stop
                    errors.append(f"{what}: {exc!r}")
            steps.leftovers = kill_the_rest()
            s["leftovers"] = len(steps.leftovers)
            assert not errors, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="an empty work folder")
    parser.add_argument("--result", type=Path, required=True, help="the result file (JSON)")
    parser.add_argument("--budget", type=float, default=360, help="seconds for everything")
    args = parser.parse_args()
    if not in_the_namespace():
        print(
            "run this through tests/integration/test_egress.py (a namespace traced by strace)",
            file=sys.stderr,
        )
        return 2
    args.root.mkdir(parents=True, exist_ok=True)
    steps = Steps(args.result, args.budget)
    try:
        lifecycle(args.root, steps)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
