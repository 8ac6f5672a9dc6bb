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
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tests.agent_process as agent_process
from edgeops.edge.store import tar_bundle
from tests.agent_process import DEPLOY_TOKEN, PREDICT_TOKEN, AgentProcess, http
from tests.bundles import make_bundle

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# the [pipeline] extra and what it pulls in: none of it belongs on a device
HEAVY = ["sklearn", "pandas", "skl2onnx", "prefect", "dvc", "great_expectations", "evidently",
         "onnx", "pyarrow", "sqlalchemy", "scipy"]  # fmt: skip
NETWORK_HINT = (
    "this test installs the package into a fresh venv with uv: it needs uv's cache or the "
    "package index (is the network available?)"
)


def uv_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(DO_NOT_TRACK="1", UV_NO_PROGRESS="1")
    return env


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=REPO, env=uv_env(), capture_output=True, text=True, timeout=timeout
    )


def must(proc: subprocess.CompletedProcess, what: str) -> str:
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}): {NETWORK_HINT}\n"
                    f"$ {' '.join(map(str, proc.args))}\n{proc.stdout}\n{proc.stderr}")  # fmt: skip
    return proc.stdout


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A venv holding edgeops without the [pipeline] extra, at the versions uv.lock pins."""
    # the dev group installs uv into the project venv, so a fresh CI machine has it too
    beside = Path(sys.executable).parent / "uv"
    uv = str(beside) if beside.is_file() else shutil.which("uv")
    if not uv:
        pytest.fail("uv is not in the venv nor on PATH: `make venv` installs it (dev group)")
    tmp = tmp_path_factory.mktemp("base-install")
    venv = tmp / "venv"
    constraints = tmp / "constraints.txt"
    constraints.write_text(must(run([uv, "export", "--frozen", "--no-dev", "--no-hashes",
                                     "--no-emit-project"]), "uv export"))  # fmt: skip
    must(run([uv, "venv", "--python", "3.11", str(venv)]), "uv venv")
    python = venv / "bin" / "python"
    # --refresh-package: always build this checkout, never a cached wheel of an older one
    install = [uv, "pip", "install", "--python", str(python), "--constraints", str(constraints),
               "--refresh-package", "edgeops", str(REPO)]  # fmt: skip
    proc = run([*install, "--offline"])
    if proc.returncode != 0:
        proc = run(install)
    must(proc, "uv pip install (base, without [pipeline])")
    return venv


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
        status, body = http(agent.url, "POST", "/v1/bundles", tar_bundle(bundle),
                            {"Authorization": f"Bearer {DEPLOY_TOKEN}", "Content-Type": "application/gzip"})  # fmt: skip
        assert status == 201, body
        examples = manifest["golden"]["examples"]
        status, body = http(agent.url, "POST", "/v1/predict",
                            json.dumps({"rows": [e["inputs"] for e in examples]}).encode(),
                            {"Authorization": f"Bearer {PREDICT_TOKEN}", "Content-Type": "application/json"})  # fmt: skip
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
