"""Building real, signed bundles for the agent tests (small models, seconds to make)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from edgeops.edge.bundle import key_id
from edgeops.edge.inference import OnnxModel
from edgeops.keys import load_private_key
from edgeops.schema import Schema, schema_from_dict
from edgeops.stages.bundle import build_manifest, golden_examples, write_bundle
from edgeops.stages.export import export, input_specs
from edgeops.stages.split import split
from edgeops.stages.train import train

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def plant_schema(drop: tuple[str, ...] = ()) -> Schema:
    return schema_from_dict({**PARAMS["validate"]["schema"], "drop": list(drop)})


@cache
def plant_split(rows: int = 3000, seed: int = 11):
    from edgeops.sources.simulator import simulate

    return split(simulate(rows=rows, seed=seed), plant_schema(), 0.25, 0)


def _sign_and_write(
    out: Path,
    key_dir: Path,
    onnx_bytes: bytes,
    classes: list[Any],
    version: str,
    export_report: dict[str, Any],
    metrics: dict[str, Any],
    name: str = "plant-failure",
    schema: Schema | None = None,
) -> Path:
    schema = schema or plant_schema()
    _, test_df = plant_split()
    model = OnnxModel(onnx_bytes, input_specs(schema), classes)
    golden = golden_examples(model, schema, test_df, n=10)
    private = load_private_key(Path(key_dir) / "signing.key")
    manifest = build_manifest(
        onnx_bytes,
        schema,
        classes,
        golden,
        name=name,
        version=version,
        created_at="2026-11-21T00:00:00Z",
        commit="test",
        data={"sha256": "test", "rows": 3000},
        metrics=metrics,
        export_report=export_report,
        tolerance=1e-5,
        signing_key_id=key_id(private.public_key()),
    )
    return write_bundle(out, onnx_bytes, manifest, private)


def make_bundle(
    out: Path,
    key_dir: Path,
    version: str,
    model: str = "logistic_regression",
    C: float = 1.0,
    shuffle_labels: bool = False,
    name: str = "plant-failure",
    drop: tuple[str, ...] = (),
    train_df: Any = None,
) -> Path:
    """A signed bundle of a real trained plant model, written to ``out``.

    ``shuffle_labels`` trains on permuted labels: a model no better than chance (for gate tests).
    ``name`` and ``drop`` (features left out) make a bundle of another model. ``train_df``: the
    rows to learn from instead of the plant split's training rows (e.g. plus another regime).
    """
    from edgeops.stages.evaluate import evaluate

    schema = plant_schema(drop)
    plant_train, test_df = plant_split()
    train_df = plant_train if train_df is None else train_df
    if shuffle_labels:
        train_df = train_df.copy()
        train_df[schema.target] = (
            train_df[schema.target].sample(frac=1.0, random_state=1).to_numpy()
        )
    cfg = {**PARAMS["train"], "model": model}
    cfg["logistic_regression"] = {**cfg["logistic_regression"], "C": C}
    cfg["hist_gradient_boosting"] = {**cfg["hist_gradient_boosting"], "max_iter": 30}
    cfg["random_forest"] = {**cfg["random_forest"], "n_estimators": 20}
    pipe = train(train_df, schema, cfg)
    onnx_bytes, report = export(pipe, schema, test_df, {**PARAMS["export"], "latency_repeats": 0})
    metrics, _ = evaluate(pipe, test_df, schema)
    return _sign_and_write(
        out,
        key_dir,
        onnx_bytes,
        [int(c) for c in pipe.classes_],
        version,
        report,
        metrics,
        name,
        schema,
    )


def make_failing_bundle(out: Path, key_dir: Path, version: str) -> Path:
    """A signed bundle whose model passes its golden examples but returns NaN probabilities for
    any row with a negative ``torque_nm`` (sqrt of a negative number): a model that "starts
    failing" once production traffic reaches inputs its golden examples never covered."""
    import onnx
    from onnx import TensorProto, helper

    schema = plant_schema()
    specs = input_specs(schema)
    inputs = [
        helper.make_tensor_value_info(
            s.name, TensorProto.FLOAT if s.dtype == "float32" else TensorProto.STRING, [None, 1]
        )
        for s in specs
    ]
    nodes = [
        helper.make_node("Sqrt", ["torque_nm"], ["root"]),
        helper.make_node("Sub", ["root", "five"], ["shifted"]),
        helper.make_node("Sigmoid", ["shifted"], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    inits = [
        helper.make_tensor("five", TensorProto.FLOAT, [1], [5.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
    ]
    graph = helper.make_graph(nodes, "fails_on_negative_torque", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    report = {"parity_test": {"max_abs_diff": 0.0}, "opset": {"": 17}}
    return _sign_and_write(
        out, key_dir, model.SerializeToString(), [0, 1], version, report, {"roc_auc": 0.5}
    )
