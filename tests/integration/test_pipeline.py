"""`dvc repro` in a fresh copy of the repository: the whole training pipeline, for real.

One module-scoped copy runs the demo pipeline once; the tests then change params, sources and
data the way a user would and check what DVC re-runs and what ends up on disk. The pages a person
opens from it (the validation report, `dvc plots show`) are rendered in headless Chromium with
every host but loopback unreachable; a request anywhere else fails the test (tests/browser.py).
Screenshots: test-artifacts/validation-report.png, test-artifacts/dvc-plots.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.browser import chromium_path, render
from tests.conftest import BIN, REPO, init_project, tool_env
from tests.prefect_stack import ran_stages

pytestmark = pytest.mark.integration

DVC = str(BIN / "dvc")
EDGEOPS = str(BIN / "edgeops")
ARTIFACTS = REPO / "test-artifacts"
# every plot of dvc.yaml drawn by Vega (canvas by default, svg if configured)
PLOTS_DRAWN = (
    "document.querySelectorAll('.vega-embed').length === 3 && "
    "document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length === 3"
)


def sh(args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None):
    import subprocess

    proc = subprocess.run(
        args, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def set_params(repo: Path, **changes) -> None:
    """Change params.yaml: keys are dotted paths."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory) -> Path:
    repo = init_project(tmp_path_factory.mktemp("demo"))
    set_params(repo, **{"ingest.simulator.rows": 6000})
    sh(["git", "commit", "-qam", "smaller demo for tests"], repo)
    first = sh([DVC, "repro"], repo)
    assert ran_stages(first.stdout) == [
        "ingest",
        "validate",
        "split",
        "train",
        "evaluate",
        "export",
        "bundle",
    ]
    return repo


def test_repro_leaves_model_metrics_and_validation_summary(demo_repo: Path) -> None:
    assert (demo_repo / "models/model.joblib").stat().st_size > 0
    metrics = json.loads((demo_repo / "reports/metrics.json").read_text())
    for key in ("roc_auc", "pr_auc", "f1", "balanced_accuracy"):
        assert (
            0.5 < metrics[key] <= 1.0
            if key in ("roc_auc", "balanced_accuracy")
            else 0 <= metrics[key] <= 1
        )
    assert metrics["roc_auc"] > 0.85  # the simulator's failure mechanisms are learnable
    summary = json.loads((demo_repo / "reports/validation/summary.json").read_text())
    assert summary["success"] is True and summary["failures"] == []
    assert (demo_repo / "reports/validation/report.html").is_file()
    assert not (demo_repo / "reports/validation/data_docs").exists()  # GX Data Docs need a CDN
    for plot in ("confusion", "roc", "pr"):
        assert (demo_repo / f"reports/plots/{plot}.csv").is_file()


def test_the_validation_report_renders_offline(demo_repo: Path) -> None:
    """One self-contained page: the verdict, the dataset, every expectation; nothing but itself
    loaded (render fails on any request off loopback)."""
    assert chromium_path(), "Debian's chromium is needed (.ci/run installs it)"
    summary = json.loads((demo_repo / "reports/validation/summary.json").read_text())
    page = demo_repo / "reports/validation/report.html"
    expect = [
        "Data validation PASSED",
        f"all {len(summary['expectations'])} expectations met",
        "data/raw/dataset.parquet",
        f"{summary['rows']:,} ({len(summary['columns'])} columns)",
        *{e["expectation"] for e in summary["expectations"]},
    ]
    requests: list[dict] = []
    text = render(page.as_uri(), ARTIFACTS / "validation-report.png", expect, requests=requests)
    assert [r["url"] for r in requests] == [page.as_uri()]
    assert text.count("passed") == len(summary["expectations"])  # one row each, none failed
    assert "FAILED" not in text


def test_dvc_plots_show_renders_offline(demo_repo: Path) -> None:
    """`dvc plots show` (the committed template, .dvc/plots/offline.html): Vega inlined, every
    plot drawn with no network; the page names no script or style elsewhere."""
    assert chromium_path(), "Debian's chromium is needed (.ci/run installs it)"
    sh([DVC, "plots", "show"], demo_repo)
    page = demo_repo / "dvc_plots/index.html"
    html = page.read_text()
    assert re.findall(r"<script[^>]*\bsrc\s*=", html) == []
    # the confusion matrix is drawn from counts (a row per pair of classes, not per test row)
    assert '"aggregate": [{"op": "sum", "field": "count", "as": "xy_count"}]' in html
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html) == []
    requests: list[dict] = []
    render(page.as_uri(), ARTIFACTS / "dvc-plots.png", [], ready=PLOTS_DRAWN, requests=requests)
    assert [r["url"] for r in requests] == [page.as_uri()]


def test_repro_produces_a_bundle_that_verifies_with_exact_parity(demo_repo: Path) -> None:
    import os

    export = json.loads((demo_repo / "reports/export.json").read_text())
    for key in ("parity_test", "parity_edge_cases"):
        assert export[key]["max_abs_diff"] <= 1e-5 and export[key]["label_agreement"] == 1.0
    assert export["latency"]["speedup_1_row"] > 1.0
    pub = Path(os.environ["EDGEOPS_KEY_DIR"]) / "signing.pub"
    out = sh([EDGEOPS, "bundle", "verify", "models/bundle", "--public-key", str(pub)], demo_repo)
    assert out.stdout.startswith("ok: plant-failure")


def test_dvc_metrics_hold_no_latency(demo_repo: Path) -> None:
    """Latency is noise between runs: it stays in reports/export.json, out of `dvc metrics`."""
    shown = json.loads(sh([DVC, "metrics", "show", "--json"], demo_repo).stdout)
    files = next(iter(shown.values()))["data"]
    assert set(files) == {"reports/metrics.json", "reports/parity.json"}
    assert "latency" not in json.dumps(files)
    assert files["reports/parity.json"]["data"]["parity_test"]["label_agreement"] == 1.0


def test_stages_run_the_installed_edgeops_command(demo_repo: Path) -> None:
    """dvc.yaml's stages call `edgeops stage NAME`: with nothing on PATH but the installation's
    bin folder (no other python), DVC's stage runs; the project holds no edgeops code."""
    env = {k: v for k, v in tool_env().items() if k != "VIRTUAL_ENV"}
    env["PATH"] = f"{BIN}{os.pathsep}/usr/bin:/bin"
    proc = sh([DVC, "repro", "-f", "-s", "ingest"], demo_repo, env=env)
    assert ran_stages(proc.stdout) == ["ingest"]
    assert "edgeops stage ingest" in proc.stdout
    assert not list(demo_repo.rglob("*.py")) or all(
        p.parent.name == "flows" for p in demo_repo.rglob("*.py") if ".dvc" not in p.parts
    )


def test_second_repro_has_nothing_to_do(demo_repo: Path) -> None:
    out = sh([DVC, "repro"], demo_repo).stdout
    assert ran_stages(out) == []
    assert "Data and pipelines are up to date" in out


def test_changing_train_params_reruns_only_train_and_what_follows(demo_repo: Path) -> None:
    set_params(demo_repo, **{"train.hist_gradient_boosting.max_iter": 50})
    out = sh([DVC, "repro"], demo_repo).stdout
    assert ran_stages(out) == ["train", "evaluate", "export", "bundle"]
    sh(["git", "checkout", "params.yaml"], demo_repo)
    sh([DVC, "repro"], demo_repo)  # back to the committed params (from the run cache)


def test_experiment_with_another_model_and_metrics_show(demo_repo: Path) -> None:
    sh(["git", "add", "dvc.lock"], demo_repo)
    sh(["git", "commit", "-qm", "lock"], demo_repo)
    out = sh([DVC, "exp", "run", "--temp", "-S", "train.model=random_forest"], demo_repo)
    assert "Ran experiment" in out.stdout + out.stderr
    shown = sh([DVC, "exp", "show", "--json"], demo_repo).stdout
    assert "random_forest" in shown
    metrics = sh([DVC, "metrics", "show"], demo_repo).stdout
    assert "roc_auc" in metrics and "reports/metrics.json" in metrics


def penguins_csv() -> Path:
    """The Palmer penguins table (a dataset we did not design): numeric and text columns,
    missing values, three species as the target."""
    import palmerpenguins

    return Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


def stage_pools(repo: Path, stage: str) -> dict[str, dict]:
    entry = json.loads((repo / "reports/resources.json").read_text())["stages"][stage]
    assert entry["wall_s"] > 0 and entry["cpu_s"] > 0 and entry["peak_rss_mb"] > 50, entry
    return {pool["api"]: pool for pool in entry["thread_pools"]}


def test_every_stage_records_its_resources_and_runs_with_the_thread_setting(
    demo_repo: Path, tmp_path: Path
) -> None:
    from edgeops.resources import available_cores

    recorded = json.loads((demo_repo / "reports/resources.json").read_text())["stages"]
    assert set(recorded) == {"ingest", "validate", "split", "train", "evaluate", "export", "bundle"}
    cores = available_cores()
    assert {p["threads"] for p in stage_pools(demo_repo, "train").values()} == {cores}
    assert stage_pools(demo_repo, "export")["onnxruntime"]["spinning"] is False

    # the thread setting is not a DVC param: changing it re-runs nothing
    set_params(demo_repo, **{"resources.threads": 1})
    try:
        assert ran_stages(sh([DVC, "repro"], demo_repo).stdout) == []
        # the stages themselves (outputs beside, DVC's state untouched): every pool has 1 thread
        train = [
            str(BIN / "edgeops"),
            "stage",
            "train",
            "--data",
            "data/prepared/train.parquet",
            "--model",
            str(tmp_path / "model.joblib"),
            "--report",
            str(tmp_path / "train.json"),
        ]
        sh(train, demo_repo)
        pools = stage_pools(demo_repo, "train")
        assert pools["openmp/openmp"]["threads"] == 1  # scikit-learn's HistGradientBoosting
        assert {p["threads"] for p in pools.values()} == {1}, pools
        export = [
            str(BIN / "edgeops"),
            "stage",
            "export",
            "--model",
            str(tmp_path / "model.joblib"),
            "--data",
            "data/prepared/test.parquet",
            "--onnx",
            str(tmp_path / "model.onnx"),
            "--report",
            str(tmp_path / "e.json"),
            "--metrics",
            str(tmp_path / "p.json"),
        ]
        sh(export, demo_repo)
        pools = stage_pools(demo_repo, "export")
        assert pools["onnxruntime"] == {
            "api": "onnxruntime",
            "library": "onnxruntime",
            "threads": 1,
            "spinning": False,
        }
        assert {p["threads"] for p in pools.values()} == {1}, pools
        # auto: the cores the process is given (a worker pinned to one core by its unit)
        set_params(demo_repo, **{"resources.threads": "auto"})
        sh(["taskset", "-c", "0", *train], demo_repo)
        assert {p["threads"] for p in stage_pools(demo_repo, "train").values()} == {1}
        # a bad value: one clear message, no traceback
        set_params(demo_repo, **{"resources.threads": 0})
        bad = sh(train, demo_repo, check=False)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
        assert "resources.threads is 0" in bad.stderr and "fix:" in bad.stderr
    finally:
        set_params(demo_repo, **{"resources.threads": "auto"})


def test_csv_and_sql_sources_give_the_same_metrics(tmp_path_factory) -> None:
    import pandas as pd

    repo = init_project(tmp_path_factory.mktemp("penguins"))
    csv_path = repo / "data/external/penguins.csv"
    shutil.copy(penguins_csv(), csv_path)

    # a person asks for a schema proposal, reviews it, and puts it in params.yaml
    proposal = sh([EDGEOPS, "schema", "infer", str(csv_path), "--target", "species"], repo).stdout
    schema = yaml.safe_load(proposal)
    assert {c["name"] for c in schema["columns"]} >= {"island", "sex", "bill_length_mm"}
    set_params(
        repo,
        **{
            "ingest.source": "csv",
            "ingest.csv.path": "data/external/penguins.csv",
            "validate.schema": schema,
            "split.test_size": 0.3,
        },
    )
    sh([DVC, "repro"], repo)
    csv_metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(csv_metrics["per_class"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert csv_metrics["balanced_accuracy"] > 0.9

    # the same rows in an SQLite table, through the sql source
    db = repo / "data/external/penguins.db"
    with sqlite3.connect(db) as conn:
        pd.read_csv(csv_path).to_sql("penguins", conn, index=False)
    csv_path.unlink()  # the csv folder no longer matters
    set_params(
        repo,
        **{
            "ingest.source": "sql",
            "ingest.sql.url": "sqlite:///data/external/penguins.db",
            "ingest.sql.table": "penguins",
        },
    )
    out = sh([DVC, "repro"], repo).stdout
    assert "ingest" in ran_stages(out)
    sql_metrics = json.loads((repo / "reports/metrics.json").read_text())
    for key in ("roc_auc", "pr_auc", "f1", "balanced_accuracy", "accuracy", "per_class"):
        assert sql_metrics[key] == csv_metrics[key], key


@pytest.mark.parametrize(
    ("damage", "column", "count"),
    [
        ("out_of_range", "torque_nm", 7),
        ("missing_column", "vibration_mm_s", None),
        ("unknown_category", "machine_type", 5),
    ],
)
def test_bad_data_stops_at_validate_and_writes_no_model(
    tmp_path_factory, damage: str, column: str, count: int | None
) -> None:

    from edgeops.sources.simulator import simulate

    repo = init_project(tmp_path_factory.mktemp(damage))
    df = simulate(rows=3000, seed=7)
    if damage == "out_of_range":
        df.loc[df.index[:count], "torque_nm"] = 999.0
    elif damage == "missing_column":
        df = df.drop(columns=[column])
    else:
        df.loc[df.index[:count], "machine_type"] = "XL"
    df.to_csv(repo / "data/external/plant.csv", index=False)
    set_params(repo, **{"ingest.source": "csv", "ingest.csv.path": "data/external/plant.csv"})

    proc = sh([DVC, "repro"], repo, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "failed to reproduce 'validate'" in output
    assert column in output
    if count is not None:
        assert f"{count:,} of 3,000 rows" in output
    assert "Traceback" not in output
    assert not (repo / "models/model.joblib").exists()
    assert not (repo / "data/prepared/train.parquet").exists()
