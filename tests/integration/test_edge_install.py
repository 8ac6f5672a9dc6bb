"""The edge agent runs from the base install alone: no [pipeline] extra, no scikit-learn.

A fresh venv (``uv venv``, Python 3.11) gets this checkout installed *without* the extra, pinned
to the versions in uv.lock (``uv export`` as a constraints file). None of the pipeline's heavy
libraries may be importable there. That venv's ``edgeops edge serve`` then takes a bundle built
by the full install, and must predict the bundle's golden examples as signed.

uv installs from its cache when it can (``--offline`` first) and from the package index
otherwise; with neither, the test fails and says so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import tests.agent_process as agent_process
from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, PREDICT_TOKEN, AgentProcess, http
from tests.bundles import make_bundle
from tests.uv_tools import must, run, uv_path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# the [pipeline] extra and what it pulls in: none of it belongs on a device
HEAVY = [
    "sklearn",
    "pandas",
    "skl2onnx",
    "prefect",
    "dvc",
    "great_expectations",
    "evidently",
    "onnx",
    "pyarrow",
    "sqlalchemy",
    "scipy",
]
#: the device's locked, hash-checked dependencies (the agent's only), exported from uv.lock
REQUIREMENTS = REPO / "src/edgeops/examples" / "requirements-agent.txt"
EXPORT = ["export", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt"]
#: the file's own header (how to use and regenerate it), above what uv export writes
REQUIREMENTS_HEADER_LINES = 6


def install_hashed(uv: str, python: Path, requirements: Path) -> subprocess.CompletedProcess:
    """What the device guide does with pip: every package pinned and checked against its hash."""
    # --no-config: this checkout's [tool.uv] (its dev overrides) is not the device's
    cmd = [uv, "pip", "install", "--no-config", "--python", str(python), "--require-hashes"]
    cmd += ["-r", str(requirements)]
    proc = run([*cmd, "--offline"])
    return proc if proc.returncode == 0 else run(cmd)


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A venv as a device gets it: the hashed requirements file, then the edgeops wheel alone."""
    uv = uv_path()
    tmp = tmp_path_factory.mktemp("base-install")
    venv = tmp / "venv"
    must(run([uv, "venv", "--python", "3.11", str(venv)]), "uv venv")
    python = venv / "bin" / "python"
    must(
        install_hashed(uv, python, REQUIREMENTS),
        "installing src/edgeops/examples/requirements-agent.txt",
    )
    dist = tmp / "dist"
    must(run([uv, "build", "--wheel", "--out-dir", str(dist), str(REPO)]), "uv build --wheel")
    (wheel,) = dist.glob("edgeops-*.whl")
    must(
        run([uv, "pip", "install", "--python", str(python), "--no-deps", str(wheel)]),
        "installing the edgeops wheel (--no-deps)",
    )
    must(run([uv, "pip", "check", "--python", str(python)]), "uv pip check")
    return venv


def test_the_device_requirements_are_uv_lock_s_and_a_tampered_hash_is_refused(
    tmp_path: Path,
) -> None:
    """src/edgeops/examples/requirements-agent.txt is exactly what `uv export` writes from uv.lock (regenerate:
    make requirements), and an install refuses a package whose hash differs."""
    uv = uv_path()
    exported = must(run([uv, *EXPORT, "--no-header"]), "uv export")
    body = REQUIREMENTS.read_text().split("\n", REQUIREMENTS_HEADER_LINES)[-1]
    assert body == exported, (
        "src/edgeops/examples/requirements-agent.txt is stale: make requirements"
    )
    lines = REQUIREMENTS.read_text().splitlines()
    assert not any(
        name in REQUIREMENTS.read_text() for name in ("scikit-learn==", "pandas==", "prefect==")
    )
    first = next(i for i, line in enumerate(lines) if "--hash=sha256:" in line)
    tampered = [
        *lines[:first],
        *[
            line.split("--hash=sha256:")[0]
            + "--hash=sha256:"
            + "0" * 64
            + (" \\" if line.endswith("\\") else "")
            if "--hash=sha256:" in line
            else line
            for line in lines[first : first + 3]
        ],
        *lines[first + 3 :],
    ]
    bad = tmp_path / "requirements.txt"
    bad.write_text("\n".join(tampered) + "\n")
    must(run([uv, "venv", "--python", "3.11", str(tmp_path / "venv")]), "uv venv")
    proc = install_hashed(uv, tmp_path / "venv/bin/python", bad)
    assert proc.returncode != 0 and "hash" in (proc.stdout + proc.stderr).lower(), proc.stderr


def test_base_install_has_none_of_the_pipeline_libraries(base_venv: Path) -> None:
    python = str(base_venv / "bin" / "python")
    code = (
        "import importlib.util, json, sys, edgeops, onnxruntime, fastapi\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps({'found': [m for m in heavy if importlib.util.find_spec(m)],\n"
        "                  'edgeops': edgeops.__file__, 'prefix': sys.prefix,\n"
        "                  'fastapi': fastapi.__version__, 'ort': onnxruntime.__version__}))\n"
    )
    out = json.loads(must(run([python, "-c", code]), "importing in the base venv"))
    assert out["found"] == [], f"the base install can import pipeline libraries: {out['found']}"
    # the installed copy, not this checkout's src/ on a path
    assert out["edgeops"].startswith(out["prefix"]), out
    assert out["fastapi"] == "0.150.0"
    assert out["ort"] == "1.31.1"
    # and the agent module imports nothing heavy either
    code = (
        "import sys, edgeops.cli, edgeops.edge.agent\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    assert must(run([python, "-c", code]), "importing the agent").strip() == "[]"


def test_base_install_serves_a_bundle_built_by_the_full_install(
    base_venv: Path, tmp_path: Path, signing_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(tmp_path / "bundle", signing_keys, "1.0.0", model="hist_gradient_boosting")
    manifest = json.loads((bundle / "manifest.json").read_text())
    state = tmp_path / "state"
    state.mkdir()
    # the base venv's console script, and nothing of this checkout on the import path
    monkeypatch.setattr(agent_process, "EDGEOPS", str(base_venv / "bin" / "edgeops"))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    # accept unknown categories: one golden example probes an unseen category on purpose
    config = {"unknown_categories": "accept"}
    with AgentProcess(state, signing_keys / "signing.pub", config) as agent:
        status, body = http(
            agent.url,
            "POST",
            "/v1/bundles",
            tar_bundle(bundle),
            {"Authorization": f"Bearer {DEPLOY_TOKEN}", "Content-Type": "application/gzip"},
        )
        assert status == 201, body
        examples = manifest["golden"]["examples"]
        status, body = http(
            agent.url,
            "POST",
            "/v1/predict",
            json.dumps({"rows": [e["inputs"] for e in examples]}).encode(),
            {"Authorization": f"Bearer {PREDICT_TOKEN}", "Content-Type": "application/json"},
        )
        assert status == 200, body
        answer = json.loads(body)
        assert answer["model_version"] == "1.0.0"
        classes = [str(c) for c in manifest["classes"]]
        assert len(answer["predictions"]) == len(examples) > 0
        for pred, ex in zip(answer["predictions"], examples, strict=True):
            assert pred["label"] == ex["label"]
            got = [pred["probabilities"][c] for c in classes]
            assert got == pytest.approx(ex["probabilities"], abs=1e-6), (ex["inputs"], got)
        assert agent.proc.poll() is None
