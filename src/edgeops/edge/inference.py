"""Running a bundle's ONNX model: rows of raw features in, labels and probabilities out.

The model has one input per raw feature column, shape ``[None, 1]``: ``float32`` for numeric
columns (``NaN`` = missing), ``string`` for categorical ones (``""`` = missing). Outputs are the
label and a plain probability tensor (no ZipMap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeops.offline import telemetry_off

FLOAT = "float32"
STRING = "string"


@dataclass(frozen=True)
class InputSpec:
    """One model input = one raw feature column.

    ``name`` is the column's name, what clients send; ``input`` the ONNX graph's input name, a
    plain identifier derived from it (``edgeops.schema.input_names``; the same when the name is
    already one).
    """

    name: str
    dtype: str  # "float32" | "string"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    input: str = ""

    def __post_init__(self) -> None:
        if not self.input:
            object.__setattr__(self, "input", self.name)

    @classmethod
    def from_manifest(cls, d: Mapping[str, Any]) -> InputSpec:
        cats = d.get("categories")
        return cls(
            name=d["name"],
            dtype=d["dtype"],
            nullable=bool(d.get("nullable", False)),
            min=d.get("min"),
            max=d.get("max"),
            categories=tuple(cats) if cats is not None else None,
            input=d.get("input") or d["name"],
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "input": self.input, "dtype": self.dtype}
        out["shape"] = [None, 1]
        out["nullable"] = self.nullable
        if self.dtype == FLOAT:
            out["min"], out["max"] = self.min, self.max
        else:
            out["categories"] = list(self.categories or ())
        return out


def columns_to_feeds(
    columns: Mapping[str, Sequence[Any]], inputs: Sequence[InputSpec]
) -> dict[str, np.ndarray]:
    """Column values (by column name) -> ONNX feeds (by input name): float32 / object arrays of
    shape [n, 1]. Missing numerics (None) become NaN; missing categories (None) become "".
    """
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        values = columns[spec.name]
        if spec.dtype == FLOAT:
            arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float32)
        else:
            arr = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
        feeds[spec.input] = arr.reshape(-1, 1)
    return feeds


def rows_to_columns(
    rows: Sequence[Mapping[str, Any]], inputs: Sequence[InputSpec]
) -> dict[str, list[Any]]:
    """Row dicts -> column lists (the caller has validated the rows)."""
    return {spec.name: [row.get(spec.name) for row in rows] for spec in inputs}


def make_session(model: bytes | str, threads: int = 1, spin: bool = True) -> Any:
    """An onnxruntime session on the CPU; ``threads=1`` is best for many small requests.

    ``spin=False``: idle pool threads sleep instead of spinning (a stage sharing the box; the
    agent, which owns its cores and answers in microseconds, keeps onnxruntime's default).
    """
    telemetry_off()  # before onnxruntime loads
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


class OnnxModel:
    """A loaded model: ``predict(columns)`` returns ``(labels, probabilities)``."""

    def __init__(
        self,
        model: bytes | str,
        inputs: Sequence[InputSpec],
        classes: Sequence[Any],
        threads: int = 1,
        spin: bool = True,
    ) -> None:
        self.session = make_session(model, threads=threads, spin=spin)
        self.inputs = list(inputs)
        self.classes = list(classes)
        self.class_names = [str(c) for c in self.classes]  # the keys of "probabilities" in answers
        names = [o.name for o in self.session.get_outputs()]
        self._label_out, self._proba_out = names[0], names[1]
        expected = {s.input for s in self.inputs}
        actual = {i.name for i in self.session.get_inputs()}
        if expected != actual:
            raise ValueError(
                f"model inputs {sorted(actual)} do not match the manifest {sorted(expected)}"
            )

    def predict_feeds(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        label, proba = self.session.run([self._label_out, self._proba_out], dict(feeds))
        return np.asarray(label).reshape(-1), np.asarray(proba, dtype=np.float64)

    def predict(self, columns: Mapping[str, Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        return self.predict_feeds(columns_to_feeds(columns, self.inputs))
