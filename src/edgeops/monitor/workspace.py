"""The local Evidently workspace: every drift run saved, so the self-hosted UI shows drift over time.

:func:`save_run` adds a drift snapshot to a project of a local workspace (a folder), creating the
project, and its dashboard, on first use; :func:`serve_ui` starts ``evidently ui`` on that folder,
offline and with its telemetry off (``DO_NOT_TRACK``).

The dashboard (Evidently 0.7 panels; a panel's series are found by metric type and labels):

- tab ``All runs``: a counter of the latest share of drifted columns, line plots of that share,
  of the drift score of ``prediction`` and of every column's drift score, over every run;
- one tab per tag (edgeops tags each run with its target's name), added the first time a run
  brings the tag: the share and the ``prediction`` score of the runs carrying that tag.

The self-hosted UI of 0.7.23 shows every panel on one page and ignores the tabs (they are kept
for the tab-aware UIs), hence the tag in the per-tag panels' titles. The share is Evidently's
``DriftedColumnsCount``: it counts ``prediction`` as a column too, so it can differ from the
feature-only share that edgeops' drift decision uses.

The UI reads projects when it starts and a project's runs when asked to (its "reload" button on the
reports page, or ``GET /api/projects/{id}/reload``); dashboard layouts are read on every request.

Evidently takes about 9 s to import: it is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError
from edgeops.offline import TELEMETRY_OFF

if TYPE_CHECKING:
    from evidently.sdk.models import DashboardPanelPlot

ALL_RUNS_TAB = "All runs"
PREDICTION = "prediction"  # the model-output column edgeops adds to every drift report
SHARE_METRIC = "evidently:metric_v2:DriftedColumnsCount"
SCORE_METRIC = "evidently:metric_v2:ValueDrift"
_LOCK_FILE = ".edgeops-save.lock"  # a file, not a folder: the UI only loads folders as projects


def save_run(
    workspace_dir: Path,
    project: str,
    snapshot: Any,
    name: str,
    tags: list[str] | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Add a drift ``snapshot`` (``Report.run(...)``'s result) to ``project``; return the run id.

    The workspace folder and the project (looked up by name, created once, with its dashboard) are
    created when missing. The run is stored without its data (``include_data=False``), under
    ``name``, with ``tags`` and ``metadata`` added to the snapshot's own; each new tag gets a
    dashboard tab of its own. The caller's snapshot object is not modified.

    >>> save_run(Path("monitoring/evidently"), "plant-failure", snap, "line-3 2026-11-22T10:00Z",
    ...          tags=["line-3"])  # doctest: +SKIP
    '0192f3c1-...'
    """
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    workspace_dir = Path(workspace_dir)
    workspace_dir.mkdir(parents=True, exist_ok=True)
    # The snapshot has no public setter for tags/metadata: copy it through its serialized model.
    model = snapshot.to_snapshot_model()
    model.tags = list(dict.fromkeys([*model.tags, *(tags or [])]))
    model.metadata = {**model.metadata, **(metadata or {})}
    run = Snapshot.load_model(model)

    with _locked(workspace_dir / _LOCK_FILE):
        ws = Workspace.create(str(workspace_dir))
        found = ws.search_project(project)
        if found:
            project_id = found[0].id
        else:
            created = ws.create_project(project, description="edgeops drift monitoring")
            project_id = created.id
        _ensure_tabs(ws, project_id, [ALL_RUNS_TAB, *model.tags])
        ref = ws.add_run(project_id, run, include_data=False, name=name)
    return str(ref.id)


def drift_panels(tag: str | None = None) -> list[DashboardPanelPlot]:
    """The drift-over-time panels: of every run (``tag=None``), or of the runs tagged ``tag``.

    Every run: a counter of the latest share of drifted columns, a line plot of that share, one of
    the drift score of ``prediction`` and one of every column's score. A tag: the share and the
    ``prediction`` score, side by side, titled with the tag.
    """
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    tags = [tag] if tag else []
    share = PanelMetric(
        legend="share of drifted columns",
        metric=SHARE_METRIC,
        metric_labels={"value_type": "share"},
        tags=tags,
    )
    prediction = PanelMetric(
        legend=f"{PREDICTION} ({{{{method}}}})",
        metric=SCORE_METRIC,
        metric_labels={"column": PREDICTION},
        tags=tags,
    )
    if tag:
        return [
            line_plot_panel(title=f"{tag}: share of drifted columns", values=[share], size="half"),
            line_plot_panel(
                title=f"{tag}: drift score of {PREDICTION}", values=[prediction], size="half"
            ),
        ]
    return [
        counter_panel(
            title="Share of drifted columns (latest run)",
            values=[share],
            aggregation="last",
            description="of the feature columns, the figure the decision uses",
            size="half",
        ),
        line_plot_panel(title="Share of drifted columns (all runs)", values=[share], size="half"),
        line_plot_panel(
            title=f"Drift score of the model output ({PREDICTION}, all runs)",
            values=[prediction],
            description="distance between the window and the reference; higher = more drift",
            size="full",
        ),
        line_plot_panel(
            title="Drift score per column (all runs)",
            values=[PanelMetric(legend="{{column}} ({{method}})", metric=SCORE_METRIC)],
            description="each column against its own threshold (numeric and categorical methods differ)",
            size="full",
        ),
    ]


def _ensure_tabs(ws: Any, project_id: Any, titles: list[str]) -> None:
    """Add each missing tab with its panels, in one write per tab.

    (``project.dashboard.add_panel(panel, tab=...)`` in Evidently 0.7.23 lists a panel twice when
    the tab already exists, so the tab is built whole and saved with ``save_dashboard``.)
    """
    from evidently.sdk.models import DashboardTabModel

    for title in titles:
        dashboard = ws.get_dashboard(project_id)
        if any(t.title == title for t in dashboard.tabs):
            continue
        panels = drift_panels(None if title == ALL_RUNS_TAB else title)
        dashboard.panels.extend(panels)
        dashboard.tabs.append(DashboardTabModel(title=title, panels=[p.id for p in panels]))
        ws.save_dashboard(project_id, dashboard)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize find-or-create-project + add-run between processes (POSIX; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: The switches the Evidently UI reads: always off for it (values from telemetry-off.env).
UI_FORCED_OFF = ("DO_NOT_TRACK", "EVIDENTLY_DISABLE_TELEMETRY")


def ui_env() -> dict[str, str]:
    """Environment for the UI process: this one's, with every telemetry switch off.

    ``evidently ui`` reports usage unless ``DO_NOT_TRACK`` is set (to any value), so its two
    switches are forced off even where the operator set them; the others are kept if set.
    """
    env = dict(os.environ)
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
    env.update({key: TELEMETRY_OFF[key] for key in UI_FORCED_OFF})
    return env


def ui_command(workspace_dir: Path, host: str, port: int) -> list[str]:
    """The argv that starts ``evidently ui`` on ``workspace_dir`` from this interpreter's environment.

    >>> ui_command(Path("ws"), "127.0.0.1", 8000)[1:]  # doctest: +SKIP
    ['ui', '--workspace', 'ws', '--host', '127.0.0.1', '--port', '8000']
    """
    import importlib.util

    args = ["ui", "--workspace", str(workspace_dir), "--host", host, "--port", str(port)]
    script = Path(sys.executable).parent / ("evidently.exe" if os.name == "nt" else "evidently")
    if script.is_file():
        return [str(script), *args]
    if importlib.util.find_spec("evidently") is not None:
        return [sys.executable, "-m", "evidently.cli", *args]
    raise EdgeopsError(
        "the Evidently UI is not installed in this environment",
        fix="pip install 'edgeops[pipeline]'  (or `make demo`, which installs everything)",
        exit_code=1,
    )


def serve_ui(workspace_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the Evidently UI on ``workspace_dir`` in the foreground until it exits or Ctrl-C.

    >>> serve_ui(Path("monitoring/evidently"), port=8000)  # doctest: +SKIP
    """
    workspace_dir = Path(workspace_dir)
    if not workspace_dir.is_dir():
        raise EdgeopsError(
            f"no Evidently workspace at {workspace_dir}",
            fix="run `edgeops monitor` first: it creates the workspace",
        )
    argv = ui_command(workspace_dir, host, port)
    print(
        f"Evidently UI on http://{host}:{port} (workspace {workspace_dir}); Ctrl-C stops it",
        flush=True,
    )
    proc = subprocess.Popen(argv, env=ui_env())
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to the UI as well: let it shut down
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    if code != 0:
        raise EdgeopsError(
            f"the Evidently UI exited with code {code}",
            fix=f"see its output above; is port {port} already in use? try --port {port + 1}",
            exit_code=1,
        )
