"""Drift with Evidently: the window against what the deployed model learned.

The reference holds the regimes of the training split (monitor/reference.py): the whole split
(the mixture) and, after a retrain on production rows, the source's rows and the production rows
apart. The window is judged as a whole against each: per feature column the configured method's
score against a threshold that fits the sizes (:func:`noise_threshold`), and the share of drifted
feature columns. The regime with the lowest share (then the lowest mean score/threshold) is the
one the window matched: the window is drift only when it is drifted against every regime, which
is when it is drifted against the matched one. Evidently then runs once, against the matched
regime, with the same methods and thresholds: every figure reported (share, drifted columns,
per-column scores, in drift.json, decision.json, summary.md and the HTML page) comes from that
one run. The drift share is over the feature columns only; the drift of the model's own output
(``prediction``: the positive class's probability, or the label for more than two classes) is a
metric of its own beside it.

The methods are fixed in params (``monitor.drift``) rather than left to Evidently's choice by
sample size: with its automatic choice, windows under 1,000 rows get p-value tests at 0.05 per
column, and with eight columns about a third of unchanged windows would be flagged.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.schema import CATEGORICAL, Schema

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.monitor.reference import Reference
    from edgeops.monitor.settings import MonitorSettings

PREDICTION = "prediction"
#: the methods whose score is a distance (drift when score >= threshold); the others are p-values
DISTANCES = ("wasserstein", "psi", "kl_div", "jensenshannon", "ed")
#: resampled pairs (window, reference) per column and regime for :func:`noise_threshold`
NOISE_DRAWS = 200
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


def judged_frame(
    rows: pd.DataFrame, proba: Any, schema: Schema, classes: list[Any], positive: Any = None
) -> pd.DataFrame:
    """What the drift step judges of some rows: the typed features and the model's ``prediction``
    (from ``proba``, the model's probabilities on the rows)."""
    out = typed(rows, schema)
    out[PREDICTION] = prediction_column(proba, classes, positive)
    return out


def regime_frames(ref: Reference, schema: Schema, positive: Any = None) -> list[RegimeFrame]:
    """The reference's regimes (the whole split first) as the drift step judges them."""
    return [
        RegimeFrame(
            r.name, judged_frame(r.frame, r.proba, schema, ref.classes, positive), r.rows_total
        )
        for r in ref.regimes
    ]


def window_proba(window: pd.DataFrame) -> Any:
    """The logged probabilities of a window as an array (rows x classes)."""
    import numpy as np

    return np.asarray([json.loads(p) for p in window["_probabilities"]], dtype="float64")


@dataclass
class RegimeFrame:
    """One regime of the reference as the drift step judges it: typed features + ``prediction``."""

    name: str
    frame: pd.DataFrame
    rows_total: int


@dataclass
class Judged:
    """A window against one regime: per-column scores and thresholds (the prediction's too)."""

    regime: str
    rows: int  # the regime's sampled rows
    of: int  # its rows in the training split
    scores: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)  # feature columns
    share: float = 0.0
    closeness: float = 0.0  # mean score/threshold of the feature columns: lower is closer

    def brief(self) -> dict[str, Any]:
        return {
            "regime": self.regime,
            "rows": self.rows,
            "of": self.of,
            "share": round(self.share, 6),
            "drifted_columns": self.drifted,
        }


def kinds(schema: Schema, classes: list[Any]) -> dict[str, str]:
    """Each judged column's kind, ``num`` or ``cat``; ``prediction`` is a number for two classes."""
    out = {c.name: "cat" if c.type == CATEGORICAL else "num" for c in schema.features}
    out[PREDICTION] = "num" if len(classes) == 2 else "cat"
    return out


def _clean(s: pd.Series) -> pd.Series:
    """What Evidently drops before a drift test: missing and infinite values."""
    import numpy as np

    return s.replace([-np.inf, np.inf], np.nan).dropna()


def _stattest(kind: str, method: str) -> Any:
    import pandas as pd
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    ctype = ColumnType.Numerical if kind == "num" else ColumnType.Categorical
    test = get_stattest(pd.Series([0.0]), pd.Series([0.0]), ctype, method)
    return lambda ref, cur, thr: test(ref, cur, ctype, thr).drift_score


def column_quantile(false_alarm: float, columns: int) -> float:
    """The quantile of a column's noise its threshold sits at, for a share ``false_alarm`` of
    unchanged windows flagged in all: ``1 - false_alarm / columns`` (a union bound: one drifted
    column flags the window at the default ``drift.share``)."""
    return 1.0 - false_alarm / max(columns, 1)


def noise_threshold(
    ref: pd.Series, n: int, kind: str, settings: MonitorSettings, seed: int, columns: int
) -> float:
    """The threshold a column's distance is judged against, for a window of ``n`` rows and this
    reference of ``m = len(ref)`` rows::

        threshold = max(configured, noise_q(n, m)),  q = 1 - monitor.drift.false_alarm / columns

    ``noise_q`` is the q-quantile of the distance that sampling alone gives at these sizes: the
    distance between two samples of m and n rows drawn with replacement from ``ref`` (a bootstrap
    of "the window comes from the reference"), :data:`NOISE_DRAWS` of them, the quantile read
    from a log-normal fitted to them (a tail beyond the draws is read steadily from few draws).
    A small window or a small regime gets a threshold above its noise; a large one keeps the
    configured threshold (the size of a change that matters). A p-value method is judged at the
    configured threshold (a p-value knows the sizes already); ``false_alarm: 0`` turns this off."""
    import statistics

    import numpy as np
    import pandas as pd

    method = settings.num_method if kind == "num" else settings.cat_method
    configured = float(settings.num_threshold if kind == "num" else settings.cat_threshold)
    if method not in DISTANCES or settings.false_alarm <= 0 or len(ref) == 0 or n == 0:
        return configured
    rng = np.random.default_rng(seed)
    values = ref.to_numpy()
    if method == "wasserstein" and kind == "num" or method == "jensenshannon" and kind == "cat":
        draws = _resampled(values, n, method, rng)
    else:  # other distances: Evidently's own function on each pair (slower)
        score = _stattest(kind, method)
        m = len(values)
        draws = np.asarray(
            [
                score(pd.Series(rng.choice(values, m)), pd.Series(rng.choice(values, n)), 1)
                for _ in range(NOISE_DRAWS)
            ],
            dtype="float64",
        )
    draws = draws[np.isfinite(draws) & (draws > 0)]
    if len(draws) < NOISE_DRAWS // 2:  # (nearly) constant: sampling moves nothing
        return configured
    z = statistics.NormalDist().inv_cdf(column_quantile(settings.false_alarm, columns))
    logs = np.log(draws)
    noise = float(np.exp(logs.mean() + z * logs.std()))
    return round(max(configured, noise), 4)


def _resampled(values: Any, n: int, method: str, rng: Any) -> Any:
    """:data:`NOISE_DRAWS` distances between a resample of ``values`` (as many) and one of ``n``,
    at once: both samples live on the values' own support, so each is a row of counts over it.
    The formulas are Evidently's: Wasserstein between the two samples over the reference sample's
    std (at least 0.001), Jensen-Shannon distance (natural log) of the category shares."""
    import numpy as np

    support, codes = np.unique(
        values.astype(str) if method == "jensenshannon" else values, return_inverse=True
    )
    k, m = len(support), len(values)

    def counts(size: int) -> Any:
        picks = codes[rng.integers(0, m, size=(NOISE_DRAWS, size))]
        rows = np.arange(NOISE_DRAWS)[:, None] * k
        return np.bincount((rows + picks).ravel(), minlength=NOISE_DRAWS * k).reshape(
            NOISE_DRAWS, k
        )

    ref, cur = counts(m) / m, counts(n) / n
    if method == "jensenshannon":
        mid = (ref + cur) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            div = np.where(ref > 0, ref * np.log(ref / mid), 0.0).sum(1)
            div += np.where(cur > 0, cur * np.log(cur / mid), 0.0).sum(1)
        return np.sqrt(np.maximum(div, 0.0) / 2)
    gaps = np.diff(support.astype("float64"))
    dist = np.abs(np.cumsum(ref, 1) - np.cumsum(cur, 1))[:, :-1] @ gaps
    mean = ref @ support
    std = np.sqrt(np.maximum(ref @ support**2 - mean**2, 0.0))
    return dist / np.maximum(std, 0.001)


def judge(
    current: pd.DataFrame,
    regime: RegimeFrame,
    columns: dict[str, str],
    settings: MonitorSettings,
) -> Judged:
    """The window against one regime: each column's score (Evidently's own test function, on the
    rows Evidently keeps), its size-aware threshold, the drifted feature columns and their share."""
    j = Judged(regime.name, len(regime.frame), regime.rows_total)
    ratios = []
    features = [c for c in columns if c != PREDICTION]
    for i, (col, kind) in enumerate(columns.items()):
        ref, cur = _clean(regime.frame[col]), _clean(current[col])
        if ref.empty or cur.empty:
            continue
        method = settings.num_method if kind == "num" else settings.cat_method
        thr = noise_threshold(
            ref, len(cur), kind, settings, settings.seed * 1000 + i, len(features)
        )
        score = float(_stattest(kind, method)(ref, cur, thr))
        j.scores[col], j.thresholds[col] = score, thr
        if col == PREDICTION:
            continue
        drifted = score >= thr if method in DISTANCES else score < thr
        if drifted:
            j.drifted.append(col)
        ratios.append(score / thr if method in DISTANCES else (1 - score))
    j.share = len(j.drifted) / len(features) if features else 0.0
    j.closeness = sum(ratios) / len(ratios) if ratios else 0.0
    return j


def matched(judged: list[Judged]) -> Judged:
    """The regime the window is closest to: fewest drifted columns, then the lowest scores."""
    return min(judged, key=lambda j: (j.share, j.closeness))


def run_drift(
    current: pd.DataFrame,
    regimes: list[RegimeFrame],
    schema: Schema,
    classes: list[Any],
    settings: MonitorSettings,
    html: Path | None = None,
    workspace: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Judge ``current`` against each of the reference's ``regimes`` (frames that already hold
    the typed features and ``prediction``) and run Evidently against the one it matched, in the
    worker process: the HTML report is written to ``html``, the run added to the Evidently
    ``workspace`` (``{"dir", "project", "name", "tags"}``). Returns (outputs, JSON-ready summary)."""
    from concurrent.futures.process import BrokenProcessPool

    from edgeops.errors import EdgeopsError

    if _worker is None:
        start_worker()
    assert _worker is not None
    try:
        return _worker.submit(
            _drift_job, current, regimes, schema, classes, settings, html, workspace
        ).result()
    except BrokenProcessPool as exc:
        raise EdgeopsError(
            f"the Evidently worker process died: {exc}",
            fix="look for an out-of-memory kill (dmesg) and run again",
        ) from None


def _drift_job(
    current: pd.DataFrame,
    regimes: list[RegimeFrame],
    schema: Schema,
    classes: list[Any],
    settings: MonitorSettings,
    html: Path | None,
    workspace: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    from edgeops import atomic

    columns = kinds(schema, classes)
    judged = [judge(current, r, columns, settings) for r in regimes]
    best = matched(judged)
    reference = next(r for r in regimes if r.name == best.regime).frame
    features = [c.name for c in schema.features]
    numerical = [c for c, k in columns.items() if k == "num"]
    categorical = [c for c, k in columns.items() if k == "cat"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    cols = [*features, PREDICTION]
    thresholds = {c: best.thresholds[c] for c in features if c in best.thresholds}
    preset = DataDriftPreset(
        columns=features,
        num_method=settings.num_method,
        num_threshold=settings.num_threshold,
        cat_method=settings.cat_method,
        cat_threshold=settings.cat_threshold,
        per_column_threshold=thresholds,
        drift_share=max(settings.drift_share, 1e-9),
    )
    pred_kind = columns[PREDICTION]
    prediction = ValueDrift(
        column=PREDICTION,
        method=settings.num_method if pred_kind == "num" else settings.cat_method,
        threshold=best.thresholds.get(PREDICTION),
    )
    snap = Report([preset, prediction], include_tests=True).run(
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
    summary = summarize(snap.dict(), features, settings)
    summary["regime"] = best.regime
    summary["regimes"] = [j.brief() for j in judged]
    return outputs, summary


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
