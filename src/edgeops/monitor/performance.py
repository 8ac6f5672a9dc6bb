"""Performance on the shop floor: the window's rows with ground-truth feedback, scored like the
test split was, against the deployed version's own test figures (from its signed manifest)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.monitor.settings import MonitorSettings

COMPARED = ("roc_auc", "pr_auc", "f1", "balanced_accuracy", "accuracy")


def performance(
    window: pd.DataFrame,
    proba: Any,
    classes: list[Any],
    test_metrics: dict[str, Any],
    primary: str,
    settings: MonitorSettings,
    positive: Any = None,
) -> dict[str, Any]:
    """Metrics on labelled rows; ``verdict`` is ``ok``, ``degraded`` or ``not_enough_labels``.

    ``positive``: a binary target's positive class, the manifest's ``positive_class`` (the one
    its test figures are about); default the second class."""
    import numpy as np

    from edgeops.stages.evaluate import scores

    labelled = window["_feedback"].notna().to_numpy()
    by_str = {str(c): c for c in classes}
    y = np.asarray([by_str.get(str(v)) for v in window.loc[labelled, "_feedback"]], dtype=object)
    known = np.asarray([v is not None for v in y], dtype=bool)
    y, p = y[known], np.asarray(proba)[labelled][known]
    counts = {str(c): int(sum(1 for v in y if v == c)) for c in classes}
    out: dict[str, Any] = {
        "labelled_rows": int(len(y)),
        "unknown_labels": int((~known).sum()),
        "class_counts": counts,
        "primary_metric": primary,
        "test": {k: test_metrics.get(k) for k in COMPARED if k in test_metrics},
    }
    short = [c for c, n in counts.items() if n < settings.min_per_class]
    if len(y) < settings.min_labelled or short:
        need = f"{len(y)} labelled rows (need {settings.min_labelled})"
        if short:
            need += f"; classes {short} have fewer than {settings.min_per_class}"
        return {**out, "verdict": "not_enough_labels", "reason": f"not enough feedback: {need}"}
    y_typed = np.asarray(list(y))
    prod = scores(y_typed, p, list(classes), positive)
    out["production"] = {k: round(float(prod[k]), 6) for k in COMPARED if k in prod}
    out["drop"] = {
        k: round(float(test_metrics[k]) - out["production"][k], 6)
        for k in out["production"]
        if isinstance(test_metrics.get(k), int | float)
    }
    drop = out["drop"].get(primary)
    if drop is None:
        return {
            **out,
            "verdict": "not_enough_labels",
            "reason": f"{primary} cannot be computed on the labelled rows",
        }
    if drop >= settings.max_drop:
        reason = (
            f"{primary} {out['production'][primary]:.3f} on {len(y)} labelled rows, "
            f"{drop:.3f} below its test figure {test_metrics[primary]:.3f} "
            f"(max drop {settings.max_drop})"
        )
        return {**out, "verdict": "degraded", "reason": reason}
    return {
        **out,
        "verdict": "ok",
        "reason": f"{primary} {out['production'][primary]:.3f} vs test {test_metrics[primary]:.3f}",
    }
