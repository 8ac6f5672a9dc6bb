"""Bundle verification, as the device does it: signature, hashes, runtime, golden examples.

A bundle is a directory (or an archive of one) holding ``model.onnx``, ``manifest.json`` and
``manifest.sig`` (base64 ed25519 signature over the exact bytes of ``manifest.json``). Nothing in
a bundle is trusted or loaded before the signature and every file hash check out; the signed
manifest's shape is checked (:mod:`edgeops.edge.manifest`) before anything reads its fields.

    manifest = verify_manifest(raw, sig, public_key)           # signature + shape only
    bundle = verify_bundle(path, public_key, timeout=30.0)     # everything, the model loaded
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeops.edge import manifest as manifest_shape
from edgeops.edge.inference import InputSpec, OnnxModel, columns_to_feeds

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MODEL = "model.onnx"


class BundleError(Exception):
    """A bundle that must not be loaded. ``code`` is stable (CLI exit code, agent error code)."""

    MISSING_FILE = 10
    MISSING_SIGNATURE = 11
    WRONG_KEY = 12
    BAD_SIGNATURE = 13
    UNSUPPORTED_FORMAT = 14
    HASH_MISMATCH = 15
    RUNTIME_TOO_OLD = 16
    GOLDEN_FAILED = 17
    BAD_KEY = 18
    INVALID_MANIFEST = 19
    VERIFY_TIMEOUT = 20

    NAMES = {
        10: "missing_file",
        11: "missing_signature",
        12: "wrong_key",
        13: "bad_signature",
        14: "unsupported_format",
        15: "hash_mismatch",
        16: "runtime_too_old",
        17: "golden_check_failed",
        18: "bad_public_key",
        19: "invalid_manifest",
        20: "verify_timeout",
    }

    def __init__(
        self,
        code: int,
        message: str,
        fix: str | None = None,
        fields: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.fix, self.fields = code, message, fix, fields

    @property
    def name(self) -> str:
        return self.NAMES.get(self.code, "invalid_bundle")

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


def load_public_key(path: str | Path):  # -> Ed25519PublicKey
    """Read a PEM ed25519 public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    if not path.is_file():
        raise BundleError(
            BundleError.BAD_KEY,
            f"public key {path} not found",
            "pass the signing.pub made by `edgeops keys init`",
        )
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise BundleError(BundleError.BAD_KEY, f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(BundleError.BAD_KEY, f"{path} is not an ed25519 public key")
    return key


def key_id(public_key: Any) -> str:
    """A short, stable id of a public key: ``ed25519:`` + 16 hex digits of its sha256."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def sha256_file(path: Path, deadline: Deadline | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            if deadline is not None:
                deadline.check(f"hashing {path.name}")
    return h.hexdigest()


class Deadline:
    """A time limit for verifying one bundle: :meth:`check` raises VERIFY_TIMEOUT once it passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self, doing: str) -> None:
        if self.left() <= 0:
            raise self.error(doing)

    def error(self, doing: str) -> BundleError:
        return BundleError(
            BundleError.VERIFY_TIMEOUT,
            f"verifying the bundle took longer than {self.seconds:g} s (stopped while {doing}); "
            "nothing was installed",
            "make the model faster, or raise verify_timeout_seconds in the agent's config",
        )


@dataclass
class VerifiedBundle:
    """A bundle whose signature, hashes and golden examples checked out; ``model`` is loaded."""

    path: Path
    manifest: dict[str, Any]
    model: OnnxModel
    golden_max_abs_diff: float

    @property
    def version(self) -> str:
        return str(self.manifest["model"]["version"])


def _version_tuple(v: str) -> tuple[int, ...]:
    parts = []
    for p in v.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def verify_manifest(raw: bytes, sig: bytes, public_key: Any) -> dict[str, Any]:
    """The manifest in ``raw`` if ``sig`` is this key's signature over it and it is well formed.

    Order: a format newer than this agent reads (a hint, before the signature) -> the signature
    -> the signed bytes are a JSON object of a supported format -> its shape
    (:func:`edgeops.edge.manifest.problems`: 422 ``invalid_manifest`` naming the fields).
    """
    from cryptography.exceptions import InvalidSignature

    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        parsed = None
    fmt = parsed.get("format_version") if isinstance(parsed, dict) else None
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT_VERSION:
        raise _unsupported(fmt)
    expected_id = key_id(public_key)
    try:
        signature = base64.b64decode(sig.strip(), validate=True)
        public_key.verify(signature, raw)
    except (InvalidSignature, ValueError) as exc:
        signed_id = parsed.get("signing_key_id") if isinstance(parsed, dict) else None
        if isinstance(signed_id, str) and signed_id != expected_id:
            raise BundleError(
                BundleError.WRONG_KEY,
                f"the bundle was signed by key {signed_id[:40]}, not by the trusted key {expected_id}",
                "deploy with the public key that matches the signing key, or re-sign the bundle",
            ) from exc
        raise BundleError(
            BundleError.BAD_SIGNATURE,
            "the signature does not match manifest.json: the manifest was changed after signing "
            "(or the signature file is damaged)",
            "rebuild and re-sign the bundle; never edit a signed manifest",
        ) from exc
    if not isinstance(parsed, dict):
        raise BundleError(
            BundleError.INVALID_MANIFEST,
            "manifest.json is signed but is not a JSON object",
            fields=[{"field": "(manifest)", "problem": "not a JSON object"}],
        )
    try:
        fmt = int(parsed.get("format_version", 0))
    except (ValueError, TypeError):
        fmt = 0
    if fmt > FORMAT_VERSION or fmt < 1:
        raise _unsupported(fmt)
    problems = manifest_shape.problems(parsed)
    if problems:
        listed = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:3])
        raise BundleError(
            BundleError.INVALID_MANIFEST,
            f"the signed manifest is malformed: {listed}"
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""),
            "rebuild the bundle with `dvc repro bundle` (edgeops' own bundle stage)",
            fields=problems,
        )
    return parsed


def _unsupported(fmt: Any) -> BundleError:
    return BundleError(
        BundleError.UNSUPPORTED_FORMAT,
        f"bundle format version {fmt} is not supported by this agent (it reads version {FORMAT_VERSION})",
        "upgrade edgeops on the device, or build the bundle with this edgeops version",
    )


def verify_files(
    path: str | Path, public_key: Any, deadline: Deadline | None = None
) -> dict[str, Any]:
    """The manifest of bundle directory ``path`` once its signature, shape and every listed
    file's sha256 check out (no model is loaded); raise :class:`BundleError`."""
    path = Path(path)
    manifest_path, sig_path = path / MANIFEST, path / SIGNATURE
    if not path.is_dir():
        raise BundleError(BundleError.MISSING_FILE, f"bundle directory {path} not found")
    if not manifest_path.is_file():
        raise BundleError(
            BundleError.MISSING_FILE,
            f"{manifest_path} is missing",
            "rebuild the bundle (dvc repro)",
        )
    if not sig_path.is_file():
        raise BundleError(
            BundleError.MISSING_SIGNATURE,
            f"{sig_path} is missing: the bundle is unsigned",
            "sign it: the bundle stage signs with the key from `edgeops keys init`",
        )
    manifest = verify_manifest(manifest_path.read_bytes(), sig_path.read_bytes(), public_key)
    files = manifest["files"]
    if MODEL not in files:
        raise BundleError(BundleError.MISSING_FILE, f"the manifest lists no {MODEL}")
    for name, meta in sorted(files.items()):
        fpath = path / name
        if not fpath.is_file():
            raise BundleError(
                BundleError.MISSING_FILE, f"{fpath} is listed in the manifest but missing"
            )
        if sha256_file(fpath, deadline) != meta["sha256"]:
            raise BundleError(
                BundleError.HASH_MISMATCH,
                f"{name} does not match its sha256 in the signed manifest (the file was altered)",
                "rebuild the bundle; do not edit its files",
            )
    return manifest


def verify_bundle(
    path: str | Path,
    public_key: Any,
    threads: int = 1,
    timeout: float | None = None,
    spin: bool = True,
) -> VerifiedBundle:
    """Check a bundle directory completely and return it loaded; raise :class:`BundleError`.

    Order: files present -> the signature is by this key and matches -> the manifest is well
    formed -> every file's sha256 -> onnxruntime is new enough -> the model loads and reproduces
    every golden example. ``timeout`` (seconds) bounds all of it: hashing and the golden run stop
    when it passes (onnxruntime's terminate flag), loading is checked after (VERIFY_TIMEOUT).
    """
    path = Path(path)
    deadline = None if timeout is None else Deadline(timeout)
    manifest = verify_files(path, public_key, deadline)

    import onnxruntime as ort

    need = (manifest.get("runtime") or {}).get("min_onnxruntime", "0")
    if _version_tuple(ort.__version__) < _version_tuple(need):
        raise BundleError(
            BundleError.RUNTIME_TOO_OLD,
            f"the bundle needs onnxruntime >= {need}, this device has {ort.__version__}",
            "upgrade onnxruntime on the device",
        )

    inputs = [InputSpec.from_manifest(d) for d in manifest["inputs"]]
    try:
        model = OnnxModel(
            str(path / MODEL), inputs, manifest["classes"], threads=threads, spin=spin
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(BundleError.GOLDEN_FAILED, f"the model does not load: {exc}") from exc
    if deadline is not None:
        deadline.check("loading the model")
    diff = check_golden(model, manifest, deadline)
    return VerifiedBundle(path=path, manifest=manifest, model=model, golden_max_abs_diff=diff)


def check_golden(
    model: OnnxModel, manifest: dict[str, Any], deadline: Deadline | None = None
) -> float:
    """Re-run the manifest's golden examples; return max |Δp| or raise GOLDEN_FAILED.

    With a ``deadline`` a timer sets onnxruntime's ``RunOptions.terminate`` when it passes: the
    run stops between nodes (a long ``Loop`` too) and this raises VERIFY_TIMEOUT."""
    golden = manifest.get("golden") or {}
    examples = golden.get("examples") or []
    if not examples:
        raise BundleError(BundleError.GOLDEN_FAILED, "the manifest has no golden examples to check")
    tol = float(golden.get("tolerance", 1e-5))
    columns = {s.name: [ex["inputs"].get(s.name) for ex in examples] for s in model.inputs}
    options, timer = _run_options(deadline)
    try:
        feeds = columns_to_feeds(columns, model.inputs)
        label, proba = model.session.run(None, feeds, options)[:2]
        labels, proba = np.asarray(label).reshape(-1), np.asarray(proba, dtype=np.float64)
    except Exception as exc:
        if deadline is not None and options.terminate:
            raise deadline.error("running the golden examples") from None
        raise BundleError(
            BundleError.GOLDEN_FAILED, f"the model failed on its golden examples: {exc}"
        ) from exc
    finally:
        if timer is not None:
            timer.cancel()
    expected = np.asarray([ex["probabilities"] for ex in examples], dtype=np.float64)
    if proba.shape != expected.shape:
        raise BundleError(
            BundleError.GOLDEN_FAILED,
            f"golden probabilities have shape {expected.shape}, the model gives {proba.shape}",
        )
    diff = float(np.abs(proba - expected).max())
    wrong = [i for i, ex in enumerate(examples) if str(ex["label"]) != str(labels[i])]
    if diff > tol or wrong:
        raise BundleError(
            BundleError.GOLDEN_FAILED,
            f"the model does not reproduce its golden examples (max |Δp| {diff:.2e}, tolerance "
            f"{tol:.0e}; {len(wrong)} label(s) differ)",
            "the model file or the runtime differs from what was exported; rebuild the bundle",
        )
    return diff


def _run_options(deadline: Deadline | None) -> tuple[Any, threading.Timer | None]:
    """onnxruntime run options whose ``terminate`` flag a timer sets when ``deadline`` passes."""
    if deadline is None:
        return None, None
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4  # the stop is reported as VERIFY_TIMEOUT, not as an ORT error
    deadline.check("starting the golden examples")
    timer = threading.Timer(deadline.left(), lambda: setattr(options, "terminate", True))
    timer.daemon = True
    timer.start()
    return options, timer


def model_signature(manifest: dict[str, Any]) -> dict[str, Any]:
    """What clients of a model depend on: its name, its input columns and types, its classes."""
    return {
        "name": str((manifest.get("model") or {}).get("name")),
        "inputs": sorted(
            [str(d.get("name")), str(d.get("dtype"))] for d in manifest.get("inputs") or []
        ),
        "classes": sorted(str(c) for c in manifest.get("classes") or []),
    }


def incompatibilities(active: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How ``new`` differs from the ``active`` model's signature in ways its clients would notice
    (empty: a new version of the same model). Ranges and categories may change freely."""
    out = []
    if active.get("name") != new.get("name"):
        out.append(f"model name {new.get('name')!r} instead of {active.get('name')!r}")
    old_in = {n: t for n, t in active.get("inputs") or []}
    new_in = {n: t for n, t in new.get("inputs") or []}
    if old_in != new_in:
        gone, added = sorted(set(old_in) - set(new_in)), sorted(set(new_in) - set(old_in))
        retyped = sorted(n for n in set(old_in) & set(new_in) if old_in[n] != new_in[n])
        parts = [
            f"{label} {cols}"
            for label, cols in (("without", gone), ("with new inputs", added), ("retyped", retyped))
            if cols
        ]
        out.append("inputs " + ", ".join(parts))
    if active.get("classes") != new.get("classes"):
        out.append(f"classes {new.get('classes')} instead of {active.get('classes')}")
    return out
