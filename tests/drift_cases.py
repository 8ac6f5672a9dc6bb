"""Drift windows judged as `edgeops monitor` judges them, for the tests over seeds.

A case is a training split written as ``split`` writes it (the production rows last, their count
in the footer), a model trained on it and converted to ONNX (the deployed bundle's model), and
windows of rows. :func:`judge_window` runs the drift step's own path: ``load_reference`` (the
regimes of the split), the model's probabilities on the window, ``run_drift`` (the regimes judged,
Evidently in its worker process against the matched one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from edgeops.schema import Schema, schema_from_dict

REPO = Path(__file__).resolve().parents[1]
SEATTLE = REPO / "tests" / "fixtures" / "seattle-weather" / "seattle-weather.csv"
WINTER, SUMMER = (12, 1, 2), (6, 7, 8)
#: rows of a season of daily data (a window), and the days of a week of the plant (one a minute)
SEASON_DAYS, PLANT_WEEK = 90, 7 * 24 * 60


def seattle_schema() -> Schema:
    return schema_from_dict(
        {
            "target": "weather",
            "columns": [
                {"name": c, "type": "numeric", "min": -50.0, "max": 200.0}
                for c in ("precipitation", "temp_max", "temp_min", "wind")
            ]
            + [
                {
                    "name": "weather",
                    "type": "categorical",
                    "categories": ["drizzle", "fog", "rain", "snow", "sun"],
                }
            ],
        }
    )


def seattle() -> pd.DataFrame:
    df = pd.read_csv(SEATTLE, parse_dates=["date"])
    return df.drop(columns=["date"]).assign(month=df["date"].dt.month)


@dataclass
class Case:
    bundle: Any
    schema: Schema
    workspace: Path


def deployed(
    tmp: Path, schema: Schema, source: pd.DataFrame, production: pd.DataFrame | None = None
) -> Case:
    """A model trained on ``source`` + ``production`` (a logistic regression, as ONNX) and its
    training split, written under ``tmp`` as the ``split`` stage writes it."""
    from edgeops.edge.inference import OnnxModel
    from edgeops.monitor.reference import TRAIN_SPLIT, md5_file
    from edgeops.stages.export import convert, input_specs
    from edgeops.stages.split import write_part
    from edgeops.stages.train import train
    from tests.bundles import PARAMS

    cols = [c.name for c in schema.columns]
    prod = production if production is not None else source.iloc[0:0]
    train_df = pd.concat([source[cols], prod[cols]], ignore_index=True)
    pipe = train(train_df, schema, {**PARAMS["train"], "model": "logistic_regression"})
    classes = [c.item() if hasattr(c, "item") else c for c in pipe.classes_]
    model = OnnxModel(convert(pipe, schema), input_specs(schema), classes)
    path = tmp / TRAIN_SPLIT
    path.parent.mkdir(parents=True, exist_ok=True)
    write_part(train_df, path, len(prod))
    manifest = {"model": {"version": "1.0.0"}, "data": {"train_md5": md5_file(path)}}
    return Case(SimpleNamespace(manifest=manifest, version="1.0.0", model=model), schema, tmp)


def judge_window(case: Case, window: pd.DataFrame, settings: Any) -> dict[str, Any]:
    """The drift summary of ``window`` (drift.json's figures) as the drift step computes it."""
    from edgeops.deploy.gate import predict_proba
    from edgeops.monitor.drift import judged_frame, regime_frames, run_drift
    from edgeops.monitor.reference import load_reference

    schema = case.schema
    features = [c.name for c in schema.features]
    ref = load_reference(
        case.bundle,
        features,
        schema.target,
        settings.reference_rows,
        settings.seed,
        case.workspace,
        settings.regime_min_rows,
    )
    rows = window.reset_index(drop=True)
    current = judged_frame(rows, predict_proba(case.bundle, rows), schema, ref.classes)
    _, drift = run_drift(current, regime_frames(ref, schema), schema, ref.classes, settings)
    return drift


def plant_rows(rows: int, seed: int, scenario: str) -> pd.DataFrame:
    """``rows`` readings sampled from a simulated week, as ``edgeops simulate`` sends traffic."""
    from edgeops.sources.simulator import simulate

    week = simulate(rows=max(rows, PLANT_WEEK), seed=seed, scenario=scenario)
    return week.sample(rows, random_state=seed) if len(week) > rows else week


def held_out(df: pd.DataFrame, k: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(``df`` without ``k`` random rows, those ``k`` rows)."""
    pick = np.random.default_rng(seed).permutation(len(df))
    return df.iloc[pick[k:]], df.iloc[pick[:k]]


def page_figures(html: Path) -> dict[str, Any]:
    """The drift figures an Evidently HTML page shows, from the report JSON it embeds: the share
    and count of drifted columns, each column's score, verdict and threshold (as the page prints
    it, two decimals), and the prediction's own drift test."""
    import json
    import re

    text = Path(html).read_text()
    found = re.search(r"var (metric_[0-9a-f]+) = ", text)
    assert found, f"no report JSON in {html}"
    report, _ = json.JSONDecoder().raw_decode(text, found.end())
    counters: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    tests: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for c in (node.get("params") or {}).get("counters") or []:
                counters[c["label"]] = c["value"]
            if "column_name" in node and "drift_score" in node:
                rows.append(node)
            if str(node.get("title", "")).startswith("Value Drift for column "):
                tests[node["title"].removeprefix("Value Drift for column ")] = node["description"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(report)
    thresholds = {
        col: float(re.search(r"threshold is ([0-9.]+)\.$", d).group(1)) for col, d in tests.items()
    }
    return {
        "columns": int(counters["Columns"]),
        "drifted": int(counters["Drifted Columns"]),
        "share": float(counters["Share of Drifted Columns"]),
        "scores": {r["column_name"]: float(r["drift_score"]) for r in rows},
        "detected": {r["column_name"]: r["data_drift"] == "Detected" for r in rows},
        "thresholds": thresholds,
        "prediction": tests.get("prediction"),
    }
