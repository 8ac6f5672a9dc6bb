"""Every HTML page a person opens renders without internet: the committed parts of the proof.

The pages themselves are built for real and rendered in headless Chromium with every host but
loopback unreachable, and ``tests.browser.render`` fails on any request off loopback:
test_pipeline.py (the validation report, ``dvc plots show``), test_monitoring_loop.py (the drift
report), test_agent_docs_offline.py (the agent's API docs), test_orchestration.py (the Prefect UI).
This module checks, cheaply, the committed template that makes ``dvc plots show`` work offline
(.dvc/plots/offline.html, set in .dvc/config) and the request check of ``render`` itself.
"""

from __future__ import annotations

import re

import pytest

from tests.browser import outside_requests
from tests.conftest import REPO

pytestmark = pytest.mark.integration

DVC_DIR = REPO / ".dvc"
TEMPLATE = DVC_DIR / "plots" / "offline.html"


def test_the_committed_dvc_config_uses_the_offline_template() -> None:
    from configobj import ConfigObj  # DVC's own config parser

    config = ConfigObj(str(DVC_DIR / "config"))  # the committed file, not config.local
    assert config["plots"]["html_template"] == "plots/offline.html"  # relative to .dvc/
    assert (DVC_DIR / config["plots"]["html_template"]).resolve() == TEMPLATE
    assert TEMPLATE.is_file() and (TEMPLATE.parent / "LICENSE").is_file()


def test_the_template_inlines_vega_and_names_no_other_host() -> None:
    html = TEMPLATE.read_text(encoding="utf-8")
    assert html.count("{plot_divs}") == 1  # DVC refuses a template without it
    assert "{scripts}" not in html  # DVC would put its CDN <script> tags there
    markup = re.sub(r"<script>.*?</script>", "<script></script>", html, flags=re.DOTALL)
    tags = re.findall(r"<(?:script|link|img|iframe|object|embed)\b[^>]*>", markup, flags=re.I)
    assert tags == ["<script>"] * 3, tags  # vega, vega-lite, vega-embed: inline, classic scripts
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html) == []
    assert "@import" not in html and "url(http" not in html
    for version in ("vega 5.", "vega-lite 5.", "vega-embed 6.", "BSD-3-Clause"):
        assert version in html  # the versions and licence named in the header comment
    for global_name in ("vega={}", "vegaLite={}", ".vegaEmbed="):
        assert global_name in html  # the UMD builds define what DVC's plot divs call


def test_render_counts_every_request_off_loopback_even_a_failed_one() -> None:
    requests = [
        {"url": "file:///srv/report.html", "failed": None, "blocked": None},
        {"url": "data:image/png;base64,AAAA", "failed": None, "blocked": None},
        {"url": "blob:null/1234", "failed": None, "blocked": None},
        {"url": "about:blank", "failed": None, "blocked": None},
        {"url": "http://127.0.0.1:8000/api", "failed": None, "blocked": None},
        {"url": "ws://localhost:4200/events", "failed": None, "blocked": None},
        {"url": "http://[::1]:9000/", "failed": None, "blocked": None},
        {
            "url": "https://cdn.jsdelivr.net/npm/vega@5",
            "failed": "net::ERR_NAME_NOT_RESOLVED",
            "blocked": None,
        },
        {"url": "http://10.0.0.5/logo.svg", "failed": None, "blocked": None},
        {
            "url": "https://cdn.redoc.ly/logo.svg",
            "failed": "net::ERR_BLOCKED_BY_CLIENT",
            "blocked": "csp",
        },
    ]
    assert [r["url"] for r in outside_requests(requests)] == [
        "https://cdn.jsdelivr.net/npm/vega@5",
        "http://10.0.0.5/logo.svg",
        "https://cdn.redoc.ly/logo.svg",
    ]
    allowed = outside_requests(requests, allow_blocked=frozenset({"csp"}))
    assert [r["url"] for r in allowed] == [
        "https://cdn.jsdelivr.net/npm/vega@5",
        "http://10.0.0.5/logo.svg",
    ]
