"""The agent's metrics against the real Prometheus tools (Debian package ``prometheus``).

``promtool`` lints a real agent's /metrics and the shipped src/edgeops/examples/prometheus/ files; a real
Prometheus on a free loopback port scrapes an agent every second with the shipped scrape job
and rules, sees it up, and fires EdgeopsAgentDown once the agent is stopped.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.agent_process import DEPLOY_TOKEN, PREDICT_TOKEN, AgentProcess, Agents, free_port
from tests.bundles import make_bundle
from tests.conftest import REPO

pytestmark = pytest.mark.integration

SHIPPED = REPO / "src/edgeops/examples" / "prometheus"
METRICS_TOKEN = "test-metrics-token-5555"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install prometheus (.ci/run does)")
    return path


def client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=30, trust_env=False, headers=headers)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, signing_keys: Path) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "v1", signing_keys, "1.0.0")


@pytest.fixture
def agent_with(tmp_path: Path, signing_keys: Path, bundle: Path) -> Iterator[Any]:
    """Start an agent with a config, deploy the bundle, predict its golden rows once."""
    agents = Agents(tmp_path, signing_keys / "signing.pub", bundle)
    rows = [
        ex["inputs"]
        for ex in json.loads((bundle / "manifest.json").read_text())["golden"]["examples"]
    ][:3]

    def start(config: dict[str, Any]) -> AgentProcess:
        agent = agents.start(config)
        with client(agent.url, PREDICT_TOKEN) as c:
            c.post("/v1/predict", json={"rows": rows})
        return agent

    yield start
    agents.stop_all()


def metric_names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


# ---- promtool --------------------------------------------------------------------------------
def test_agent_metrics_pass_promtool_and_follow_the_conventions(agent_with: Any) -> None:
    agent = agent_with({})
    with client(agent.url) as c:
        r = c.get("/metrics")  # open on the main port by default
    assert r.status_code == 200
    text = r.text
    check = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=r.content, capture_output=True, timeout=30
    )
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check

    names = metric_names(text)
    assert not [n for n in names if n.endswith("_created")]
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_info",
        "edgeops_inference_log_dropped_total",
        "edgeops_connections",
    } <= names
    assert "# TYPE edgeops_inference_log_dropped_total counter" in text
    from edgeops import __version__

    assert f'edgeops_build_info{{version="{__version__}"}} 1.0' in text
    assert re.search(
        r'edgeops_model_info\{(model="plant-failure",version="1\.0\.0"|'
        r'version="1\.0\.0",model="plant-failure")\} 1\.0',
        text,
    ), text
    assert 'edgeops_request_seconds_bucket{endpoint="/v1/predict",le="5e-05"}' in text
    assert 'edgeops_rollbacks_total{trigger="probation"} 0.0' in text  # there before the first


def test_shipped_prometheus_files_pass_promtool() -> None:
    for args in (
        ["check", "rules", str(SHIPPED / "alerts.yml")],
        ["check", "config", str(SHIPPED / "prometheus.yml")],
    ):
        out = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
    dashboard = json.loads((SHIPPED / "grafana-dashboard.json").read_text())
    assert dashboard["panels"] and all(p["targets"] for p in dashboard["panels"])


def test_metrics_port_and_token(agent_with: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text(METRICS_TOKEN + "\n")
    metrics_port = free_port()
    agent = agent_with({"metrics_port": metrics_port, "metrics_token_file": str(token_file)})
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    with client(agent.url) as main, client(metrics_url) as m:
        r = main.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = m.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert m.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        for token in (METRICS_TOKEN, DEPLOY_TOKEN):  # the operator's token opens everything
            r = m.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and "edgeops_model_info" in r.text
        assert m.get("/healthz").status_code == 404  # only /metrics on the metrics port
        assert main.get("/healthz").status_code == 200


# ---- a real Prometheus ----------------------------------------------------------------------
class Prometheus:
    """``prometheus`` on a free loopback port with a given configuration; always stopped."""

    def __init__(self, config: dict[str, Any], work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work = work
        (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = work / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Prometheus:
        cmd = [
            tool("prometheus"),
            f"--config.file={self.work / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.work / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.work)
        self.wait(lambda: self._ready(), 30, "Prometheus to be ready")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        print(self.log.read_text(errors="replace")[-3000:])  # shown when a test failed

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(self.url + "/-/ready", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: str) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=10, trust_env=False)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("/api/v1/query", query=expr)["result"]

    def firing(self, alert: str) -> list[dict[str, Any]]:
        alerts = self.api("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alert and a["state"] == "firing"]

    @staticmethod
    def wait(check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            time.sleep(0.25)


def test_prometheus_scrapes_the_agent_and_fires_agent_down(agent_with: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text(METRICS_TOKEN + "\n")
    metrics_port = free_port()
    agent = agent_with({"metrics_port": metrics_port, "metrics_token_file": str(token_file)})

    # the shipped rules, EdgeopsAgentDown's `for:` shortened from 1m
    rules = yaml.safe_load((SHIPPED / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "EdgeopsAgentDown":
                assert rule["for"] == "1m"
                rule["for"] = "2s"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    # the shipped scrape job, every second, against this agent's metrics port with its token
    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "evaluation_interval": "1s",
        "scrape_timeout": "1s",
    }
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "edgeops-agent"
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"site": "test"}}]
    job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}

    with Prometheus(config, tmp_path) as prom:
        instance = {"job": "edgeops-agent", "instance": f"127.0.0.1:{metrics_port}"}

        def up() -> float | None:
            result = prom.query('up{job="edgeops-agent"}')
            return float(result[0]["value"][1]) if result else None

        prom.wait(lambda: up() == 1.0, 30, "up == 1 (the agent scraped)")
        (info,) = prom.query("edgeops_model_info")
        assert info["metric"]["version"] == "1.0.0" and info["metric"]["model"] == "plant-failure"
        assert {k: info["metric"][k] for k in instance} == instance
        # every query of the shipped dashboard is valid PromQL on these series
        dashboard = json.loads((SHIPPED / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$instance", ".*").replace("$__rate_interval", "1m")
                prom.query(expr)
        assert not prom.firing("EdgeopsAgentDown")

        agent.stop()
        t0 = time.monotonic()
        prom.wait(lambda: bool(prom.firing("EdgeopsAgentDown")), 30, "EdgeopsAgentDown to fire")
        (alert,) = prom.firing("EdgeopsAgentDown")
        assert alert["labels"]["instance"] == instance["instance"]
        assert alert["labels"]["severity"] == "critical"
        assert time.monotonic() - t0 < 30
