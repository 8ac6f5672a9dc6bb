"""The self-hosted Evidently UI on a workspace filled by save_run: a real `evidently ui` process.

Three drift runs (the simulator's baseline, hot_summer and biased_sensor windows against a baseline
reference) go through save_run; the UI must list the one project and its runs, and the dashboard's
panels must return the runs' drift shares as a time series, over the same HTTP API its pages use
(GET /api/v2/dashboards/{project}, POST /api/v2/snapshots/{project}/data_series_batch). Then
headless Chromium, with every host but loopback unreachable, shows the project list and the
dashboard with its plots drawn, and no request leaves loopback (screenshots in test-artifacts/).
"""

from __future__ import annotations

import socket
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from edgeops.monitor.workspace import ALL_RUNS_TAB, save_run, ui_command, ui_env
from tests.browser import render

pytestmark = pytest.mark.integration

PROJECT = "plant-failure"
CATEGORICAL = ["machine_type", "product_line"]
NUMERICAL = [
    "air_temp_k",
    "process_temp_k",
    "spindle_speed_rpm",
    "torque_nm",
    "tool_wear_min",
    "vibration_mm_s",
]
FEATURES = [*CATEGORICAL, *NUMERICAL]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RUNS = [("baseline", "press-1"), ("hot_summer", "press-1"), ("biased_sensor", "press-2")]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# the dashboard's plots are drawn: at least two SVGs of plot size (icons are small)
PANELS_DRAWN = (
    "[...document.querySelectorAll('svg')].filter(s => s.getBoundingClientRect().width > 300)"
    ".length >= 2"
)


def _window(rows: int, seed: int, scenario: str):
    """Simulator rows as the monitor sees them: the features plus a stand-in P(failure)."""
    import numpy as np

    from edgeops.sources.simulator import simulate

    df = simulate(rows=rows, seed=seed, scenario=scenario)
    out = df[FEATURES].copy()
    z = (df["torque_nm"] - 40.0) / 10.0 + (df["tool_wear_min"] - 200.0) / 20.0
    out["prediction"] = 1.0 / (1.0 + np.exp(-z))  # rises with torque: the biased sensor moves it
    return out


def _drift(current, reference):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[*NUMERICAL, "prediction"], categorical_columns=CATEGORICAL
    )
    preset = DataDriftPreset(
        columns=[*FEATURES, "prediction"],
        num_method="wasserstein",
        cat_method="jensenshannon",
        num_threshold=0.15,
        cat_threshold=0.1,
    )
    return Report([preset], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def _share(snapshot) -> float:
    return next(
        m["value"]["share"]
        for m in snapshot.dict()["metrics"]
        if m["metric_name"].startswith("DriftedColumnsCount")
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _AssetRefs(HTMLParser):
    """The URLs of the page's <script src> and <link href> tags."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        self.urls += [v for k, v in attrs if k == wanted and v]


def _wait_ready(proc: subprocess.Popen, base: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"evidently ui exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"evidently ui not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _series(client: httpx.Client, project_id: str, panel: dict) -> dict:
    """A panel's data, requested as the dashboard page does (one filter per panel value)."""
    body = {
        "series_filter": [
            {
                "metric": v["metric"],
                "tags": v.get("tags") or [],
                "metadata": v.get("metadata") or {},
                "metric_labels": v.get("metric_labels") or {},
            }
            for v in panel["values"]
        ]
    }
    r = client.post(f"/api/v2/snapshots/{project_id}/data_series_batch", json=body)
    r.raise_for_status()
    return r.json()


def _tab_panels(dashboard: dict, tab: str) -> dict[str, dict]:
    ids = next(t["panels"] for t in dashboard["tabs"] if t["title"] == tab)
    by_id = {p["id"]: p for p in dashboard["panels"]}
    return {by_id[i]["title"]: by_id[i] for i in ids}


def test_ui_shows_saved_runs_and_drift_over_time(tmp_path: Path) -> None:
    from evidently.ui.workspace import Workspace

    assert ui_env()["DO_NOT_TRACK"] == "1" and ui_env()["EVIDENTLY_DISABLE_TELEMETRY"] == "1"

    ws_dir = tmp_path / "evidently"
    reference = _window(2000, 1, "baseline")
    run_ids, shares, tags_of = [], [], {}
    for i, (scenario, target) in enumerate(RUNS):
        snap = _drift(_window(500, 10 + i, scenario), reference)
        run_id = save_run(ws_dir, PROJECT, snap, name=f"{target} {scenario}", tags=[target])
        run_ids.append(run_id)
        shares.append(_share(snap))
        tags_of[run_id] = target
    # (500 simulated minutes cover a third of the daily temperature cycle: the temperatures of
    # even the baseline window drift; the biased torque sensor adds torque and prediction)
    assert shares[2] > shares[0], shares

    ws = Workspace.create(str(ws_dir))
    projects = ws.list_projects()
    assert [p.name for p in projects] == [PROJECT]  # found again by name, never created twice
    project_id = str(projects[0].id)
    assert sorted(str(r) for r in ws.list_runs(project_id)) == sorted(run_ids)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "evidently-ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ui_command(ws_dir, "127.0.0.1", port),
            env=ui_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    client = httpx.Client(base_url=base, timeout=30)
    try:
        _wait_ready(proc, base, log)

        # the page and its assets: all served by the UI itself, nothing from another host
        index = client.get("/")
        refs = _AssetRefs()
        refs.feed(index.text)
        assert any(u.endswith(".js") for u in refs.urls), refs.urls
        for url in refs.urls:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https"):
                assert parts.hostname in LOOPBACK, f"index.html loads {url}"
            assert parts.scheme in ("", "http", "https"), url
            if not parts.netloc:
                assert client.get(url).status_code == 200, url

        listed = client.get("/api/projects").json()
        assert [(p["id"], p["name"]) for p in listed] == [(project_id, PROJECT)]
        snaps = client.get(f"/api/projects/{project_id}/snapshots").json()
        assert sorted(s["id"] for s in snaps) == sorted(run_ids)
        assert {s["id"]: s["tags"] for s in snaps} == {r: [t] for r, t in tags_of.items()}
        assert sorted(s["name"] for s in snaps) == sorted(f"{t} {sc}" for sc, t in RUNS)

        dashboard = client.get(f"/api/v2/dashboards/{project_id}").json()
        assert [t["title"] for t in dashboard["tabs"]] == [ALL_RUNS_TAB, "press-1", "press-2"]
        sizes = {t["title"]: len(set(t["panels"])) for t in dashboard["tabs"]}
        assert sizes == {ALL_RUNS_TAB: 4, "press-1": 2, "press-2": 2}, sizes
        assert sum(len(t["panels"]) for t in dashboard["tabs"]) == len(dashboard["panels"]) == 8
        panels = _tab_panels(dashboard, ALL_RUNS_TAB)
        kinds = {t: p["plot_params"]["plot_type"] for t, p in panels.items()}
        assert sorted(kinds.values()) == ["counter", "line", "line", "line"], kinds

        # the share of drifted columns over time: one point per run, in run order
        data = _series(client, project_id, panels["Share of drifted columns (all runs)"])
        assert [s["snapshot_id"] for s in data["sources"]] == run_ids
        (share_series,) = data["series"]
        assert share_series["params"]["value_type"] == "share"
        assert share_series["values"] == pytest.approx(shares)
        latest = _series(client, project_id, panels["Share of drifted columns (latest run)"])
        assert latest["series"][0]["values"][-1] == pytest.approx(shares[-1])

        pred = _series(
            client, project_id, panels["Drift score of the model output (prediction, all runs)"]
        )
        assert [s["params"]["column"] for s in pred["series"]] == ["prediction"]
        assert len(pred["series"][0]["values"]) == 3 and None not in pred["series"][0]["values"]
        per_col = _series(client, project_id, panels["Drift score per column (all runs)"])
        assert {s["params"]["column"] for s in per_col["series"]} == {*FEATURES, "prediction"}

        # a target's tab shows that target's runs only
        press1_panels = _tab_panels(dashboard, "press-1")
        press1 = _series(client, project_id, press1_panels["press-1: share of drifted columns"])
        assert [s["snapshot_id"] for s in press1["sources"]] == run_ids[:2]
        assert press1["series"][0]["values"] == pytest.approx(shares[:2])

        # a run saved while the UI is up: listed after the project's reload, its tag gets a tab
        snap = _drift(_window(500, 20, "new_product_mix"), reference)
        late_id = save_run(ws_dir, PROJECT, snap, name="press-3 new_product_mix", tags=["press-3"])
        client.get(f"/api/projects/{project_id}/reload").raise_for_status()
        snaps = client.get(f"/api/projects/{project_id}/snapshots").json()
        assert sorted(s["id"] for s in snaps) == sorted([*run_ids, late_id])
        dashboard = client.get(f"/api/v2/dashboards/{project_id}").json()
        assert [t["title"] for t in dashboard["tabs"]][-1] == "press-3"
        data = _series(client, project_id, panels["Share of drifted columns (all runs)"])
        assert data["series"][0]["values"] == pytest.approx([*shares, _share(snap)])
        assert len(Workspace.create(str(ws_dir)).list_projects()) == 1

        # what a person sees, in Chromium with every host but loopback unreachable: the project
        # list, and the project's dashboard with its panels drawn (screenshots kept)
        render(f"{base}/", ARTIFACTS / "evidently-ui-projects.png", expect=[PROJECT])
        render(
            f"{base}/projects/{project_id}",
            ARTIFACTS / "evidently-ui-dashboard.png",
            expect=[
                "Share of drifted columns (latest run)",
                "Share of drifted columns (all runs)",
                "Drift score of the model output (prediction, all runs)",
            ],
            ready=PANELS_DRAWN,
        )
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
