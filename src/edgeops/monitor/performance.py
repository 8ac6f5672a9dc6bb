"""Performance on the shop floor: the window's rows with ground-truth feedback, scored like the
test split was, against the deployed version's own test figures (from its signed manifest).

Judged are the classes *present* in the feedback: those with at least
``monitor.performance.min_per_class`` labelled rows. A class that does not occur in this season
(snow in summer) is named with its count and left out: the window's figures are computed on the
rows of the judged classes, and so are the test figures they are compared with (the test split
restricted to the same classes), so that the comparison is fair. No verdict only when there are
too few labelled rows, or fewer than two classes present.

Judged metrics: ``evaluate.primary_metric`` and ``monitor.performance.guard_metrics``. A metric
*drops* when it gets worse than its test figure (a fall for every metric here: higher is better);
a rise is never a drop. ``degraded`` when any judged metric dropped by ``max_drop`` or more. Every
other metric is shown with its figures, marked as not judged, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.edge.bundle import VerifiedBundle
    from edgeops.monitor.settings import MonitorSettings

COMPARED = ("roc_auc", "pr_auc", "f1", "balanced_accuracy", "accuracy")
#: +1: higher is better (a fall is a drop), -1: lower is better (a rise is a drop)
DIRECTION = {k: 1 for k in COMPARED}
#: figures over a subset of the classes that the manifest's per-class test figures (recall and
#: support of each class) give exactly: mean recall, and the support-weighted recall
FROM_PER_CLASS = ("balanced_accuracy", "accuracy")
OK, DEGRADED, NOT_ENOUGH, NOT_JUDGED = "ok", "degraded", "not_enough_labels", "not_judged"


@dataclass
class TestRows:
    """The deployed version's test split as the model sees it: labels and its probabilities."""

    __test__ = False  # not a test class (pytest collects Test* names)

    y: Any  # labels, as the model's classes
    proba: Any  # columns = the model's classes
    source: str


def load_test_rows(path: Path, bundle: VerifiedBundle, target: str) -> TestRows:
    """The test split at ``path`` scored by ``bundle``, if it is the split the bundle's test
    figures come from (same row count and rows per class as its manifest); else a clear error."""
    import pandas as pd

    from edgeops.deploy.gate import predict_proba

    if not path.is_file():
        raise EdgeopsError(f"the test split {path} is not here", fix="run `dvc pull`")
    df = pd.read_parquet(path)
    metrics = bundle.manifest.get("metrics") or {}
    support = {c: v.get("support") for c, v in (metrics.get("per_class") or {}).items()}
    classes = list(bundle.model.classes)
    y = _as_classes(df[target], classes) if target in df.columns else None
    here = {str(c): int(sum(1 for v in y if v == c)) for c in classes} if y is not None else None
    if y is None or len(df) != metrics.get("n_test") or (support and here != support):
        raise EdgeopsError(
            f"{path} is not the test split of {bundle.version} ({len(df):,} rows, "
            f"{here}; its manifest: {metrics.get('n_test')} rows, {support or 'no counts'})",
            fix=f"check out the commit that built {bundle.version} and run `dvc pull`",
        )
    return TestRows(y, predict_proba(bundle, df), str(path))


def _as_classes(values: Any, classes: list[Any]) -> Any:
    """Labels as the model's classes (compared as text: JSON feedback is text); None: unknown."""
    import numpy as np

    by_str = {str(c): c for c in classes}
    return np.asarray([by_str.get(str(v)) for v in values], dtype=object)


def judged_scores(
    y: Any, proba: Any, classes: list[Any], judged: list[Any], positive: Any = None
) -> dict[str, float]:
    """The metrics of rows whose labels are all among ``judged`` (the model still predicts any of
    ``classes``). Both classes of a binary target: :func:`edgeops.stages.evaluate.scores`. More
    classes: macro averages over the judged classes (one-vs-rest ROC AUC and PR AUC of each, F1
    of each, recall of each for balanced accuracy); all classes judged: as ``scores``."""
    import numpy as np
    from sklearn import metrics as skm

    from edgeops.stages.evaluate import scores

    y = np.asarray(list(y))
    proba = np.asarray(proba)
    if len(classes) == 2:  # both classes judged: fewer is no verdict
        s = scores(y, proba, list(classes), positive)
        return {k: float(s[k]) for k in COMPARED if k in s}
    pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    col = {str(c): i for i, c in enumerate(classes)}
    recall = [float(np.mean(pred[y == c] == c)) for c in judged]
    return {
        "roc_auc": float(
            np.mean([skm.roc_auc_score(y == c, proba[:, col[str(c)]]) for c in judged])
        ),
        "pr_auc": float(
            np.mean([skm.average_precision_score(y == c, proba[:, col[str(c)]]) for c in judged])
        ),
        "f1": float(
            skm.f1_score(
                y.astype(str),
                pred.astype(str),
                labels=[str(c) for c in judged],
                average="macro",
                zero_division=0,
            )
        ),
        "balanced_accuracy": float(np.mean(recall)),
        "accuracy": float(np.mean(pred == y)),
    }


def per_class_figures(test_metrics: dict[str, Any], judged: list[Any]) -> dict[str, float]:
    """Balanced accuracy and accuracy of the test split restricted to the ``judged`` classes,
    from the manifest's per-class recall and support (exact: a class's recall does not depend on
    the rows of other classes). Empty when the manifest has no per-class figures."""
    per = test_metrics.get("per_class") or {}
    rows = [per.get(str(c)) for c in judged]
    if not rows or any(not r or not r.get("support") for r in rows):
        return {}
    n = sum(r["support"] for r in rows)
    return {
        "balanced_accuracy": sum(r["recall"] for r in rows) / len(rows),
        "accuracy": sum(r["recall"] * r["support"] for r in rows) / n,
    }


def _names(counts: dict[str, int]) -> str:
    return ", ".join(f"{c!r} {n}" for c, n in counts.items())


def performance(
    window: pd.DataFrame,
    proba: Any,
    classes: list[Any],
    test_metrics: dict[str, Any],
    primary: str,
    settings: MonitorSettings,
    positive: Any = None,
    test_rows: Callable[[], TestRows] | None = None,
) -> dict[str, Any]:
    """Metrics on labelled rows; ``verdict`` is ``ok``, ``degraded``, ``not_enough_labels`` (too
    few labelled rows, or fewer than two classes present) or ``not_judged`` (no judged metric
    could be compared).

    ``positive``: a binary target's positive class, the manifest's ``positive_class`` (the one
    its test figures are about); default the second class. ``test_rows``: loads the deployed
    version's test split (:func:`load_test_rows`), called only when a class is left out and a
    judged metric's test figure over the judged classes needs the rows."""
    import numpy as np

    labelled = window["_feedback"].notna().to_numpy()
    y = _as_classes(window.loc[labelled, "_feedback"], classes)
    known = np.asarray([v is not None for v in y], dtype=bool)
    y, p = y[known], np.asarray(proba)[labelled][known]
    counts = {str(c): int(sum(1 for v in y if v == c)) for c in classes}
    mpc = settings.min_per_class
    judged = [c for c in classes if counts[str(c)] >= mpc]
    rare = {str(c): counts[str(c)] for c in classes if counts[str(c)] < mpc}
    guards = [g for g in settings.guard_metrics if g != primary]
    out: dict[str, Any] = {
        "labelled_rows": int(len(y)),
        "unknown_labels": int((~known).sum()),
        "class_counts": counts,
        "primary_metric": primary,
        "guard_metrics": guards,
        "max_drop": settings.max_drop,
        "judged_classes": [str(c) for c in judged],
        "too_rare": rare,
        "test": {},
    }
    rare_txt = f"too rare to judge (fewer than {mpc} labelled rows): {_names(rare)}" if rare else ""
    if len(y) < settings.min_labelled:
        reason = f"not enough feedback: {len(y)} labelled rows (need {settings.min_labelled})"
        return {**out, "verdict": NOT_ENOUGH, "reason": reason}
    if len(judged) < 2:
        present = _names({str(c): counts[str(c)] for c in judged}) or "none"
        reason = (
            f"fewer than two classes present: {len(judged)} with at least {mpc} labelled rows "
            f"({present}); {rare_txt}: no verdict"
        )
        if len(classes) == 2:
            reason += " (a binary target's roc_auc, pr_auc and f1 need both classes)"
        return {**out, "verdict": NOT_ENOUGH, "reason": reason}
    keep = np.asarray([v in judged for v in y], dtype=bool)
    y, p = y[keep], p[keep]
    out["judged_rows"] = int(len(y))
    if len(y) < settings.min_labelled:
        reason = (
            f"not enough feedback: {len(y)} labelled rows of the classes present "
            f"(need {settings.min_labelled}); {rare_txt}"
        )
        return {**out, "verdict": NOT_ENOUGH, "reason": reason}
    prod = judged_scores(y, p, list(classes), judged, positive)
    everything = len(judged) == len(classes)
    test, sources, missing = _test_figures(
        test_metrics, list(classes), judged, positive, primary, guards, everything, test_rows
    )
    out["test"] = {k: round(v, 6) for k, v in test.items()}
    out["test_source"] = sources
    out["production"] = {k: round(v, 6) for k, v in prod.items()}
    out["drop"] = {k: round((test[k] - prod[k]) * DIRECTION[k], 6) for k in prod if k in test}
    scope = f"{len(y)} labelled rows"
    if not everything:
        scope += (
            f" of {len(judged)} of {len(classes)} classes "
            f"({', '.join(repr(str(c)) for c in judged)}); {rare_txt}"
        )
    out["scope"] = scope
    rows: dict[str, dict[str, Any]] = {}
    for k in [primary, *guards, *[m for m in COMPARED if m != primary and m not in guards]]:
        role = "primary" if k == primary else "guard" if k in guards else None
        row: dict[str, Any] = {
            "role": role,
            "production": out["production"].get(k),
            "test": out["test"].get(k),
            "drop": out["drop"].get(k),
        }
        if role is None:
            if row["production"] is None:
                continue
            row["judged"] = False
            row["note"] = "shown, not judged: not evaluate.primary_metric nor a guard metric"
        elif row["drop"] is None:
            row["judged"] = False
            row["note"] = f"not judged: {missing.get(k) or _why_not(k, prod, test)}"
        else:
            row["judged"] = True
            row["degraded"] = row["drop"] > 0 and row["drop"] >= settings.max_drop
        rows[k] = row
    out["metrics"] = rows
    return {**out, **_verdict(rows, settings.max_drop, scope)}


def _why_not(k: str, prod: dict[str, float], test: dict[str, float]) -> str:
    if k not in COMPARED:
        return f"{k} is not one of the metrics monitoring computes {COMPARED}"
    if k not in prod:
        return f"{k} cannot be computed on these labelled rows"
    return f"the deployed version's manifest has no test figure for {k}"


def _test_figures(
    test_metrics: dict[str, Any],
    classes: list[Any],
    judged: list[Any],
    positive: Any,
    primary: str,
    guards: list[str],
    everything: bool,
    test_rows: Callable[[], TestRows] | None,
) -> tuple[dict[str, float], str, dict[str, str]]:
    """(test figures over the judged classes, where they come from, why some are missing)."""
    import numpy as np

    if everything:
        figures = {
            k: float(v) for k in COMPARED if isinstance(v := test_metrics.get(k), int | float)
        }
        return figures, "the manifest's test figures (all classes)", {}
    figures = per_class_figures(test_metrics, judged)
    source = "the manifest's per-class test figures, over the judged classes"
    missing: dict[str, str] = {}
    need = [k for k in (primary, *guards) if k in COMPARED and k not in figures]
    if need and test_rows is not None:
        try:
            t = test_rows()
        except EdgeopsError as exc:
            why = exc.problem + (f" (fix: {exc.fix})" if exc.fix else "")
            missing = {
                k: f"its test figure over the judged classes needs the test split: {why}"
                for k in need
            }
        else:
            keep = np.asarray([v in judged for v in t.y], dtype=bool)
            figures = {
                **judged_scores(t.y[keep], np.asarray(t.proba)[keep], classes, judged, positive),
                **figures,
            }
            source = f"the test split {t.source}, restricted to the judged classes"
    elif need:
        missing = {k: "its test figure over the judged classes needs the test split" for k in need}
    return figures, source, missing


def _verdict(rows: dict[str, dict[str, Any]], max_drop: float, scope: str) -> dict[str, Any]:
    """ok / degraded / not_judged, and a reason that states every judged metric's drop."""

    def said(k: str, r: dict[str, Any]) -> str:
        moved = f"fell {r['drop']:.3f}" if r["drop"] > 0 else f"rose {-r['drop']:.3f}"
        if r["drop"] == 0:
            moved = "unchanged"
        return f"{k} {r['production']:.3f} vs test {r['test']:.3f} ({moved}; max drop {max_drop:g})"

    judged = {k: r for k, r in rows.items() if r.get("judged")}
    unjudged = [f"{k} {r['note']}" for k, r in rows.items() if r["role"] and not r["judged"]]
    if not judged:
        return {"verdict": NOT_JUDGED, "reason": "; ".join([*unjudged, f"on {scope}"])}
    bad = [k for k, r in judged.items() if r["degraded"]]
    fine = [k for k in judged if k not in bad]
    parts = [
        *[f"{said(k, judged[k])}: degraded" for k in bad],
        *[said(k, judged[k]) for k in fine],
        *unjudged,
    ]
    return {
        "verdict": DEGRADED if bad else OK,
        "reason": "; ".join(parts) + f"; on {scope}",
    }
