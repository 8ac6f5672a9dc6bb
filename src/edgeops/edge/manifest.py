"""The shape of a signed manifest, checked before anything reads it, and its ``created_at``.

A valid signature says who wrote the manifest, not that it is well formed: a signing key used
by a buggy or hostile build can sign ``{"model": {"version": "a\\u0000b"}}``. :func:`problems`
lists every field the agent relies on that is missing or of the wrong type, so a bad manifest is
a 422 naming the field, never a ``KeyError`` deep in the runtime.

    for p in problems(manifest):  # [{"field": "model.version", "problem": "..."}]
        ...
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

#: a version names a directory on the device and appears in URLs and logs
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
DTYPES = ("float32", "string")
MAX_PROBLEMS = 20


def created_at(manifest: dict[str, Any]) -> datetime:
    """``model.created_at`` as an aware datetime (naive times are UTC); ValueError if it is not
    an ISO 8601 time."""
    value = (manifest.get("model") or {}).get("created_at")
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not an ISO 8601 time string")
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str) or _is_number(v)


def problems(m: Any) -> list[dict[str, str]]:
    """Every field of manifest ``m`` that is missing or malformed (empty: well formed)."""
    out: list[dict[str, str]] = []

    def bad(field: str, problem: str) -> None:
        out.append({"field": field, "problem": problem})

    if not isinstance(m, dict):
        return [{"field": "(manifest)", "problem": "not a JSON object"}]
    model = m.get("model")
    if not isinstance(model, dict):
        bad("model", "missing or not an object")
        model = {}
    name, version = model.get("name"), model.get("version")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        bad("model.name", "missing or not a non-empty string (at most 200 characters)")
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        bad(
            "model.version",
            "must be a string of 1-64 characters from A-Z a-z 0-9 . _ + -, "
            "starting with a letter or digit",
        )
    try:
        created_at(m)
    except (ValueError, TypeError):
        bad("model.created_at", "missing or not an ISO 8601 time (2026-11-21T00:00:00Z)")
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        bad("files", "missing or not an object of file name -> {sha256}")
    else:
        for fname, meta in files.items():
            if not FILE_RE.fullmatch(fname):
                bad(f"files.{fname[:80]}", "not a plain file name (A-Z a-z 0-9 . _ + -)")
            elif (
                not isinstance(meta, dict)
                or not isinstance(meta.get("sha256"), str)
                or not SHA256_RE.fullmatch(meta["sha256"])
            ):
                bad(f"files.{fname}.sha256", "missing or not 64 lowercase hex digits")
    _inputs(m.get("inputs"), bad)
    classes = m.get("classes")
    if not isinstance(classes, list) or not classes or not all(_is_scalar(c) for c in classes):
        bad("classes", "missing or not a non-empty list of class labels (strings or numbers)")
    elif len({str(c) for c in classes}) != len(classes):
        bad("classes", "class labels must be distinct")
    else:
        _golden(m.get("golden"), m.get("inputs"), len(classes), bad)
    passthrough = m.get("passthrough")
    if passthrough is not None and (
        not isinstance(passthrough, list) or not all(isinstance(p, str) for p in passthrough)
    ):
        bad("passthrough", "must be a list of column names")
    runtime = m.get("runtime")
    if runtime is not None and (
        not isinstance(runtime, dict) or not isinstance(runtime.get("min_onnxruntime", "0"), str)
    ):
        bad("runtime.min_onnxruntime", "must be a version string")
    if m.get("signing_key_id") is not None and not isinstance(m["signing_key_id"], str):
        bad("signing_key_id", "must be a string")
    return out[:MAX_PROBLEMS]


def _inputs(inputs: Any, bad: Any) -> None:
    if not isinstance(inputs, list) or not inputs:
        bad("inputs", "missing or not a non-empty list of input columns")
        return
    seen: set[str] = set()
    for i, d in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(d, dict):
            bad(where, "not an object")
            continue
        name = d.get("name")
        if not isinstance(name, str) or not name or "\0" in name or name in seen:
            bad(f"{where}.name", "missing, not a string, or a duplicate")
        else:
            seen.add(name)
        if d.get("dtype") not in DTYPES:
            bad(f"{where}.dtype", f"must be one of {list(DTYPES)}")
        if d.get("input") is not None and not isinstance(d["input"], str):
            bad(f"{where}.input", "must be a string")
        if not isinstance(d.get("nullable", False), bool):
            bad(f"{where}.nullable", "must be true or false")
        for key in ("min", "max"):
            if d.get(key) is not None and not _is_number(d[key]):
                bad(f"{where}.{key}", "must be a number or null")
        cats = d.get("categories")
        if cats is not None and (
            not isinstance(cats, list) or not all(isinstance(c, str) for c in cats)
        ):
            bad(f"{where}.categories", "must be a list of strings")


def _golden(golden: Any, inputs: Any, n_classes: int, bad: Any) -> None:
    if not isinstance(golden, dict):
        bad("golden", "missing or not an object")
        return
    if golden.get("tolerance") is not None and not (
        _is_number(golden["tolerance"]) and golden["tolerance"] >= 0
    ):
        bad("golden.tolerance", "must be a number >= 0")
    examples = golden.get("examples")
    if not isinstance(examples, list) or not examples:
        bad("golden.examples", "missing or not a non-empty list")
        return
    specs = [d for d in inputs if isinstance(d, dict)] if isinstance(inputs, list) else []
    for i, ex in enumerate(examples):
        where = f"golden.examples[{i}]"
        if not isinstance(ex, dict) or not isinstance(ex.get("inputs"), dict):
            bad(where, "must be an object with inputs, label and probabilities")
            continue
        if not _is_scalar(ex.get("label")):
            bad(f"{where}.label", "missing or not a class label")
        proba = ex.get("probabilities")
        if (
            not isinstance(proba, list)
            or len(proba) != n_classes
            or not all(_is_number(p) for p in proba)
        ):
            bad(f"{where}.probabilities", f"must be a list of {n_classes} numbers (one per class)")
        for d in specs:
            v = ex["inputs"].get(d.get("name"))
            ok = v is None or (_is_number(v) if d.get("dtype") == "float32" else isinstance(v, str))
            if not ok:
                bad(f"{where}.inputs.{d.get('name')}", f"not a {d.get('dtype')} value or null")
