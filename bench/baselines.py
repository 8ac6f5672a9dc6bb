"""Each pipeline stage's library alone: what a bare script would do on the same inputs.

    .venv/bin/python bench/baselines.py STAGE --workspace DIR --scratch DIR

Run by bench/stages.py in a fresh process per call (interpreter start and imports count, as they
do for the stage). Inputs are the workspace's (after `dvc repro`), outputs go under --scratch.
The schema, the estimator and the GX suite are built with edgeops' own constructors (the same
objects, nothing timed of ours beyond building them); the work is the libraries':

  ingest    the simulator's frame -> pandas/pyarrow Parquet (zstd)
  validate  pandas reads the Parquet; Great Expectations (ephemeral context) runs the same suite
  split     pandas reads; scikit-learn train_test_split (stratified); two Parquet files
  train     pandas reads; float32/str columns; scikit-learn fits the same Pipeline; joblib dump
  evaluate  joblib load; predict_proba on the test split; ROC/PR AUC, F1, the two curves
  export    skl2onnx converts; onnxruntime scores the test split beside scikit-learn (parity)
  bundle    onnxruntime scores 12 test rows; md5 of the training split; ed25519 signs a manifest
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _params(ws: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((ws / "params.yaml").read_text())


def _schema(ws: Path) -> Any:
    from edgeops.schema import schema_from_params

    return schema_from_params(_params(ws))


def _features(df: Any, schema: Any) -> Any:
    import numpy as np

    names = schema.input_names
    num = set(schema.numeric_features)
    return (
        df[[c.name for c in schema.features]]
        .rename(columns=names)
        .astype({names[c.name]: (np.float32 if c.name in num else str) for c in schema.features})
    )


def ingest(ws: Path, out: Path) -> None:
    from edgeops.sources.simulator import simulate

    sim = _params(ws)["ingest"]["simulator"]
    df = simulate(rows=int(sim["rows"]), seed=int(sim["seed"]), scenario=sim["scenario"])
    df.to_parquet(out / "dataset.parquet", index=False, engine="pyarrow", compression="zstd")


def validate(ws: Path, out: Path) -> None:
    import great_expectations as gx
    import pandas as pd

    from edgeops.stages.validate import build_expectations

    df = pd.read_parquet(ws / "data/raw/dataset.parquet")
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas(name="p")
        .add_dataframe_asset(name="raw")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="s"))
    for exp in build_expectations(_schema(ws)):
        suite.add_expectation(exp)
    vd = context.validation_definitions.add(
        gx.ValidationDefinition(name="v", data=batch, suite=suite)
    )
    result = vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    (out / "summary.json").write_text(json.dumps({"success": bool(result.success)}))


def split(ws: Path, out: Path) -> None:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    p = _params(ws)["split"]
    df = pd.read_parquet(ws / "data/raw/dataset.parquet")
    target = _schema(ws).target
    train, test = train_test_split(
        df, test_size=p["test_size"], random_state=p["seed"], stratify=df[target]
    )
    train.to_parquet(out / "train.parquet", index=False, compression="zstd")
    test.to_parquet(out / "test.parquet", index=False, compression="zstd")


def train(ws: Path, out: Path) -> None:
    import joblib
    import pandas as pd

    from edgeops.stages.train import build_pipeline

    schema = _schema(ws)
    df = pd.read_parquet(ws / "data/prepared/train.parquet")
    pipe = build_pipeline(schema, _params(ws)["train"])
    pipe.fit(_features(df, schema), df[schema.target])
    joblib.dump(pipe, out / "model.joblib")


def evaluate(ws: Path, out: Path) -> None:
    import joblib
    import pandas as pd
    import sklearn.metrics as skm

    schema = _schema(ws)
    model = joblib.load(ws / "models/model.joblib")
    df = pd.read_parquet(ws / "data/prepared/test.parquet")
    proba = model.predict_proba(_features(df, schema))
    y = (df[schema.target].astype(str) == str(model.classes_[1])).to_numpy()
    label = proba.argmax(axis=1) == 1
    metrics = {
        "roc_auc": skm.roc_auc_score(y, proba[:, 1]),
        "f1": skm.f1_score(y, label),
        "pr_auc": skm.average_precision_score(y, proba[:, 1]),
    }
    fpr, tpr, _ = skm.roc_curve(y, proba[:, 1])
    prec, rec, _ = skm.precision_recall_curve(y, proba[:, 1])
    pd.DataFrame({"fpr": fpr, "tpr": tpr}).to_csv(out / "roc.csv", index=False)
    pd.DataFrame({"precision": prec, "recall": rec}).to_csv(out / "pr.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics))


def export(ws: Path, out: Path) -> None:
    import joblib
    import numpy as np
    import onnxruntime as ort
    import pandas as pd
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    schema = _schema(ws)
    pipe = joblib.load(ws / "models/model.joblib")
    X = _features(pd.read_parquet(ws / "data/prepared/test.parquet"), schema)
    num = {schema.input_names[n] for n in schema.numeric_features}
    initial = [
        (c, FloatTensorType([None, 1]) if c in num else StringTensorType([None, 1]))
        for c in X.columns
    ]
    onx = convert_sklearn(
        pipe,
        initial_types=initial,
        options={id(pipe.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    ).SerializeToString()
    (out / "model.onnx").write_bytes(onx)
    sess = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
    feeds = {c: X[c].to_numpy(np.float32 if c in num else object).reshape(-1, 1) for c in X.columns}
    diff = np.abs(pipe.predict_proba(X) - sess.run(None, feeds)[1]).max()
    (out / "parity.json").write_text(json.dumps({"max_abs_diff": float(diff)}))


def bundle(ws: Path, out: Path) -> None:
    import base64

    import numpy as np
    import onnxruntime as ort
    import pandas as pd
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    schema = _schema(ws)
    onx = (ws / "models/model.onnx").read_bytes()
    X = _features(pd.read_parquet(ws / "data/prepared/test.parquet"), schema).head(12)
    num = {schema.input_names[n] for n in schema.numeric_features}
    sess = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
    feeds = {c: X[c].to_numpy(np.float32 if c in num else object).reshape(-1, 1) for c in X.columns}
    golden = sess.run(None, feeds)[1].tolist()
    md5 = hashlib.md5((ws / "data/prepared/train.parquet").read_bytes()).hexdigest()
    manifest = json.dumps(
        {"sha256": hashlib.sha256(onx).hexdigest(), "golden": golden, "train_md5": md5}
    ).encode()
    (out / "model.onnx").write_bytes(onx)
    (out / "manifest.json").write_bytes(manifest)
    sig = Ed25519PrivateKey.generate().sign(manifest)
    (out / "manifest.sig").write_bytes(base64.b64encode(sig))


BASELINES = {f.__name__: f for f in (ingest, validate, split, train, evaluate, export, bundle)}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("stage", choices=list(BASELINES))
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--scratch", required=True, type=Path)
    args = ap.parse_args()
    out = args.scratch / f"baseline-{args.stage}"
    out.mkdir(parents=True, exist_ok=True)
    BASELINES[args.stage](args.workspace, out)


if __name__ == "__main__":
    main()
