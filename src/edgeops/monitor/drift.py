"""Drift with Evidently: the window against the deployed model's training split.

Per feature column: the method, its score and threshold, and whether it drifted (read from
Evidently's per-column test status, which knows each method's direction). The share of drifted
feature columns drives the decision; the drift of the model's own output (``prediction``: the
positive class's probability, or the label for more than two classes) is reported beside it.
The methods are fixed in params (``monitor.drift``) rather than left to Evidently's choice by
sample size: with its automatic choice, windows under 1,000 rows get p-value tests at 0.05 per
column, and with eight columns about a third of unchanged windows would be flagged.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.schema import CATEGORICAL, Schema

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.monitor.settings import MonitorSettings

PREDICTION = "prediction"
_worker: ProcessPoolExecutor | None = None


def start_worker() -> Future:
    """Start the Evidently worker process and its import (~9 s) now, while the logs are collected.

    Evidently runs in a child process of its own: importing it is pure Python work, and in a
    thread it would hold the interpreter lock the collector needs; a process uses the second core.
    """
    global _worker
    if _worker is None:
        import multiprocessing

        _worker = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
    return _worker.submit(_import_evidently)


def _exit_with_parent(parent: int) -> None:
    """In the worker: leave as soon as the parent is gone (killed with SIGKILL, it cannot say so)."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _import_evidently() -> bool:
    import evidently.presets  # noqa: F401

    return True


def typed(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Feature columns as the schema types them: numbers as float, categories as text."""
    import pandas as pd

    out = {}
    for col in schema.features:
        s = df[col.name]
        if col.type == CATEGORICAL:
            out[col.name] = s.map(lambda v: None if v is None or v != v else str(v))
        else:
            out[col.name] = pd.to_numeric(s, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=df.index)


def prediction_column(proba: Any, classes: list[Any], positive: Any = None) -> Any:
    """The model output to watch: P(positive class) for two classes (``positive``: the manifest's
    ``positive_class``, default the second class), else the predicted label."""
    import numpy as np

    from edgeops.stages.evaluate import positive_index

    proba = np.asarray(proba, dtype="float64")
    if len(classes) == 2:
        return proba[:, positive_index(classes, positive)]
    return np.asarray([str(c) for c in classes], dtype=object)[proba.argmax(axis=1)]


def window_proba(window: pd.DataFrame) -> Any:
    """The logged probabilities of a window as an array (rows x classes)."""
    import numpy as np

    return np.asarray([json.loads(p) for p in window["_probabilities"]], dtype="float64")


def run_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    schema: Schema,
    classes: list[Any],
    settings: MonitorSettings,
    html: Path | None = None,
    workspace: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evidently on two frames that already hold the typed features and ``prediction``, in the
    worker process: the HTML report is written to ``html``, the run added to the Evidently
    ``workspace`` (``{"dir", "project", "name", "tags"}``). Returns (outputs, JSON-ready summary)."""
    from concurrent.futures.process import BrokenProcessPool

    from edgeops.errors import EdgeopsError

    if _worker is None:
        start_worker()
    assert _worker is not None
    try:
        return _worker.submit(
            _drift_job, current, reference, schema, classes, settings, html, workspace
        ).result()
    except BrokenProcessPool as exc:
        raise EdgeopsError(
            f"the Evidently worker process died: {exc}",
            fix="look for an out-of-memory kill (dmesg) and run again",
        ) from None


def _drift_job(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    schema: Schema,
    classes: list[Any],
    settings: MonitorSettings,
    html: Path | None,
    workspace: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from edgeops import atomic

    features = [c.name for c in schema.features]
    numerical = [c.name for c in schema.features if c.type != CATEGORICAL]
    categorical = [c.name for c in schema.features if c.type == CATEGORICAL]
    (numerical if len(classes) == 2 else categorical).append(PREDICTION)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    cols = [*features, PREDICTION]
    preset = DataDriftPreset(
        columns=cols,
        num_method=settings.num_method,
        num_threshold=settings.num_threshold,
        cat_method=settings.cat_method,
        cat_threshold=settings.cat_threshold,
        drift_share=max(settings.drift_share, 1e-9),
    )
    snap = Report([preset], include_tests=True).run(
        Dataset.from_pandas(current[cols], data_definition=definition),
        Dataset.from_pandas(reference[cols], data_definition=definition),
    )
    outputs: dict[str, Any] = {}
    if html is not None:
        with atomic.atomic_path(html) as tmp:
            snap.save_html(str(tmp))
        outputs["drift_html"] = str(html)
    if workspace is not None:
        from edgeops.monitor.workspace import save_run

        try:
            outputs["evidently_run"] = save_run(
                Path(workspace["dir"]),
                workspace["project"],
                snap,
                name=workspace["name"],
                tags=workspace.get("tags"),
            )
        except Exception as exc:  # noqa: BLE001 (the reports are written; the UI's copy is a bonus)
            outputs["evidently_error"] = f"could not save the run to the Evidently workspace: {exc}"
    return outputs, summarize(snap.dict(), features, settings)


def summarize(d: dict[str, Any], features: list[str], settings: MonitorSettings) -> dict[str, Any]:
    """Per-column method/score/threshold/drifted and the share, from a snapshot's dict."""
    status = {
        t["metric_config"]["params"]["column"]: str(getattr(t["status"], "value", t["status"]))
        for t in d["tests"]
        if t["metric_config"]["params"]["type"].endswith("ValueDrift")
    }
    columns: dict[str, dict[str, Any]] = {}
    for m in d["metrics"]:
        if not m["metric_name"].startswith("ValueDrift"):
            continue
        c = m["config"]
        columns[c["column"]] = {
            "method": c.get("method"),
            "score": round(float(m["value"]), 6),
            "threshold": c.get("threshold"),
            "drifted": status.get(c["column"]) == "FAIL",
        }
    drifted = [f for f in features if columns.get(f, {}).get("drifted")]
    share = len(drifted) / len(features) if features else 0.0
    return {
        "columns": {f: columns[f] for f in features if f in columns},
        "drifted_columns": drifted,
        "share": round(share, 6),
        "share_threshold": settings.drift_share,
        "dataset_drift": share >= settings.drift_share and bool(drifted),
        "prediction": columns.get(PREDICTION),
    }
