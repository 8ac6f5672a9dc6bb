"""Benchmark: the demo model in onnxruntime vs scikit-learn, 1 row and 1,000 rows.

Run after `make demo` (it needs models/model.joblib, models/model.onnx and the test split):

    make bench-export            # or: .venv/bin/python bench/export.py [--repeats 300]

Both sides get the same rows. "model only" times predict_proba / session.run on prepared
inputs; "from JSON rows" includes turning a list of dicts into a DataFrame (scikit-learn) or
into ONNX feeds (onnxruntime), as a server would. The baseline is scikit-learn; ratios are
sklearn time / ORT time (higher = ORT faster). Results also go to reports/bench/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def timed(fn, repeats: int) -> dict[str, float]:
    for _ in range(max(3, repeats // 20)):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p90_ms": samples[int(0.9 * (len(samples) - 1))]}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=300, help="timed calls per 1-row case")
    ap.add_argument("--out", default="reports/bench/export.json")
    args = ap.parse_args()

    import joblib
    import numpy as np
    import onnxruntime as ort
    import pandas as pd
    import yaml

    from edgeops.edge.inference import OnnxModel, columns_to_feeds, rows_to_columns
    from edgeops.features import feature_frame
    from edgeops.schema import schema_from_dict
    from edgeops.stages.export import _feeds, input_specs

    for path in ("models/model.joblib", "models/model.onnx", "data/prepared/test.parquet"):
        if not Path(path).exists():
            raise SystemExit(f"{path} is missing: run `make demo` first")
    schema = schema_from_dict(yaml.safe_load(Path("params.yaml").read_text())["validate"]["schema"])
    pipe = joblib.load("models/model.joblib")
    onnx_bytes = Path("models/model.onnx").read_bytes()
    specs = input_specs(schema)
    classes = list(pipe.classes_)
    X = feature_frame(pd.read_parquet("data/prepared/test.parquet"), schema)
    one, batch = X.iloc[:1], X.sample(n=1000, random_state=0, replace=len(X) < 1000)
    rows_one = [
        {k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in r.items()}
        for r in one.to_dict("records")
    ]
    rows_batch = [
        {k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in r.items()}
        for r in batch.to_dict("records")
    ]
    cols = [s.name for s in specs]

    ort1 = OnnxModel(onnx_bytes, specs, classes, threads=1)
    ort2 = OnnxModel(onnx_bytes, specs, classes, threads=0)
    f1, fb = _feeds(one, specs), _feeds(batch, specs)
    reps_batch = max(20, args.repeats // 10)
    cases = {
        "1 row, model only": (
            lambda: pipe.predict_proba(one),
            lambda: ort1.predict_feeds(f1),
            args.repeats,
        ),
        "1 row, from JSON rows": (
            lambda: pipe.predict_proba(
                pd.DataFrame(rows_one, columns=cols).astype(
                    {c: "float32" for c in schema.numeric_features}
                )
            ),
            lambda: ort1.predict_feeds(columns_to_feeds(rows_to_columns(rows_one, specs), specs)),
            args.repeats,
        ),
        "1000 rows, model only (ORT 1 thread)": (
            lambda: pipe.predict_proba(batch),
            lambda: ort1.predict_feeds(fb),
            reps_batch,
        ),
        "1000 rows, model only (ORT 2 threads)": (
            lambda: pipe.predict_proba(batch),
            lambda: ort2.predict_feeds(fb),
            reps_batch,
        ),
        "1000 rows, from JSON rows": (
            lambda: pipe.predict_proba(
                pd.DataFrame(rows_batch, columns=cols).astype(
                    {c: "float32" for c in schema.numeric_features}
                )
            ),
            lambda: ort1.predict_feeds(columns_to_feeds(rows_to_columns(rows_batch, specs), specs)),
            reps_batch,
        ),
    }
    results = {}
    print(
        f"model: {type(pipe.steps[-1][1]).__name__}, ONNX {len(onnx_bytes) / 1e6:.2f} MB, "
        f"onnxruntime {ort.__version__}, {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"{'case':40s} {'sklearn p50':>12s} {'ORT p50':>10s} {'ratio':>8s}")
    for name, (sk, onx, reps) in cases.items():
        a, b = timed(sk, reps), timed(onx, reps)
        ratio = a["p50_ms"] / b["p50_ms"]
        results[name] = {"sklearn": a, "onnxruntime": b, "ratio_p50": ratio}
        print(f"{name:40s} {a['p50_ms']:10.3f}ms {b['p50_ms']:8.3f}ms {ratio:7.1f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
