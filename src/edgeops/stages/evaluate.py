"""Stage ``evaluate``: score the trained model on the test split.

Writes DVC metrics to ``reports/metrics.json`` (ROC AUC, PR AUC, F1, balanced accuracy, accuracy,
per-class precision/recall) and DVC plots to ``reports/plots/`` (confusion matrix, ROC and
precision-recall curves). For a binary target, F1, PR AUC, ROC AUC and the curves are about the
positive class: ``validate.schema.positive_class``, else the second label in sorted order (``1``
for 0/1 labels); ``metrics.json`` states it as ``positive_class``. The gate and monitoring score
with the same :func:`scores`, the positive class taken from the bundle's manifest. For more
classes, scores are macro averages and the curves are micro-averaged one-vs-rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.features import feature_frame, target_series
from edgeops.params import load_params, section
from edgeops.parquet_sample import rows_and_columns
from edgeops.schema import Schema, schema_from_params
from edgeops.stages import runner

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CURVE_POINTS = 200


def positive_index(classes: list[Any], positive: Any = None) -> int:
    """The column of the positive class among two ``classes``: ``positive``'s, else 1 (the second
    class, as scikit-learn orders them). Labels compare as text when their types differ, so a
    manifest's ``"ja"`` or ``1`` (JSON) matches the model's ``"ja"`` or ``np.int64(1)``.

        >>> positive_index(["ja", "nein"], "ja")
        0
    """
    if positive is None:
        return 1
    for i, c in enumerate(classes):
        if c == positive:
            return i
    for i, c in enumerate(classes):
        if str(c) == str(positive):
            return i
    raise EdgeopsError(
        f"the positive class {positive!r} is not one of the model's classes {list(classes)}",
        fix="set validate.schema.positive_class to one of the target's classes and retrain",
    )


def scores(
    y_true: Any, proba: np.ndarray, classes: list[Any], positive: Any = None
) -> dict[str, Any]:
    """Classification metrics from true labels and class probabilities (columns = ``classes``).

    ``positive``: a binary target's positive class (F1, ROC AUC, PR AUC are about it); default
    the second of ``classes``. Ignored for more than two classes (macro averages)."""
    import numpy as np
    from sklearn import metrics as skm
    from sklearn.preprocessing import label_binarize

    y_true = np.asarray(y_true)
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    binary = len(classes) == 2
    out: dict[str, Any] = {
        "n_test": int(len(y_true)),
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
    }
    present = np.unique(y_true)
    if binary:
        i = positive_index(classes, positive)
        pos = classes[i]
        out["positive_class"] = pos.item() if isinstance(pos, np.generic) else pos
        out["f1"] = skm.f1_score(y_true, y_pred, pos_label=pos, zero_division=0)
        if len(present) == 2:
            out["roc_auc"] = skm.roc_auc_score(y_true == pos, proba[:, i])
            out["pr_auc"] = skm.average_precision_score(y_true == pos, proba[:, i])
    else:
        out["f1"] = skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
        onehot = label_binarize(y_true, classes=classes)
        if len(present) == len(classes):
            out["roc_auc"] = skm.roc_auc_score(onehot, proba, average="macro", multi_class="ovr")
            out["pr_auc"] = skm.average_precision_score(onehot, proba, average="macro")
    p, r, _, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    out["per_class"] = {
        str(c): {"precision": float(p[i]), "recall": float(r[i]), "support": int(support[i])}
        for i, c in enumerate(classes)
    }
    return {
        k: (round(float(v), 6) if isinstance(v, float | np.floating) else v) for k, v in out.items()
    }


def curves(
    y_true: Any, proba: np.ndarray, classes: list[Any], positive: Any = None
) -> dict[str, Any]:
    """ROC and precision-recall curves (thinned) plus the confusion counts, for DVC plots.

    Binary: the curves of ``positive`` (as in :func:`scores`); else micro-averaged one-vs-rest."""
    import numpy as np
    from sklearn import metrics as skm
    from sklearn.preprocessing import label_binarize

    y_true = np.asarray(y_true)
    if len(classes) == 2:
        i = positive_index(classes, positive)
        truth, score = (y_true == classes[i]).astype(int), proba[:, i]
    else:  # micro-average: every (row, class) pair is one binary decision
        truth, score = label_binarize(y_true, classes=classes).ravel(), proba.ravel()
    fpr, tpr, _ = skm.roc_curve(truth, score)
    prec, rec, _ = skm.precision_recall_curve(truth, score)

    def thin(*cols: np.ndarray) -> list[np.ndarray]:
        idx = np.unique(
            np.linspace(0, len(cols[0]) - 1, min(CURVE_POINTS, len(cols[0]))).astype(int)
        )
        return [c[idx] for c in cols]

    fpr, tpr = thin(fpr, tpr)
    rec, prec = thin(rec[::-1], prec[::-1])
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    return {
        "roc": [
            {"fpr": round(float(a), 5), "tpr": round(float(b), 5)}
            for a, b in zip(fpr, tpr, strict=True)
        ],
        "pr": [
            {"recall": round(float(a), 5), "precision": round(float(b), 5)}
            for a, b in zip(rec, prec, strict=True)
        ],
        "confusion": confusion_counts(y_true, y_pred, classes),
    }


def confusion_counts(y_true: Any, y_pred: Any, classes: list[Any]) -> list[dict[str, Any]]:
    """The confusion matrix as rows ``{actual, predicted, count}``, one per pair of labels (zeros
    included): the model's classes, then any other label the test rows hold. A row per test row
    would be 20M rows at 100M; the template ``.dvc/plots/confusion_counts.json`` is DVC's
    ``confusion`` summing ``count`` instead of counting rows."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    truth, predicted = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    labels = [str(c) for c in classes]
    labels += sorted(set(np.unique(truth).tolist()) - set(labels))
    matrix = confusion_matrix(truth, predicted, labels=labels)
    return [
        {"actual": a, "predicted": p, "count": int(matrix[i, j])}
        for i, a in enumerate(labels)
        for j, p in enumerate(labels)
    ]


def evaluate(model: Any, df: pd.DataFrame, schema: Schema) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score a fitted Pipeline on ``df``; return ``(metrics, plots)``. A binary target's positive
    class is the schema's (:attr:`Schema.positive`)."""
    X, y = feature_frame(df, schema), target_series(df, schema)
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    positive = schema.positive
    return scores(y, proba, classes, positive), curves(y, proba, classes, positive)


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """A CSV for DVC plots, written atomically."""
    import pandas as pd

    atomic.write_text(path, pd.DataFrame(rows).to_csv(index=False, lineterminator="\n"))


def main() -> None:
    p = runner.parser("evaluate", __doc__)
    p.add_argument("--model", default="models/model.joblib")
    p.add_argument("--data", default="data/prepared/test.parquet")
    p.add_argument("--metrics", default="reports/metrics.json")
    p.add_argument("--plots-dir", default="reports/plots")
    args = p.parse_args()

    def body() -> None:
        import joblib
        import pandas as pd

        params = load_params(args.params)
        schema = schema_from_params(params)
        model = joblib.load(args.model)
        # what scoring reads: a column that is neither feature nor target is never loaded
        wanted = {c.name for c in schema.features} | {schema.target}
        columns = [c for c in rows_and_columns(args.data)[1] if c in wanted]
        df = pd.read_parquet(args.data, columns=columns)
        metrics, plots = evaluate(model, df, schema)
        metrics["model"] = section(params, "train").get("model")
        atomic.write_json(args.metrics, metrics)
        for name, rows in plots.items():
            write_csv(Path(args.plots_dir) / f"{name}.csv", rows)
        shown = ", ".join(
            f"{k} {metrics[k]:.4f}" for k in ("roc_auc", "pr_auc", "f1") if k in metrics
        )
        if "positive_class" in metrics:
            shown += f" (positive class {metrics['positive_class']!r})"
        runner.log("evaluate", f"{shown} on {len(df):,} test rows -> {args.metrics}")

    runner.run("evaluate", body, args.params)


if __name__ == "__main__":
    main()
