"""Stage ``bundle``: ``models/bundle/`` = ``model.onnx`` + ``manifest.json`` + ``manifest.sig``.

The manifest says everything a device needs to trust and run the model: format and model version,
creation time, git commit, training-data hash, the input schema (names, dtypes, ranges,
categories, which may be missing), outputs, class labels, metrics, parity figures, the minimum
onnxruntime version, the sha256 of every file, and golden examples the device re-checks before it
switches. The manifest is signed with ed25519 (``edgeops keys init``); the private key lives
outside the repository.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeops import atomic, resources
from edgeops.edge.bundle import FORMAT_VERSION, MANIFEST, MODEL, SIGNATURE, key_id, sha256_file
from edgeops.edge.inference import OnnxModel
from edgeops.errors import EdgeopsError
from edgeops.params import load_params, section
from edgeops.parquet_sample import rows_and_columns
from edgeops.schema import Schema, schema_from_params
from edgeops.stages import runner
from edgeops.stages.export import edge_cases, input_specs

#: the onnxruntime release that introduced each default-domain opset
ORT_FOR_OPSET = {
    13: "1.7.0",
    14: "1.10.0",
    15: "1.10.0",
    16: "1.11.0",
    17: "1.13.0",
    18: "1.14.0",
    19: "1.16.0",
    20: "1.17.0",
    21: "1.18.0",
    22: "1.20.0",
}


def git_commit(cwd: str | Path = ".") -> str:
    """HEAD's commit, with ``-dirty`` when the work tree has changes; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def golden_examples(
    model: OnnxModel, schema: Schema, test: Any, n: int = 12, seed: int = 0
) -> list[dict[str, Any]]:
    """Rows the device must reproduce: test rows of every class plus the edge-case probes."""
    from edgeops.features import feature_frame

    picks = pick_rows(test[schema.target], schema.classes, n, seed)
    return _golden(model, feature_frame(test.iloc[picks], schema), edge_cases(schema, test), n)


def golden_examples_parquet(
    model: OnnxModel, schema: Schema, path: str | Path, n: int = 12, seed: int = 0
) -> list[dict[str, Any]]:
    """:func:`golden_examples` of a test split in a parquet file, the same rows without reading
    the file whole: the target column, then the picked rows, then a sample for the edge cases
    (:func:`edgeops.stages.export.edge_cases_parquet`)."""
    import pyarrow.parquet as pq

    from edgeops.features import feature_frame
    from edgeops.parquet_sample import take_rows
    from edgeops.stages.export import edge_cases_parquet, feature_columns

    with pq.ParquetFile(path) as pf:
        if schema.target not in pf.schema_arrow.names:
            raise EdgeopsError(f"{path} lacks the target column {schema.target!r}")
        target = pf.read(columns=[schema.target]).to_pandas()[schema.target]
    picks = pick_rows(target, schema.classes, n, seed)
    del target
    rows = take_rows(path, picks, feature_columns(path, schema))
    return _golden(model, feature_frame(rows, schema), edge_cases_parquet(schema, path), n)


def pick_rows(target: Any, classes: list[Any], n: int, seed: int) -> list[int]:
    """Positions of the golden rows: ``n // (2 * classes)`` (at least 1) rows of every class, each
    class's drawn with ``pandas.Series.sample(random_state=seed)`` from its rows' positions."""
    import numpy as np
    import pandas as pd

    per_class = max(1, n // (2 * max(1, len(classes))))
    # target.astype(str) == str(cls), computed once per distinct label instead of once per row
    codes, uniques = pd.factorize(target)
    labels = pd.Series(uniques).astype(str).to_numpy()
    picks: list[int] = []
    for cls in classes:
        rows = np.flatnonzero(np.isin(codes, np.flatnonzero(labels == str(cls))))
        if len(rows):
            drawn = pd.Series(rows).sample(n=min(per_class, len(rows)), random_state=seed)
            picks += [int(i) for i in drawn]
    return picks


def _golden(model: OnnxModel, X_rows: Any, X_edge: Any, n: int) -> list[dict[str, Any]]:
    """The examples: the picked rows' feature frame, then edge cases up to ``n`` rows in all."""
    import pandas as pd

    rest = max(0, n - len(X_rows))
    edge = X_edge.iloc[:: max(1, len(X_edge) // max(1, rest))].head(rest)
    return _examples(model, pd.concat([X_rows, edge], ignore_index=True))


def _examples(model: OnnxModel, X: Any) -> list[dict[str, Any]]:
    """The rows of a feature frame as golden examples: inputs by column name, label, probabilities."""
    import numpy as np

    from edgeops.stages.export import _feeds

    labels, proba = model.predict_feeds(_feeds(X, model.inputs))
    examples = []
    for i in range(len(X)):
        inputs: dict[str, Any] = {}
        for s in model.inputs:
            v = X.iloc[i][s.input]
            if s.dtype == "float32":
                inputs[s.name] = None if np.isnan(v) else float(v)
            else:
                inputs[s.name] = None if v == "" else str(v)
        label = labels[i].item() if hasattr(labels[i], "item") else labels[i]
        examples.append(
            {"inputs": inputs, "label": label, "probabilities": [float(p) for p in proba[i]]}
        )
    return examples


def min_onnxruntime(onnx_bytes: bytes) -> str:
    """The oldest onnxruntime that runs the model's default-domain opset."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    return ORT_FOR_OPSET.get(opset, "1.20.0")


def build_manifest(
    onnx_bytes: bytes,
    schema: Schema,
    classes: list[Any],
    golden: list[dict[str, Any]],
    *,
    name: str,
    version: str,
    created_at: str,
    commit: str,
    data: dict[str, Any],
    metrics: dict[str, Any],
    export_report: dict[str, Any],
    tolerance: float,
    signing_key_id: str,
) -> dict[str, Any]:
    """The manifest dict (``files`` is filled in by :func:`write_bundle`)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": {
            "name": name,
            "version": version,
            "created_at": created_at,
            "git_commit": commit,
            "task": "classification",
            "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        },
        "data": data,
        "inputs": [s.to_manifest() for s in input_specs(schema)],
        "outputs": {"label": "label", "probabilities": "probabilities"},
        "classes": classes,
        "target": schema.target,
        "positive_class": schema.positive,  # binary: the class metrics and P(...) are about
        # columns a client may send that are not features (timestamps, dropped, the target):
        # the device accepts and logs them, and predicts without them
        "passthrough": schema.passthrough,
        "metrics": metrics,
        "parity": {
            k: export_report[k] for k in ("parity_test", "parity_edge_cases") if k in export_report
        },
        "runtime": {
            "min_onnxruntime": min_onnxruntime(onnx_bytes),
            "opset": export_report.get("opset"),
        },
        "golden": {"tolerance": tolerance, "examples": golden},
        "signing_key_id": signing_key_id,
    }


def write_bundle(
    out_dir: str | Path, onnx_bytes: bytes, manifest: dict[str, Any], private_key: Any
) -> Path:
    """Write the bundle into a temporary directory beside ``out_dir``, then swap it in whole."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    # a full disk fails before the swap: the previous bundle is untouched
    with atomic.reported_when_full(out_dir):
        try:
            (tmp / MODEL).write_bytes(onnx_bytes)
            manifest = dict(manifest)
            manifest["files"] = {
                MODEL: {"sha256": sha256_file(tmp / MODEL), "bytes": len(onnx_bytes)}
            }
            raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
            (tmp / MANIFEST).write_bytes(raw)
            (tmp / SIGNATURE).write_bytes(base64.b64encode(private_key.sign(raw)) + b"\n")
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            if out_dir.exists():
                out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main() -> None:
    p = runner.parser("bundle", __doc__)
    p.add_argument("--onnx", default="models/model.onnx")
    p.add_argument("--export-report", default="reports/export.json")
    p.add_argument("--metrics", default="reports/metrics.json")
    p.add_argument("--ingest-report", default="reports/ingest.json")
    p.add_argument("--data", default="data/prepared/test.parquet")
    p.add_argument(
        "--train",
        default="data/prepared/train.parquet",
        help="the training split: its md5 (DVC's hash) lets monitoring find it as drift reference",
    )
    p.add_argument("--out", default="models/bundle")
    p.add_argument(
        "--key",
        default=None,
        help="signing key (default: $EDGEOPS_KEY_DIR/signing.key or ~/.config/edgeops/keys/signing.key)",
    )
    args = p.parse_args()

    def body() -> None:
        from edgeops.keys import load_private_key

        params = load_params(args.params)
        cfg = section(params, "bundle")
        if not cfg.get("model_name"):
            raise EdgeopsError("bundle.model_name is not set", fix="name the model in params.yaml")
        schema = schema_from_params(params)
        private_key = load_private_key(
            Path(args.key)
            if args.key
            else (Path(cfg["signing_key"]).expanduser() if cfg.get("signing_key") else None)
        )
        onnx_bytes = Path(args.onnx).read_bytes()
        export_report = json.loads(Path(args.export_report).read_text())
        metrics = json.loads(Path(args.metrics).read_text())
        ingest = json.loads(Path(args.ingest_report).read_text())
        classes = [
            c.item() if hasattr(c, "item") else c for c in _model_classes(onnx_bytes, schema)
        ]
        model = OnnxModel(
            onnx_bytes,
            input_specs(schema),
            classes,
            threads=resources.current_threads(),
            spin=False,
        )
        resources.note_session(model.session)
        golden = golden_examples_parquet(
            model, schema, args.data, n=int(cfg.get("golden_examples", 12))
        )
        now = datetime.now(UTC)
        version = f"{now:%Y%m%d.%H%M%S}-{hashlib.sha256(onnx_bytes).hexdigest()[:8]}"
        manifest = build_manifest(
            onnx_bytes,
            schema,
            classes,
            golden,
            name=str(cfg.get("model_name", "model")),
            version=version,
            created_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            commit=git_commit(),
            data={
                "sha256": ingest.get("sha256"),
                "rows": ingest.get("rows"),
                "source": ingest.get("source"),
                "production_rows": ingest.get("production_rows", 0),
                **train_split(args.train),
            },
            metrics=metrics,
            export_report=export_report,
            tolerance=float(cfg.get("golden_tolerance", 1e-5)),
            signing_key_id=key_id(private_key.public_key()),
        )
        write_bundle(args.out, onnx_bytes, manifest, private_key)
        runner.log(
            "bundle",
            f"{manifest['model']['name']} {version}: {len(golden)} golden examples, signed by {manifest['signing_key_id']} -> {args.out}/",
        )

    runner.run("bundle", body, args.params)


def train_split(path: str | Path) -> dict[str, Any]:
    """The training split's md5 (the hash DVC stores it under in its cache) and row count."""

    from edgeops.monitor.reference import md5_file

    path = Path(path)
    return {"train_md5": md5_file(path), "train_rows": rows_and_columns(path)[0]}


def _model_classes(onnx_bytes: bytes, schema: Schema) -> list[Any]:
    """Class labels in the model's output order (from the ONNX graph's classifier node)."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in ("classlabels_int64s", "classlabels_ints") and attr.ints:
                return list(attr.ints)
            if attr.name == "classlabels_strings" and attr.strings:
                return [s.decode() for s in attr.strings]
    return schema.classes


if __name__ == "__main__":
    main()
