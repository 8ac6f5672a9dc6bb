"""Stage ``train``: fit a scikit-learn Pipeline (preprocessing + model) on the training split.

The preprocessing is part of the model, so the ONNX export carries it to the device: median
imputation for numeric columns (plus scaling for the linear model only: a float scaler in front of
trees converts to ONNX wrongly), one-hot encoding for categoricals (unseen values are ignored).
Class imbalance is handled with balanced class weights. A training split above ``train.max_rows``
(10M) is fitted on a uniform sample of that many rows, and ``reports/train.json`` says so
(``sampled``, ``split_rows``): a tree ensemble on a few features learns no more from the rest
(see docs/benchmarks.md, "Scaling"), and it would not fit in memory at 100M rows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.errors import EdgeopsError
from edgeops.features import feature_frame, target_series
from edgeops.params import load_params, row_count, section
from edgeops.parquet_sample import rows_and_columns, sample_rows
from edgeops.schema import Schema, schema_from_params
from edgeops.stages import runner

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

MODELS = ("hist_gradient_boosting", "random_forest", "logistic_regression")


def build_pipeline(schema: Schema, cfg: dict[str, Any]) -> Pipeline:
    """The unfitted Pipeline for ``train.model`` with its hyper-parameters from ``cfg``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    model = cfg.get("model", "hist_gradient_boosting")
    if model not in MODELS:
        raise EdgeopsError(f"train.model {model!r} is not supported", fix=f"use one of {MODELS}")
    hyper = dict(cfg.get(model) or {})
    seed = int(cfg.get("seed", 42))
    class_weight = cfg.get("class_weight", "balanced")

    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if model == "logistic_regression":
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    names = schema.input_names  # the feature frame's columns (edgeops.features.feature_frame)
    if schema.numeric_features:
        numeric = [names[n] for n in schema.numeric_features]
        transformers.append(("num", Pipeline(numeric_steps), numeric))
    if schema.categorical_features:
        ohe = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype="float32")
        transformers.append(("cat", ohe, [names[n] for n in schema.categorical_features]))
    pre = ColumnTransformer(transformers, remainder="drop")

    try:
        if model == "hist_gradient_boosting":
            clf = HistGradientBoostingClassifier(
                random_state=seed, class_weight=class_weight, categorical_features=None, **hyper
            )
        elif model == "random_forest":
            clf = RandomForestClassifier(
                random_state=seed, class_weight=class_weight, n_jobs=-1, **hyper
            )
        else:
            clf = LogisticRegression(class_weight=class_weight, random_state=seed, **hyper)
    except TypeError as exc:
        raise EdgeopsError(
            f"train.{model} has a parameter the model does not take: {exc}",
            fix="check the names under train." + model,
        ) from exc
    return Pipeline([("pre", pre), ("clf", clf)])


def train(df: pd.DataFrame, schema: Schema, cfg: dict[str, Any]) -> Pipeline:
    """Fit the configured Pipeline on ``df`` (the training split)."""
    X, y = feature_frame(df, schema), target_series(df, schema)
    if y.nunique() < 2:
        raise EdgeopsError(
            f"the training data has a single class of {schema.target!r}", fix="check the data"
        )
    pipe = build_pipeline(schema, cfg)
    try:
        pipe.fit(X, y)
    except ValueError as exc:
        raise EdgeopsError(f"training failed: {exc}", fix="check train.* in params.yaml") from exc
    snap_to_float32(pipe)
    # a served model answers one row at a time: joblib's thread pool only adds latency there
    if "n_jobs" in pipe.named_steps["clf"].get_params():
        pipe.named_steps["clf"].set_params(n_jobs=1)
    return pipe


def walk_estimators(est: Any) -> list[Any]:
    """Every estimator inside a (fitted) Pipeline / ColumnTransformer, depth first."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        return [e for _, step in est.steps for e in walk_estimators(step)]
    if isinstance(est, ColumnTransformer):
        found = [est]
        for _, trans, _cols in getattr(est, "transformers_", est.transformers):
            if not isinstance(trans, str):
                found += walk_estimators(trans)
        return found
    return [est]


def snap_to_float32(pipe: Pipeline) -> None:
    """Make the fitted pipeline compute exactly what its float32 ONNX export computes.

    The device feeds float32 values and ONNX stores thresholds and fill values as float32. A
    HistGradientBoosting split threshold is a float64 midpoint between two float32 values, and
    rounding it to float32 can land on one of them: that row then takes the other branch on the
    device. For float32 inputs ``x <= t`` is the same test as ``x <= t32`` where ``t32`` is the
    largest float32 not above ``t``, so snapping thresholds down changes no scikit-learn prediction
    and makes the export exact. Imputation fill values are rounded to float32 likewise.
    """
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer

    for est in walk_estimators(pipe):
        if isinstance(est, SimpleImputer) and est.statistics_.dtype.kind == "f":
            est.statistics_ = est.statistics_.astype(np.float32).astype(np.float64)
    clf = pipe.steps[-1][1]
    if isinstance(clf, HistGradientBoostingClassifier):
        for predictors in clf._predictors:
            for predictor in predictors:
                t = predictor.nodes["num_threshold"]
                t32 = t.astype(np.float32)
                above = t32.astype(np.float64) > t
                t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
                predictor.nodes["num_threshold"] = t32.astype(np.float64)


def training_rows(
    path: str, cfg: dict[str, Any], target: str | None = None
) -> tuple[pd.DataFrame, int]:
    """The rows to fit on, and the rows of the training split: all of them, or above
    ``train.max_rows`` a uniform sample of that many (seeded by ``train.seed``), read a row group
    at a time (:func:`edgeops.parquet_sample.sample_rows`) so the split is never held whole. A
    sample that lacks a class of ``target`` the split has is an error (raise ``max_rows``)."""
    import pandas as pd
    import pyarrow.parquet as pq

    limit = row_count(cfg, "train", "max_rows")
    available = rows_and_columns(path)[0]
    if not limit or available <= limit:
        return pd.read_parquet(path), available
    rows = sample_rows(path, limit, seed=int(cfg.get("seed", 42))).reset_index(drop=True)
    if target is not None:
        every = set(
            pq.read_table(path, columns=[target]).column(0).drop_null().unique().to_pylist()
        )
        lacking = sorted(every - set(rows[target].dropna().unique().tolist()), key=str)
        if lacking:
            raise EdgeopsError(
                f"the {limit:,}-row sample of the {available:,}-row training split has no row of "
                f"class(es) {lacking} of {target!r}: the model would not know them",
                fix="raise train.max_rows (or set it to 0 to fit every row)",
            )
    return rows, available


def main() -> None:
    p = runner.parser("train", __doc__)
    p.add_argument("--data", default="data/prepared/train.parquet")
    p.add_argument("--model", default="models/model.joblib")
    p.add_argument("--report", default="reports/train.json")
    args = p.parse_args()

    def body() -> None:
        import joblib

        params = load_params(args.params)
        cfg = section(params, "train")
        schema = schema_from_params(params)
        df, available = training_rows(args.data, cfg, schema.target)
        sampled = (
            f" (a uniform sample of the {available:,}: train.max_rows)"
            if len(df) < available
            else ""
        )
        runner.log("train", f"fitting {cfg.get('model')} on {len(df):,} rows{sampled}")
        start = time.perf_counter()
        pipe = train(df, schema, cfg)
        seconds = time.perf_counter() - start
        with atomic.atomic_path(args.model) as tmp:
            joblib.dump(pipe, tmp)
        atomic.write_json(
            args.report,
            {
                "model": cfg.get("model"),
                "rows": len(df),
                "split_rows": available,
                "sampled": len(df) < available,
                "features": [c.name for c in schema.features],
                "classes": [str(c) for c in pipe.classes_],
            },
        )
        runner.log("train", f"fitted in {seconds:.1f} s -> {args.model}")

    runner.run("train", body, args.params)


if __name__ == "__main__":
    main()
