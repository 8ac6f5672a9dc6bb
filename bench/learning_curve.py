"""Benchmark: what training on a sample costs in model quality -- the evidence behind
``train.max_rows`` (above it, the train stage fits a uniform sample of the training split).

    .venv/bin/python bench/learning_curve.py [--rows 10000000] [--fit 250000 1000000 4000000 8000000]
                                             [--out reports/bench/learning_curve.json]

The simulator's data at --rows rows, split as the split stage does (stratified, params.yaml's
seed and test size); the train stage's own pipeline (params.yaml's model and settings) fitted on
uniform samples of the training split of each --fit size; every model scored on the same whole
test split with the evaluate stage's metrics. Prints and writes, per size: ROC AUC, PR AUC, F1,
fit time. A curve that is flat well below train.max_rows says the sample costs nothing measurable.
Not part of `make bench` (about 4 min at 10M rows on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, say, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument(
        "--fit", type=int, nargs="+", default=[250_000, 1_000_000, 4_000_000, 8_000_000]
    )
    ap.add_argument("--out", default=str(REPO / "reports/bench/learning_curve.json"))
    args = ap.parse_args()

    from edgeops.features import feature_frame, target_series
    from edgeops.params import load_params, section
    from edgeops.schema import schema_from_params
    from edgeops.sources.simulator import simulate
    from edgeops.stages.evaluate import scores
    from edgeops.stages.split import split
    from edgeops.stages.train import train

    params = load_params(REPO / "params.yaml")
    schema, cfg, split_cfg = (
        schema_from_params(params),
        section(params, "train"),
        section(params, "split"),
    )
    say(f"simulating {args.rows:,} rows and splitting them")
    data = simulate(rows=args.rows, seed=42)
    train_df, test_df = split(
        data, schema, float(split_cfg.get("test_size", 0.2)), int(split_cfg.get("seed", 42))
    )
    del data
    X_test, y_test = feature_frame(test_df, schema), target_series(test_df, schema)
    results = []
    for n in sorted(set(min(n, len(train_df)) for n in args.fit)):
        sample = (
            train_df.sample(n=n, random_state=int(cfg.get("seed", 42)))
            if n < len(train_df)
            else train_df
        )
        start = time.perf_counter()
        pipe = train(sample, schema, cfg)
        fit_s = time.perf_counter() - start
        got = scores(y_test, pipe.predict_proba(X_test), list(pipe.classes_), schema.positive)
        row = {
            "fit_rows": n,
            "fit_s": round(fit_s, 1),
            **{k: round(float(got[k]), 5) for k in ("roc_auc", "pr_auc", "f1") if k in got},
        }
        results.append(row)
        say(
            f"  fit on {n:>10,} rows: ROC AUC {row['roc_auc']:.5f}, PR AUC {row['pr_auc']:.5f}, "
            f"F1 {row['f1']:.5f} ({fit_s:.0f} s)"
        )
    write_json(
        Path(args.out),
        {"rows": args.rows, "test_rows": len(test_df), "model": cfg.get("model"), "curve": results},
    )
    say(f"-> {args.out}")


if __name__ == "__main__":
    main()
