"""Stage ``export``: the fitted pipeline (imputation, encoding, model) as one ONNX graph, gated on
parity with scikit-learn.

One ONNX input per raw feature column (``float32`` numeric, ``string`` categorical, shape
``[None, 1]``), probabilities as a plain tensor. Pipelines that skl2onnx converts silently wrong
are refused before conversion; after it, scikit-learn and onnxruntime score the test split (streamed
from parquet in chunks of ``CHUNK_ROWS`` rows) plus an edge-case batch (missing values where
allowed, the schema's range limits, unseen categories) and the stage fails unless max |Δp| and
label agreement meet ``export`` params. ``reports/export.json`` records parity, model size and ORT
vs scikit-learn latency on this machine; ``reports/parity.json`` (the DVC metrics) holds parity and
size only: latency is noise between runs, and every ``dvc metrics diff`` and ``dvc exp show``
would show it as a change.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic, resources
from edgeops.edge.inference import FLOAT, STRING, InputSpec, OnnxModel
from edgeops.errors import EdgeopsError
from edgeops.features import feature_frame
from edgeops.params import load_params, section
from edgeops.schema import MISSING_CATEGORY, Schema, schema_from_params
from edgeops.stages import runner
from edgeops.stages.train import walk_estimators

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

UNSEEN_CATEGORY = "__edgeops_unseen__"
#: rows of the test split scored at once by :func:`export_parquet` (memory: one chunk's frames,
#: encodings and probabilities)
CHUNK_ROWS = 250_000
#: rows of the test split sampled for the edge cases' typical values (median, mode)
EDGE_SAMPLE_ROWS = 100_000


def input_specs(schema: Schema) -> list[InputSpec]:
    """The ONNX inputs the schema's feature columns become."""
    specs = []
    names = schema.input_names
    for col in schema.features:
        nullable, onnx_name = col.max_null_share > 0, names[col.name]
        if col.name in schema.numeric_features:
            specs.append(InputSpec(col.name, FLOAT, nullable, col.min, col.max, input=onnx_name))
        else:
            cats = tuple(str(c) for c in col.categories or ())
            specs.append(InputSpec(col.name, STRING, nullable, categories=cats, input=onnx_name))
    return specs


def check_convertible(pipe: Pipeline) -> None:
    """Refuse pipelines that skl2onnx converts into a model that gives wrong answers."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    clf = pipe.steps[-1][1]
    if isinstance(clf, HistGradientBoostingClassifier):
        native = getattr(clf, "is_categorical_", None)
        if native is not None and bool(native.any()):
            raise EdgeopsError(
                "export refused: HistGradientBoostingClassifier uses native categorical splits, "
                "which skl2onnx converts silently wrong (probabilities off by up to 0.7)",
                fix="set categorical_features=None and one-hot encode the categorical columns "
                "(edgeops' train stage does this by default)",
            )
    trees = (
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        DecisionTreeClassifier,
    )
    scalers = (StandardScaler, MinMaxScaler, RobustScaler, MaxAbsScaler)
    if isinstance(clf, trees):
        for est in walk_estimators(pipe)[:-1]:
            if isinstance(est, scalers):
                raise EdgeopsError(
                    f"export refused: a {type(est).__name__} feeds the tree model "
                    f"{type(clf).__name__}; ONNX computes the scaler in float32, so values near a "
                    "split threshold land on the other side (wrong predictions)",
                    fix="remove the scaler: tree models do not need scaled features "
                    "(edgeops' train stage scales for logistic_regression only)",
                )


def convert(pipe: Pipeline, schema: Schema, opset: int = 17, ml_opset: int = 3) -> bytes:
    """Convert the fitted pipeline to ONNX bytes (one input per feature, no ZipMap)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    check_convertible(pipe)
    initial = [
        (s.input, FloatTensorType([None, 1]) if s.dtype == FLOAT else StringTensorType([None, 1]))
        for s in input_specs(schema)
    ]
    clf = pipe.steps[-1][1]
    try:
        onx = convert_sklearn(
            pipe,
            initial_types=initial,
            options={id(clf): {"zipmap": False}},
            target_opset={"": opset, "ai.onnx.ml": ml_opset},
        )
    except Exception as exc:  # skl2onnx raises RuntimeError/NotImplementedError/TypeError...
        raise EdgeopsError(
            f"skl2onnx cannot convert this pipeline: {type(exc).__name__}: {exc}",
            fix="use one of the models train.model lists (hist_gradient_boosting, random_forest, "
            "logistic_regression), or a transformer skl2onnx supports",
        ) from exc
    return onx.SerializeToString()


def edge_cases(schema: Schema, like: pd.DataFrame) -> pd.DataFrame:
    """A batch that probes the edges: each feature at its range limits, missing where allowed,
    every category, an unseen category; the other features at typical values. A feature frame
    (columns named by input name, as :func:`edgeops.features.feature_frame`)."""
    import numpy as np
    import pandas as pd

    X = feature_frame(like, schema)
    names = schema.input_names
    numeric = [names[n] for n in schema.numeric_features]
    categorical = [names[n] for n in schema.categorical_features]
    base = {}
    for name in numeric:
        med = X[name].median()
        base[name] = np.float32(0.0 if np.isnan(med) else med)
    for name in categorical:
        known = X[name][X[name] != MISSING_CATEGORY]
        base[name] = known.mode().iloc[0] if not known.empty else MISSING_CATEGORY
    rows = [dict(base)]
    for col in schema.features:
        probes: list[Any]
        if col.name in schema.numeric_features:
            probes = [v for v in (col.min, col.max) if v is not None]
            if col.max_null_share > 0:
                probes.append(np.nan)
        else:
            probes = [str(c) for c in col.categories or ()] + [UNSEEN_CATEGORY]
            if col.max_null_share > 0:
                probes.append(MISSING_CATEGORY)
        rows += [{**base, names[col.name]: p} for p in probes]
    out = pd.DataFrame(rows, columns=[names[c.name] for c in schema.features])
    for name in numeric:
        out[name] = out[name].astype(np.float32)
    for name in categorical:
        out[name] = out[name].astype(object)
    return out


def _feeds(X: pd.DataFrame, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    import numpy as np

    return {
        s.input: (
            X[s.input].to_numpy(np.float32) if s.dtype == FLOAT else X[s.input].to_numpy(object)
        ).reshape(-1, 1)
        for s in specs
    }


@dataclass
class ParityTally:
    """Parity figures accumulated over chunks of rows; :meth:`report` gives what :func:`parity`
    gives on all the rows at once (the mean up to the order of float summation)."""

    rows: int = 0
    cells: int = 0  # rows x classes: the number of |Δp| values
    max_abs_diff: float = 0.0
    sum_abs_diff: float = 0.0
    label_mismatches: int = 0

    def add(self, pipe: Pipeline, model: OnnxModel, X: pd.DataFrame) -> ParityTally:
        """Score one chunk (a feature frame) with scikit-learn and onnxruntime."""
        import numpy as np

        sk_proba = pipe.predict_proba(X)
        # = pipe.predict(X) for every model train offers (argmax of the probabilities), at half the cost
        sk_label = pipe.classes_[sk_proba.argmax(axis=1)]
        ort_label, ort_proba = model.predict_feeds(_feeds(X, model.inputs))
        diff = np.abs(sk_proba - ort_proba)
        agree = np.asarray([str(a) == str(b) for a, b in zip(sk_label, ort_label, strict=True)])
        self.rows += len(X)
        self.cells += diff.size
        if diff.size:
            self.max_abs_diff = max(self.max_abs_diff, float(diff.max()))
            self.sum_abs_diff += float(diff.sum())
        self.label_mismatches += int((~agree).sum())
        return self

    def report(self) -> dict[str, Any]:
        """rows, max/mean |Δp| and label agreement (the keys of ``reports/export.json``)."""
        agreeing = self.rows - self.label_mismatches
        return {
            "rows": self.rows,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.sum_abs_diff / self.cells if self.cells else 0.0,
            "label_agreement": agreeing / self.rows if self.rows else 1.0,
            "label_mismatches": self.label_mismatches,
        }


def parity(pipe: Pipeline, model: OnnxModel, X: pd.DataFrame) -> dict[str, Any]:
    """Compare scikit-learn and onnxruntime on the same rows (a feature frame)."""
    return ParityTally().add(pipe, model, X).report()


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def latency_rows(X: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows :func:`latency` times: the first row, and 1,000 rows sampled with seed 0."""
    one = X.iloc[:1].copy()
    batch = X.sample(n=1000, replace=len(X) < 1000, random_state=0)
    return one, batch


def latency(
    pipe: Pipeline, model: OnnxModel, X: pd.DataFrame, repeats: int = 50
) -> dict[str, float]:
    """Median latency (ms) of scikit-learn vs onnxruntime for 1 row and for 1,000 rows."""
    return _latency(pipe, model, *latency_rows(X), repeats)


def _latency(
    pipe: Pipeline, model: OnnxModel, one: pd.DataFrame, batch: pd.DataFrame, repeats: int
) -> dict[str, float]:
    one_feeds, batch_feeds = _feeds(one, model.inputs), _feeds(batch, model.inputs)
    out = {
        "sklearn_1_row_ms": _median_ms(lambda: pipe.predict_proba(one), repeats),
        "onnx_1_row_ms": _median_ms(lambda: model.predict_feeds(one_feeds), repeats),
        "sklearn_1000_rows_ms": _median_ms(lambda: pipe.predict_proba(batch), max(5, repeats // 5)),
        "onnx_1000_rows_ms": _median_ms(
            lambda: model.predict_feeds(batch_feeds), max(5, repeats // 5)
        ),
    }
    out["speedup_1_row"] = out["sklearn_1_row_ms"] / out["onnx_1_row_ms"]
    out["speedup_1000_rows"] = out["sklearn_1000_rows_ms"] / out["onnx_1000_rows_ms"]
    return {k: round(v, 4) for k, v in out.items()}


def feature_columns(path: str | Path, schema: Schema) -> list[str]:
    """The schema's feature columns that the parquet file has (a missing one is left out, so
    :func:`edgeops.features.feature_frame` reports it)."""
    from edgeops.parquet_sample import rows_and_columns

    names = set(rows_and_columns(path)[1])
    return [c.name for c in schema.features if c.name in names]


def feature_chunks(path: str | Path, schema: Schema) -> Iterator[pd.DataFrame]:
    """The feature frames of a parquet file, at most :data:`CHUNK_ROWS` rows at a time."""
    import pyarrow.parquet as pq

    columns = feature_columns(path, schema)
    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            if batch.num_rows:
                yield feature_frame(batch.to_pandas(), schema)


def edge_cases_parquet(schema: Schema, path: str | Path) -> pd.DataFrame:
    """:func:`edge_cases` with the typical values (median, most frequent category) taken from a
    uniform sample of :data:`EDGE_SAMPLE_ROWS` rows of the file (all rows when it has fewer)."""
    from edgeops.parquet_sample import sample_rows

    return edge_cases(schema, sample_rows(path, EDGE_SAMPLE_ROWS, 0, feature_columns(path, schema)))


def export(
    pipe: Pipeline, schema: Schema, test: pd.DataFrame, cfg: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """Convert, then check parity on the test split and the edge cases; raise if it fails.

    Returns the ONNX bytes and the report (parity, size, latency).
    """
    return _export(pipe, schema, cfg, [feature_frame(test, schema)], edge_cases(schema, test))


def export_parquet(
    pipe: Pipeline, schema: Schema, path: str | Path, cfg: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """:func:`export` with the test split streamed from a parquet file, :data:`CHUNK_ROWS` rows
    at a time: the same parity figures, in the memory of one chunk.

    The edge cases' typical values come from :func:`edge_cases_parquet`; the latency rows from
    the first chunk (the same rows as :func:`export` when the split fits in one chunk).
    """
    return _export(
        pipe, schema, cfg, feature_chunks(path, schema), edge_cases_parquet(schema, path)
    )


def _export(
    pipe: Pipeline,
    schema: Schema,
    cfg: dict[str, Any],
    chunks: Iterable[pd.DataFrame],
    X_edge: pd.DataFrame,
) -> tuple[bytes, dict[str, Any]]:
    onnx_bytes = convert(pipe, schema, int(cfg.get("opset", 17)), int(cfg.get("ml_opset", 3)))
    model = OnnxModel(
        onnx_bytes,
        input_specs(schema),
        list(pipe.classes_),
        threads=resources.current_threads(),
        spin=False,
    )
    resources.note_session(model.session)
    repeats = int(cfg.get("latency_repeats", 50))
    tally, timed = ParityTally(), None
    for X in chunks:
        if timed is None and repeats > 0:
            timed = latency_rows(X)
        tally.add(pipe, model, X)
    if not tally.rows:
        raise EdgeopsError("the test split has no rows: no parity to check", fix="re-run split")
    report: dict[str, Any] = {
        "parity_test": tally.report(),
        "parity_edge_cases": parity(pipe, model, X_edge),
        "model_bytes": len(onnx_bytes),
        "opset": {"": int(cfg.get("opset", 17)), "ai.onnx.ml": int(cfg.get("ml_opset", 3))},
    }
    max_diff = float(cfg.get("max_abs_diff", 1e-4))
    min_agree = float(cfg.get("min_label_agreement", 1.0))
    problems = [
        f"{name}: max |Δp| {p['max_abs_diff']:.2e} > {max_diff:.0e}"
        if p["max_abs_diff"] > max_diff
        else f"{name}: label agreement {p['label_agreement']:.4%} < {min_agree:.2%} ({p['label_mismatches']} rows)"
        for name, p in (
            ("test split", report["parity_test"]),
            ("edge cases", report["parity_edge_cases"]),
        )
        if p["max_abs_diff"] > max_diff or p["label_agreement"] < min_agree
    ]
    report["parity_ok"] = not problems
    if problems:
        raise EdgeopsError(
            "the ONNX model disagrees with scikit-learn: " + "; ".join(problems),
            fix="switch train.model, or remove the transformer skl2onnx converts wrongly; "
            "export.max_abs_diff is the tolerance",
        )
    if timed is not None:
        report["latency"] = _latency(pipe, model, *timed, repeats)
    return onnx_bytes, report


def main() -> None:
    p = runner.parser("export", __doc__)
    p.add_argument("--model", default="models/model.joblib")
    p.add_argument("--data", default="data/prepared/test.parquet")
    p.add_argument("--onnx", default="models/model.onnx")
    p.add_argument("--report", default="reports/export.json")
    p.add_argument(
        "--metrics",
        default="reports/parity.json",
        help="parity and model size without the latency figures (the DVC metrics of the stage)",
    )
    args = p.parse_args()

    def body() -> None:
        import joblib

        params = load_params(args.params)
        cfg = section(params, "export")
        schema = schema_from_params(params)
        pipe = joblib.load(args.model)
        runner.log("export", f"converting {type(pipe.steps[-1][1]).__name__} to ONNX")
        onnx_bytes, report = export_parquet(pipe, schema, args.data, cfg)
        atomic.write_bytes(args.onnx, onnx_bytes)
        atomic.write_json(args.report, report)
        atomic.write_json(args.metrics, {k: v for k, v in report.items() if k != "latency"})
        pt, pe = report["parity_test"], report["parity_edge_cases"]
        lat = report.get("latency", {})
        runner.log(
            "export",
            f"parity: max |Δp| {pt['max_abs_diff']:.1e} on {pt['rows']:,} test rows, "
            f"{pe['max_abs_diff']:.1e} on {pe['rows']} edge cases; labels agree "
            f"{pt['label_agreement']:.2%}; {len(onnx_bytes) / 1e6:.2f} MB; "
            f"ORT {lat.get('speedup_1_row', float('nan')):.0f}x faster for 1 row -> {args.onnx}",
        )

    runner.run("export", body, args.params)


if __name__ == "__main__":
    main()
