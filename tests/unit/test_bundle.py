"""Bundles: signing, verification, and each way a bundle can be tampered with."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgeops.edge.bundle import BundleError, load_public_key, verify_bundle
from edgeops.edge.inference import OnnxModel
from edgeops.keys import init_keys, load_private_key
from edgeops.schema import schema_from_dict
from edgeops.stages.bundle import build_manifest, golden_examples, write_bundle
from edgeops.stages.export import export, input_specs
from edgeops.stages.split import split
from edgeops.stages.train import train

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
EDGEOPS = str(Path(sys.executable).parent / "edgeops")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    good = tmp_path_factory.mktemp("keys")
    other = tmp_path_factory.mktemp("other-keys")
    init_keys(good)
    init_keys(other)
    return good, other


@pytest.fixture(scope="module")
def built(tmp_path_factory, keys) -> Path:
    from edgeops.sources.simulator import simulate

    schema = schema_from_dict(PARAMS["validate"]["schema"])
    train_df, test_df = split(simulate(rows=2000, seed=5), schema, 0.25, 0)
    pipe = train(train_df, schema, {**PARAMS["train"], "model": "logistic_regression"})
    onnx_bytes, report = export(pipe, schema, test_df, {**PARAMS["export"], "latency_repeats": 0})
    classes = [int(c) for c in pipe.classes_]
    model = OnnxModel(onnx_bytes, input_specs(schema), classes)
    golden = golden_examples(model, schema, test_df, n=10)
    private = load_private_key(keys[0] / "signing.key")
    from edgeops.edge.bundle import key_id

    manifest = build_manifest(
        onnx_bytes,
        schema,
        classes,
        golden,
        name="plant-failure",
        version="1.0.0",
        created_at="2026-11-21T00:00:00Z",
        commit="abc",
        data={"sha256": "x", "rows": 2000},
        metrics={"roc_auc": 0.9},
        export_report=report,
        tolerance=1e-5,
        signing_key_id=key_id(private.public_key()),
    )
    return write_bundle(tmp_path_factory.mktemp("b") / "bundle", onnx_bytes, manifest, private)


@pytest.fixture
def bundle(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the good bundle to damage."""
    return Path(shutil.copytree(built, tmp_path / "bundle"))


def resign(bundle: Path, key_dir: Path, edit) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bundle / "manifest.json").write_bytes(raw)
    sig = load_private_key(key_dir / "signing.key").sign(raw)
    (bundle / "manifest.sig").write_bytes(base64.b64encode(sig) + b"\n")


def code_of(bundle: Path, pub: Path) -> int:
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle, load_public_key(pub))
    return err.value.code


def test_key_files_and_permissions(keys) -> None:
    good, _ = keys
    assert (good / "signing.key").stat().st_mode & 0o777 == 0o600
    assert (good / "signing.pub").is_file()


def test_keys_are_never_created_inside_a_git_work_tree() -> None:
    from edgeops.errors import EdgeopsError

    with pytest.raises(EdgeopsError, match="never be committed"):
        init_keys(REPO / "keys-here")
    assert not (REPO / "keys-here").exists()


def test_manifest_carries_what_the_device_needs(built: Path) -> None:
    m = json.loads((built / "manifest.json").read_text())
    for key in (
        "format_version",
        "model",
        "data",
        "inputs",
        "outputs",
        "classes",
        "metrics",
        "parity",
        "runtime",
        "files",
        "golden",
        "signing_key_id",
    ):
        assert key in m, key
    assert m["model"]["version"] == "1.0.0" and m["classes"] == [0, 1]
    names = {i["name"]: i for i in m["inputs"]}
    assert names["torque_nm"]["dtype"] == "float32" and names["machine_type"]["dtype"] == "string"
    assert names["vibration_mm_s"]["nullable"] is True
    assert names["machine_type"]["categories"] == ["L", "M", "H"]
    assert len(m["golden"]["examples"]) == 10 and m["runtime"]["min_onnxruntime"]
    assert len(m["files"]["model.onnx"]["sha256"]) == 64


def test_fresh_bundle_verifies(built: Path, keys) -> None:
    vb = verify_bundle(built, load_public_key(keys[0] / "signing.pub"))
    assert vb.version == "1.0.0" and vb.golden_max_abs_diff <= 1e-5


def test_one_flipped_byte_in_the_model_is_rejected(bundle: Path, keys) -> None:
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "model.onnx").write_bytes(bytes(data))
    assert code_of(bundle, keys[0] / "signing.pub") == BundleError.HASH_MISMATCH


def test_edited_manifest_is_rejected(bundle: Path, keys) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    m["metrics"]["roc_auc"] = 0.99
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    assert code_of(bundle, keys[0] / "signing.pub") == BundleError.BAD_SIGNATURE


def test_wrong_public_key_is_rejected(bundle: Path, keys) -> None:
    assert code_of(bundle, keys[1] / "signing.pub") == BundleError.WRONG_KEY


def test_missing_signature_is_rejected(bundle: Path, keys) -> None:
    (bundle / "manifest.sig").unlink()
    assert code_of(bundle, keys[0] / "signing.pub") == BundleError.MISSING_SIGNATURE


def test_missing_model_file_is_rejected(bundle: Path, keys) -> None:
    (bundle / "model.onnx").unlink()
    assert code_of(bundle, keys[0] / "signing.pub") == BundleError.MISSING_FILE


def test_newer_format_version_is_rejected(bundle: Path, keys) -> None:
    resign(bundle, keys[0], lambda m: m.update(format_version=2))
    assert code_of(bundle, keys[0] / "signing.pub") == BundleError.UNSUPPORTED_FORMAT


def test_golden_examples_that_do_not_reproduce_are_rejected(bundle: Path, keys) -> None:
    def skew(m):
        m["golden"]["examples"][0]["probabilities"][0] += 0.01

    resign(bundle, keys[0], skew)
    assert code_of(bundle, keys[0] / "signing.pub") == BundleError.GOLDEN_FAILED


def test_cli_verify_gives_each_case_its_own_message_and_exit_code(
    built: Path, keys, tmp_path
) -> None:
    pub, other = str(keys[0] / "signing.pub"), str(keys[1] / "signing.pub")
    ok = subprocess.run(
        [EDGEOPS, "bundle", "verify", str(built), "-k", pub], capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok: plant-failure 1.0.0")

    cases = {}
    b1 = Path(shutil.copytree(built, tmp_path / "b1"))
    (b1 / "manifest.sig").unlink()
    cases["unsigned"] = (b1, pub)
    b2 = Path(shutil.copytree(built, tmp_path / "b2"))
    with open(b2 / "model.onnx", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    cases["tampered"] = (b2, pub)
    cases["wrong key"] = (built, other)
    results = {}
    for name, (path, key) in cases.items():
        proc = subprocess.run(
            [EDGEOPS, "bundle", "verify", str(path), "-k", key], capture_output=True, text=True
        )
        assert proc.returncode not in (0, 1), name
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: bundle rejected")
        results[name] = (proc.returncode, proc.stderr.splitlines()[0])
    assert len({code for code, _ in results.values()}) == 3
    assert len({msg for _, msg in results.values()}) == 3


def test_edge_package_imports_without_the_pipeline_stack(built: Path, keys) -> None:
    """The device side must run with numpy + onnxruntime + cryptography only."""
    script = f"""
import sys
from edgeops.edge.bundle import verify_bundle, load_public_key
import edgeops.edge.inference
vb = verify_bundle({str(built)!r}, load_public_key({str(keys[0] / "signing.pub")!r}))
heavy = {{"sklearn", "pandas", "skl2onnx", "prefect", "dvc", "great_expectations", "evidently", "onnx", "scipy"}}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print("LOADED", loaded)
sys.exit(1 if loaded else 0)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
