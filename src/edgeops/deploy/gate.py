"""The champion/challenger gate: a new bundle reaches devices only if it is at least as good.

The challenger is the new bundle; the champion is the registry's production version: decided by
an earlier gate and, in approval mode, a person's recorded approval, never "what a device
happens to run" (a version on a device without that record is a half-finished rollout). It is
downloaded from an agent that still has it. Both are scored with onnxruntime on the holdout
(``deploy.test_data``: the source's rows only, which no label from the field can move), a binary
target's metrics about the positive class in the challenger's manifest. The held-out production
rows (``deploy.production_test_data``) are scored too, as a figure apart: they inform, they never
decide. Promote only if

- the challenger beats a trivial baseline on that split by the margins in ``over_baseline``
  (a prior/majority-class dummy: balanced accuracy 1/k, ROC AUC 0.5, whatever the problem),
- every absolute floor in ``floors`` holds (optional), and
- its primary metric is >= champion - tolerance (skipped when there is no champion yet).

A rejected challenger is a normal outcome (exit code 3), not a crash.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.deploy.targets import AgentClient, AgentError, Target
from edgeops.edge.bundle import BundleError, VerifiedBundle, verify_bundle
from edgeops.edge.inference import FLOAT, columns_to_feeds
from edgeops.errors import EdgeopsError
from edgeops.features import category_str

if TYPE_CHECKING:
    import pandas as pd

EXIT_REJECTED = 3
#: margins over the baseline when params say nothing (``over_baseline: {}`` turns them off)
DEFAULT_OVER_BASELINE = {"balanced_accuracy": 0.1, "roc_auc": 0.1}
#: the baseline: DummyClassifier(strategy="prior") fitted on the test labels
BASELINE_STRATEGY = "prior"
BASELINE_NAME = "majority-class dummy"
#: metrics a floor or a margin may name (what :func:`edgeops.stages.evaluate.scores` computes)
GATED_METRICS = ("roc_auc", "pr_auc", "f1", "balanced_accuracy", "accuracy")
#: rows scored at once (their features become Python values, as the device's requests are)
CHUNK_ROWS = 100_000


def verify_local(bundle_dir: str | Path, public_key: Any) -> VerifiedBundle:
    """Verify a bundle on this host exactly as the device will (or explain why not).

    The model scores with this process's thread setting (``resources.threads``), not spinning."""
    from edgeops.resources import current_threads

    try:
        return verify_bundle(bundle_dir, public_key, threads=current_threads(), spin=False)
    except BundleError as exc:
        raise EdgeopsError(
            f"bundle {bundle_dir} rejected ({exc.name}): {exc.message}",
            fix=exc.fix or "rebuild it: dvc repro",
        ) from None


def score(
    bundle: VerifiedBundle, df: pd.DataFrame, target: str, positive: Any = None
) -> dict[str, Any]:
    """Score a verified bundle's ONNX model on a raw DataFrame with onnxruntime; a binary
    target's F1, ROC AUC and PR AUC are about ``positive``, default the manifest's
    ``positive_class`` (a bundle without one: the second class)."""
    from edgeops.stages.evaluate import scores

    if positive is None:
        positive = bundle.manifest.get("positive_class")
    proba = predict_proba(bundle, df)
    return scores(df[target].to_numpy(), proba, list(bundle.model.classes), positive)


def baseline(y_true: Any, classes: list[Any], positive: Any = None) -> dict[str, Any]:
    """The trivial model's metrics on the same labels: ``DummyClassifier(strategy="prior")``
    fitted on ``y_true`` (every row gets the class shares as probabilities, the majority class
    as label), scored like a bundle. Balanced accuracy is 1/k, ROC AUC 0.5, PR AUC the share.

        >>> baseline(["a", "a", "b"], ["a", "b"])["balanced_accuracy"]
        0.5
    """
    import numpy as np
    from sklearn.dummy import DummyClassifier

    from edgeops.stages.evaluate import scores

    y_true = np.asarray(y_true)
    dummy = DummyClassifier(strategy=BASELINE_STRATEGY).fit(np.zeros((len(y_true), 1)), y_true)
    fitted = dummy.predict_proba(np.zeros((1, 1)))[0]
    share = {str(c): float(p) for c, p in zip(dummy.classes_, fitted, strict=True)}
    proba = np.tile([share.get(str(c), 0.0) for c in classes], (len(y_true), 1))
    return scores(y_true, proba, list(classes), positive)


def predict_proba(bundle: VerifiedBundle, df: pd.DataFrame) -> Any:
    """Class probabilities (columns = the bundle's classes) of raw rows, as the device computes
    them: the rows go through the device's own conversion :data:`CHUNK_ROWS` at a time (as
    Python values, like a request's JSON), so memory is one chunk's, whatever the test split's."""
    import numpy as np

    missing = [s.name for s in bundle.model.inputs if s.name not in df.columns]
    if missing:
        raise EdgeopsError(f"{bundle.version} needs columns {missing} that the data lacks")
    if len(df) <= CHUNK_ROWS:
        return _predict_chunk(bundle, df)
    return np.concatenate(
        [_predict_chunk(bundle, df.iloc[i : i + CHUNK_ROWS]) for i in range(0, len(df), CHUNK_ROWS)]
    )


def _predict_chunk(bundle: VerifiedBundle, df: pd.DataFrame) -> Any:
    columns = {}
    for s in bundle.model.inputs:
        col = df[s.name]
        columns[s.name] = (
            col.astype("float64").tolist() if s.dtype == FLOAT else [category_str(v) for v in col]
        )
    columns = {
        k: [None if (isinstance(v, float) and v != v) else v for v in vals]
        for k, vals in columns.items()
    }
    _, proba = bundle.model.predict_feeds(columns_to_feeds(columns, bundle.model.inputs))
    return proba


def decide(
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    cfg: dict[str, Any],
    base: dict[str, Any] | None = None,
) -> tuple[bool, str]:
    """(promote?, reason) from the metric sets and the gate params.

    ``base``: the baseline's metrics on the same test rows (:func:`baseline`), which the
    challenger must beat by ``cfg["over_baseline"]`` (metric -> margin); required if margins are
    set. ``cfg["floors"]``: absolute minimums. With a champion, also ``primary_metric`` >=
    champion - ``tolerance``.

        >>> decide({"roc_auc": 0.55}, None, {"over_baseline": {"roc_auc": 0.1}},
        ...        {"roc_auc": 0.5, "n_test": 812})[1]
        'not clearly better than the baseline: roc_auc 0.5500 < baseline 0.5000 + margin 0.1 (majority-class dummy on the same 812 test rows)'
    """
    primary = cfg.get("primary_metric", "roc_auc")
    tol = float(cfg.get("tolerance", 0.0))
    floors, margins = limits(cfg)
    failed = []
    below_floor = []
    for name, floor in floors.items():
        value = challenger.get(name)
        if value is None:
            below_floor.append(f"{name} cannot be computed on these test rows (floor {floor})")
        elif not value >= floor:
            below_floor.append(f"{name} {value:.4f} < floor {floor}")
    if below_floor:
        failed.append("below the absolute floors: " + "; ".join(below_floor))
    if margins and base is None:
        raise ValueError("decide: over_baseline margins are set but no baseline metrics given")
    below_base = []
    for name, margin in margins.items():
        value, ref = challenger.get(name), (base or {}).get(name)
        if value is None or ref is None:
            below_base.append(f"{name} cannot be computed on these test rows")
        elif not value >= round(ref + margin, 6):  # metrics are rounded to 6 places
            below_base.append(f"{name} {value:.4f} < baseline {ref:.4f} + margin {margin}")
    if below_base:
        n = (base or {}).get("n_test", "?")
        failed.append(
            f"not clearly better than the baseline: {'; '.join(below_base)} "
            f"({BASELINE_NAME} on the same {n} test rows)"
        )
    if failed:
        return False, "; ".join(failed)
    if champion is None:
        shown = f"{primary} {challenger[primary]:.4f}" if primary in challenger else primary
        if base is not None and primary in base:
            shown += f" (baseline {base[primary]:.4f})"
        return True, f"first deployment: {shown}; every margin over the baseline and floor holds"
    ch, cp = challenger[primary], champion[primary]
    if ch >= cp - tol:
        return True, f"{primary} {ch:.4f} >= champion {cp:.4f} - tolerance {tol}"
    return False, f"{primary} {ch:.4f} < champion {cp:.4f} - tolerance {tol}"


def limits(cfg: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(floors, margins over the baseline) from the gate params, checked: known metric names,
    numbers. ``over_baseline`` missing: :data:`DEFAULT_OVER_BASELINE`; empty or null: none."""
    margins = cfg.get("over_baseline", DEFAULT_OVER_BASELINE)
    out = []
    for key, raw in (("floors", cfg.get("floors")), ("over_baseline", margins)):
        if raw is not None and not isinstance(raw, dict):
            raise EdgeopsError(
                f"deploy.gate.{key} must map metric names to numbers, not {raw!r}",
                fix="e.g. {roc_auc: 0.1}, or {} for none",
            )
        checked = {}
        for name, v in (raw or {}).items():
            if name not in GATED_METRICS:
                raise EdgeopsError(
                    f"deploy.gate.{key}: unknown metric {name!r}",
                    fix=f"use one of {', '.join(GATED_METRICS)}",
                )
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise EdgeopsError(f"deploy.gate.{key}.{name} must be a number, not {v!r}")
            checked[name] = float(v)
        out.append(checked)
    return out[0], out[1]


def active_versions(targets: list[Target]) -> dict[str, str | None]:
    """What each target actually runs (raises AgentError for an unreachable one)."""
    out = {}
    for t in targets:
        active = AgentClient(t).status().get("active")
        out[t.name] = active["version"] if active else None
    return out


def fetch_bundle(
    targets: list[Target], version: str, public_key: Any, into: Path
) -> VerifiedBundle:
    """Download ``version`` from the first target that has it and verify it here."""
    last: Exception | None = None
    for t in targets:
        try:
            data = AgentClient(t).download(version)
        except AgentError as exc:
            last = exc
            continue
        dest = into / version
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
            for m in tf.getmembers():
                if m.isfile() and "/" not in m.name and not m.name.startswith("."):
                    (dest / m.name).write_bytes(tf.extractfile(m).read())  # type: ignore[union-attr]
        return verify_local(dest, public_key)
    raise EdgeopsError(
        f"could not fetch the champion {version} from any target: {last}",
        fix=f"the production version {version} is on no device any more (an agent keeps "
        "keep_versions): put it back on one (`git checkout <model>/{version}`, `dvc pull`, "
        "`edgeops deploy --target NAME --force --reason ...` of that bundle), or, to compare "
        "with no champion on purpose, deploy with --force",
    )


def run_gate(
    challenger: VerifiedBundle,
    targets: list[Target],
    registry_production: str | None,
    df: pd.DataFrame,
    target_col: str,
    cfg: dict[str, Any],
    public_key: Any,
    replace_model: bool = False,
    production_df: pd.DataFrame | None = None,
    registered: Collection[str] = (),
) -> dict[str, Any]:
    """Score challenger and champion (the registry's production version) on the holdout ``df``;
    return the report (``promote``, ``reason``, figures). ``production_df``: the held-out
    production rows, scored as a figure apart. ``registered``: the versions the registry knows.

    ``replace_model``: the targets run another model, which is no champion to compare with."""
    actives = active_versions(targets)
    champion_version = None if replace_model else registry_production
    notes = (
        ["replacing another model: no champion, baseline and floors only"] if replace_model else []
    )
    others = {t: v for t, v in actives.items() if v and v != champion_version}
    # the targets run versions the registry does not know, and no production version is
    # recorded: the records were deleted or replaced; the gate would judge on the baseline alone
    # (a known version without a production record is a first rollout that never finished)
    unknown = None
    if champion_version and others:
        notes.append(
            f"targets run other versions than the production {champion_version}: {others}; the "
            "champion is the registry's production version, never what a device runs"
        )
    elif not champion_version and not replace_model and set(others.values()) - set(registered):
        unknown = (
            f"the targets run {sorted(set(others.values()))}, but the registry records no "
            "production version (deleted or replaced deploy records?): the champion is unknown"
        )
    floors, margins = limits(cfg)
    positive = challenger.manifest.get("positive_class")
    base = baseline(df[target_col].to_numpy(), list(challenger.model.classes), positive)
    report: dict[str, Any] = {
        "challenger": {"version": challenger.version},
        "champion": {"version": champion_version},
        "targets": actives,
        "primary_metric": cfg.get("primary_metric", "roc_auc"),
        "positive_class": base.get("positive_class"),  # binary targets; None: macro averages
        "tolerance": cfg.get("tolerance", 0.0),
        "floors": floors,
        "baseline": {
            "strategy": BASELINE_STRATEGY,
            "description": f"{BASELINE_NAME}: DummyClassifier(strategy={BASELINE_STRATEGY!r}) "
            "fitted on the test labels (class shares as probabilities, the majority as label)",
            "metrics": base,
            "margins": margins,
            "required": {k: round(base[k] + m, 6) for k, m in margins.items() if k in base},
        },
        "test_rows": len(df),
        "notes": notes,
    }
    report["challenger"]["metrics"] = score(challenger, df, target_col)
    if unknown:
        report.update(
            promote=False,
            reason=f"{unknown}; restore deploy/ from git, or deploy "
            "with --force to go on without a champion (recorded)",
        )
        return report
    production = _production_rows(production_df, target_col)
    if production is not None:
        report["production"] = {
            "rows": len(production),
            "note": "held-out labelled production rows: a figure apart, the verdict rests on "
            "the holdout",
            "challenger": score(challenger, production, target_col),
        }
    champion_metrics = None
    if champion_version == challenger.version:
        n = sum(v == champion_version for v in actives.values())
        report.update(
            promote=True,
            already_deployed=True,
            reason=f"{challenger.version} is the production version already ({n} of "
            f"{len(actives)} targets run it)",
        )
        return report
    if champion_version:
        with tempfile.TemporaryDirectory(prefix="edgeops-champion-") as tmp:
            champ = fetch_bundle(targets, champion_version, public_key, Path(tmp))
            try:
                # the challenger's positive class: F1 and PR AUC must mean the same for both
                champion_metrics = score(champ, df, target_col, report["positive_class"])
                if production is not None:
                    report["production"]["champion"] = score(
                        champ, production, target_col, report["positive_class"]
                    )
            except EdgeopsError as exc:
                notes.append(
                    f"champion cannot be scored on the current data ({exc.problem}); "
                    "baseline and floors only"
                )
        report["champion"]["metrics"] = champion_metrics
    promote, reason = decide(report["challenger"]["metrics"], champion_metrics, cfg, base)
    report.update(promote=promote, reason=reason)
    return report


def _production_rows(df: pd.DataFrame | None, target_col: str) -> pd.DataFrame | None:
    """The held-out production rows that can be scored (a label of the target), or None."""
    if df is None or target_col not in df.columns:
        return None
    df = df[df[target_col].notna()]
    return df if len(df) else None
