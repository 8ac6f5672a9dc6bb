"""The agent's API docs work on a device without internet: /docs and /redoc render offline.

A real agent (``edgeops edge serve``, loopback) with a bundle deployed serves both pages; headless
Chromium loads them with every host name but loopback unresolvable, as on a machine without
internet. Swagger UI must show the predict operation and ReDoc the API, both from the files the
package installed, and the page may not have sent a request anywhere but the agent (``render``
fails on any other; the pages' Content-Security-Policy blocks whatever the bundled scripts try,
ReDoc's vendor logo: only that CSP-blocked request, never sent, is tolerated on /redoc).
Screenshots: test-artifacts/agent-docs-swagger.png, test-artifacts/agent-docs-redoc.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, AgentProcess
from tests.browser import chromium_path, render
from tests.bundles import make_bundle

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def agent(tmp_path_factory, signing_keys: Path):
    tmp = tmp_path_factory.mktemp("docs")
    bundle = make_bundle(tmp / "bundle", signing_keys, "1.0.0")
    state = tmp / "state"
    state.mkdir()
    with AgentProcess(state, signing_keys / "signing.pub", {}) as proc:
        with httpx.Client(base_url=proc.url, timeout=30.0, trust_env=False) as c:
            r = c.post(
                "/v1/bundles",
                content=tar_bundle(bundle),
                headers={
                    "Authorization": f"Bearer {DEPLOY_TOKEN}",
                    "Content-Type": "application/gzip",
                },
            )
            assert r.status_code == 201, r.text
        yield proc


def assert_loaded_from_agent(requests: list[dict], agent: AgentProcess, *names: str) -> None:
    for name in names:
        hits = [
            r
            for r in requests
            if r["url"].startswith(agent.url + "/docs/assets/") and r["url"].endswith("/" + name)
        ]
        assert hits, f"{name} was not loaded from the agent: {[r['url'] for r in requests]}"
        assert all(r["failed"] is None for r in hits), hits


def test_the_pages_name_no_other_host_and_assets_are_cached_for_good(agent: AgentProcess) -> None:
    with httpx.Client(base_url=agent.url, timeout=30.0, trust_env=False) as c:
        for page in ("/docs", "/redoc"):
            r = c.get(page)
            assert r.status_code == 200, r.text
            assert "default-src 'self'" in r.headers["content-security-policy"]
            links = re.findall(r'(?:src|href|url)\s*[=:]\s*["\']([^"\']+)["\']', r.text)
            assert links and all(link.startswith("/") for link in links), links
            assert "cdn" not in r.text and "googleapis" not in r.text
            for link in links:
                if link.startswith("/docs/assets/"):
                    asset = c.get(link)
                    assert asset.status_code == 200, link
                    assert "immutable" in asset.headers["cache-control"], asset.headers
        stale = c.get("/docs/assets/0123456789abcdef/swagger-ui-bundle.js")
        assert stale.status_code == 404 and stale.json()["error"]["code"] == "not_found"
        assert c.get("/docs/assets/x/../../agent.py").status_code == 404


def test_swagger_ui_renders_offline_with_the_predict_operation(agent: AgentProcess) -> None:
    assert chromium_path(), "Debian's chromium is needed (.ci/run installs it)"
    requests: list[dict] = []
    text = render(
        f"{agent.url}/docs",
        ARTIFACTS / "agent-docs-swagger.png",
        expect=["/v1/predict", "/v1/bundles", "edgeops agent"],
        requests=requests,
    )
    assert "Authorize" in text  # the bearer security scheme
    assert_loaded_from_agent(requests, agent, "swagger-ui-bundle.js", "swagger-ui.css")


def test_redoc_renders_offline(agent: AgentProcess) -> None:
    assert chromium_path(), "Debian's chromium is needed (.ci/run installs it)"
    requests: list[dict] = []
    render(
        f"{agent.url}/redoc",
        ARTIFACTS / "agent-docs-redoc.png",
        expect=["edgeops agent", "Predict", "/v1/predict", "Array of objects (Row)"],
        requests=requests,
        allow_blocked=frozenset({"csp"}),
    )
    assert_loaded_from_agent(requests, agent, "redoc.standalone.js")
