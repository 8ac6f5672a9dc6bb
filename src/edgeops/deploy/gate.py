"""The champion/challenger gate: a new bundle reaches devices only if it is at least as good.

The challenger is the new bundle; the champion is the registry's production version: decided by
an earlier gate and, in approval mode, a person's recorded approval, never "what a device
happens to run" (a version on a device without that record is a half-finished rollout). It is
downloaded from an agent that still has it. Both are scored with onnxruntime, a binary target's
metrics about the positive class in the challenger's manifest, on three sets of rows nobody
trained on:

- **source**: the holdout of the source's rows (``deploy.test_data``), which no label from the
  field enters;
- **production**: the held-out labelled production rows (``deploy.production_test_data``): the
  devices' new conditions, where a retrain on a drift is meant to help;
- **all**: both together.

Promote only if

- the challenger beats a trivial baseline on the **source** rows by the margins in
  ``over_baseline`` (a prior/majority-class dummy: balanced accuracy 1/k, ROC AUC 0.5, whatever
  the problem),
- every absolute floor in ``floors`` holds on the **source** rows (optional), and
- with a champion: on **each** set, the primary metric and every guard metric
  (``guard_metrics``, balanced accuracy by default) are >= champion - ``tolerance``. A model
  better on one metric (ROC AUC) can be worse at its decisions (balanced accuracy), and a model
  better over the whole split can be worse on the new regime alone: either is refused.

A set with fewer than ``min_rows`` rows is not judged (its figures are noise), nor is a metric
undefined on a set (ROC AUC, PR AUC, F1 when a class is absent, e.g. no snow in summer); the
report says which and why. Balanced accuracy on a set without some class averages the recall of
the classes present (an absent class is named, never counted as 0).

Why field labels may decide here: a device's labels can lie. Upstream, ``ingest`` keeps a lying
device's rows out (quarantine, a cap per device: ``sources/field_labels.py``), and whatever
passes can only make this gate stricter: the baseline and floors are checked on the source rows
alone, and the challenger must also hold against the champion on them, so no field label can
promote a model the source's holdout would refuse; at worst it refuses a challenger.

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
#: the sets the champion comparison covers, in the report's order, and how messages name them
SETS = ("source", "production", "all")
SET_TITLES = {"source": "the source's rows", "production": "the production rows", "all": "all rows"}
#: judged on every set besides ``evaluate.primary_metric`` when params say nothing: a ranking
#: metric (ROC AUC) can rise while the decisions get worse; balanced accuracy sees every class
DEFAULT_GUARD_METRICS = ("balanced_accuracy",)
#: a set with fewer rows is not judged when params say nothing (``deploy.gate.min_rows``)
DEFAULT_MIN_ROWS = 30
#: metrics undefined on a set where some class is absent (see :func:`undefined_reason`)
NEED_EVERY_CLASS = ("roc_auc", "pr_auc")
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
    sets: dict[str, dict[str, Any]] | None = None,
) -> tuple[bool, str]:
    """(promote?, reason) from the metric sets and the gate params.

    ``challenger``, ``champion``: the metrics on the source's holdout (:func:`score`).
    ``base``: the baseline's metrics on the same rows (:func:`baseline`), which the challenger
    must beat by ``cfg["over_baseline"]`` (metric -> margin); required if margins are set.
    ``cfg["floors"]``: absolute minimums on the same rows. With a champion, every set of
    :func:`judge_sets` (``sets``, name -> ``{"challenger": metrics, "champion": metrics}``;
    default: the source's rows alone) must hold the primary and guard metrics >= champion -
    ``tolerance``.

        >>> decide({"roc_auc": 0.55}, None, {"over_baseline": {"roc_auc": 0.1}},
        ...        {"roc_auc": 0.5, "n_test": 812})[1]
        'not clearly better than the baseline: roc_auc 0.5500 < baseline 0.5000 + margin 0.1 (majority-class dummy on the same 812 test rows)'
    """
    primary = cfg.get("primary_metric", "roc_auc")
    tol = comparison(cfg)[1]
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
    if sets is None:
        sets = {"source": {"challenger": challenger, "champion": champion}}
    judged = judge_sets(sets, cfg)
    worse, held, skipped = [], [], []
    for name, got in judged.items():
        title = SET_TITLES.get(name, name)
        ok = []
        for metric, f in got["judged"].items():
            if f["verdict"] == "worse":
                worse.append(
                    f"worse on {title}: {metric} {f['challenger']:.4f} < champion "
                    f"{f['champion']:.4f} - tolerance {tol}"
                )
            elif f["verdict"] == "ok":
                ok.append(f"{metric} {f['challenger']:.4f} vs {f['champion']:.4f}")
            else:
                skipped.append(f"{title} {metric} ({f['why']})")
        if ok:
            held.append(f"{title}: {', '.join(ok)}")
    if worse:
        return False, "; ".join(worse)
    if not held:
        return False, (
            "nothing to compare with the champion on: " + "; ".join(skipped)
            if skipped
            else "nothing to compare with the champion on"
        ) + " (more test rows, or a lower deploy.gate.min_rows)"
    reason = f"no worse than the champion (tolerance {tol}) on any set: {'; '.join(held)}"
    if skipped:
        reason += f"; not judged: {'; '.join(skipped)}"
    return True, reason


def comparison(cfg: dict[str, Any]) -> tuple[tuple[str, ...], float, int]:
    """(metrics compared with the champion, tolerance, min_rows) from the gate params, checked.

    The metrics: ``primary_metric`` then ``guard_metrics`` (default
    :data:`DEFAULT_GUARD_METRICS`; ``[]`` for the primary metric alone)."""
    primary = cfg.get("primary_metric", "roc_auc")
    guards = cfg.get("guard_metrics", list(DEFAULT_GUARD_METRICS))
    guards = [] if guards is None else guards
    if isinstance(guards, str) or not isinstance(guards, list | tuple):
        raise EdgeopsError(
            f"deploy.gate.guard_metrics must be a list of metric names, not {guards!r}",
            fix="e.g. [balanced_accuracy], or [] for the primary metric alone",
        )
    for name in [primary, *guards]:
        if name not in GATED_METRICS:
            where = "evaluate.primary_metric" if name == primary else "deploy.gate.guard_metrics"
            raise EdgeopsError(
                f"{where}: unknown metric {name!r}", fix=f"use one of {', '.join(GATED_METRICS)}"
            )
    tol = cfg.get("tolerance", 0.0)
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
        raise EdgeopsError(f"deploy.gate.tolerance must be a number >= 0, not {tol!r}")
    min_rows = cfg.get("min_rows", DEFAULT_MIN_ROWS)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise EdgeopsError(f"deploy.gate.min_rows must be a whole number >= 1, not {min_rows!r}")
    return tuple(dict.fromkeys([primary, *guards])), float(tol), min_rows


def absent_classes(metrics: dict[str, Any]) -> list[str]:
    """The classes no row of a scored set has (from :func:`score`'s per-class support)."""
    return [c for c, v in (metrics.get("per_class") or {}).items() if not v.get("support")]


def undefined_reason(metric: str, metrics: dict[str, Any]) -> str | None:
    """Why ``metric`` means nothing on a scored set, or None. ROC AUC and PR AUC need every
    class (one-vs-rest); F1 needs a binary target's positive class, and a macro F1 would count
    an absent class as 0. Balanced accuracy and accuracy are defined on any rows.

        >>> undefined_reason("roc_auc", {"per_class": {"0": {"support": 9}, "1": {"support": 0}}})
        "undefined: class '1' absent from these rows"
    """
    absent = absent_classes(metrics)
    positive = metrics.get("positive_class")
    if metric == "f1" and positive is not None:
        absent = [c for c in absent if c == str(positive)]
    elif metric not in (*NEED_EVERY_CLASS, "f1"):
        return None
    if absent:
        named = ", ".join(repr(c) for c in absent)
        return f"undefined: class{'es' if len(absent) > 1 else ''} {named} absent from these rows"
    if metrics.get(metric) is None:
        return "undefined on these rows"
    return None


def judge_sets(sets: dict[str, dict[str, Any]], cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each set's comparison with the champion, metric by metric: ``rows``, ``absent_classes``,
    ``judged`` (metric -> challenger, champion, verdict ``ok`` | ``worse`` | ``not judged``,
    ``why``) and the set's ``verdict`` (``worse`` if any metric is; ``not judged`` if none was;
    ``no champion`` without one). ``sets``: name -> ``{"challenger": metrics, "champion":
    metrics or None}`` (:func:`score`)."""
    compared, tol, min_rows = comparison(cfg)
    out = {}
    for name, got in sets.items():
        ch, cp = got["challenger"], got.get("champion")
        rows = int(ch.get("n_test", 0))
        absent = absent_classes(ch)
        judged: dict[str, dict[str, Any]] = {}
        for metric in compared:
            f: dict[str, Any] = {
                "challenger": ch.get(metric),
                "champion": None if cp is None else cp.get(metric),
            }
            why = undefined_reason(metric, ch)
            if cp is None:
                f.update(verdict="no champion", why="no champion to compare with")
            elif rows < min_rows:
                f.update(verdict="not judged", why=f"{rows} rows < min_rows {min_rows}")
            elif why or f["champion"] is None or f["challenger"] is None:
                f.update(verdict="not judged", why=why or "undefined on these rows")
            else:
                ok = f["challenger"] >= round(f["champion"] - tol, 6)
                f["verdict"] = "ok" if ok else "worse"
                if metric == "balanced_accuracy" and absent:
                    f["why"] = f"the recall of the classes present (absent: {', '.join(absent)})"
            judged[metric] = f
        verdicts = {f["verdict"] for f in judged.values()}
        verdict = (
            "no champion"
            if cp is None
            else "worse"
            if "worse" in verdicts
            else "ok"
            if "ok" in verdicts
            else "not judged"
        )
        out[name] = {"rows": rows, "absent_classes": absent, "judged": judged, "verdict": verdict}
    return out


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
    """Score challenger and champion (the registry's production version) on the source's holdout
    ``df``, the held-out labelled production rows ``production_df`` and both together; return
    the report (``promote``, ``reason``, ``sets``: each set's figures and verdict, see
    :func:`judge_sets`). ``registered``: the versions the registry knows.

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
    comparison(cfg)  # bad params fail before any scoring
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
    production = _production_rows(production_df, target_col)
    frames = {"source": df, "production": production}
    sets = {
        name: {"challenger": m}
        for name, m in score_sets(challenger, frames, target_col, report["positive_class"]).items()
    }
    report["challenger"]["metrics"] = sets["source"]["challenger"]
    if unknown:
        report.update(
            promote=False,
            reason=f"{unknown}; restore deploy/ from git, or deploy "
            "with --force to go on without a champion (recorded)",
        )
        return report
    if champion_version == challenger.version:
        n = sum(v == champion_version for v in actives.values())
        report.update(
            promote=True,
            already_deployed=True,
            reason=f"{challenger.version} is the production version already ({n} of "
            f"{len(actives)} targets run it)",
        )
        return report
    champion_metrics = None
    if champion_version:
        with tempfile.TemporaryDirectory(prefix="edgeops-champion-") as tmp:
            champ = fetch_bundle(targets, champion_version, public_key, Path(tmp))
            try:
                # the challenger's positive class: F1 and PR AUC must mean the same for both
                got = score_sets(champ, frames, target_col, report["positive_class"])
                for name, m in got.items():
                    sets[name]["champion"] = m
                champion_metrics = got["source"]
            except EdgeopsError as exc:
                notes.append(
                    f"champion cannot be scored on the current data ({exc.problem}); "
                    "baseline and floors only"
                )
        report["champion"]["metrics"] = champion_metrics
    if champion_metrics is None:
        for got in sets.values():
            got["champion"] = None
    report["comparison"] = dict(
        zip(("metrics", "tolerance", "min_rows"), comparison(cfg), strict=True)
    )
    report["sets"] = {
        name: {
            **verdict,
            "challenger": sets[name]["challenger"],
            "champion": sets[name]["champion"],
        }
        for name, verdict in judge_sets(sets, cfg).items()
    }
    if production is None:
        notes.append("no labelled production rows held out: judged on the source's rows alone")
    promote, reason = decide(
        report["challenger"]["metrics"], champion_metrics, cfg, base, sets=sets
    )
    report.update(promote=promote, reason=reason)
    return report


def score_sets(
    bundle: VerifiedBundle,
    frames: dict[str, pd.DataFrame | None],
    target: str,
    positive: Any = None,
) -> dict[str, dict[str, Any]]:
    """:func:`score` on ``frames["source"]``, ``frames["production"]`` (if not None) and on
    both together (``all``, when there are production rows): each row predicted once.

    scikit-learn's warnings about a class absent from a set are silenced: the report names the
    absent classes (:func:`judge_sets`) and judges no metric they make undefined."""
    import warnings

    import numpy as np

    from edgeops.stages.evaluate import scores

    if positive is None:
        positive = bundle.manifest.get("positive_class")
    classes = list(bundle.model.classes)
    pairs = {
        name: (frame[target].to_numpy(), predict_proba(bundle, frame))
        for name in ("source", "production")
        if (frame := frames.get(name)) is not None
    }
    if len(pairs) > 1:
        truths, probas = zip(*pairs.values(), strict=True)
        pairs["all"] = (np.concatenate(truths), np.concatenate(probas))
    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", "A single label was found in 'y_true' and 'y_pred'")
        for name, (y, proba) in pairs.items():
            out[name] = scores(y, proba, classes, positive)
    return out


def figures_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per judged set of a gate report: set, rows, challenger and champion figure of each
    compared metric, the verdict and why (what :func:`figures_markdown` and
    :func:`figures_text` show; also a table artifact's rows). Empty without ``sets``."""
    rows = []
    ordered, metrics = _ordered(report)
    for name, got in ordered:
        row: dict[str, Any] = {"set": name, "rows": got["rows"]}
        for metric in metrics:
            row[f"{metric} (this run)"] = got["judged"][metric]["challenger"]
            row[f"{metric} (champion)"] = got["judged"][metric]["champion"]
        row["verdict"] = got["verdict"]
        row["why"] = _why(got, metrics)
        rows.append(row)
    return rows


def _ordered(report: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The report's sets in :data:`SETS` order and its compared metrics, primary first (a report
    read back from JSON has its keys sorted)."""
    sets = report.get("sets") or {}
    ordered = [(n, sets[n]) for n in SETS if n in sets]
    ordered += [(n, got) for n, got in sets.items() if n not in SETS]
    if not ordered:
        return [], []
    judged = ordered[0][1]["judged"]
    metrics = [m for m in (report.get("comparison") or {}).get("metrics") or [] if m in judged]
    return ordered, metrics + [m for m in judged if m not in metrics]


def _why(got: dict[str, Any], metrics: list[str]) -> str:
    parts = [f"{m}: {got['judged'][m]['why']}" for m in metrics if got["judged"][m].get("why")]
    if got["verdict"] == "no champion":
        return "no champion to compare with"
    if got["absent_classes"] and not any("absent" in p for p in parts):
        parts.append(f"absent classes: {', '.join(got['absent_classes'])}")
    return "; ".join(dict.fromkeys(parts))


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def figures_markdown(report: dict[str, Any]) -> str:
    """The gate's figures as a markdown table, one row per set (source, production, all):
    rows, this run vs the champion on each compared metric, the verdict; then why a set or
    metric was not judged. Empty string when the report has no sets (gate skipped)."""
    sets, metrics = _ordered(report)
    if not sets:
        return ""
    head = ["set", "rows"]
    for m in metrics:
        head += [f"{m} this run", f"{m} champion"]
    head.append("verdict")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for name, got in sets:
        cells = [SET_TITLES.get(name, name), f"{got['rows']:,}"]
        for m in metrics:
            f = got["judged"][m]
            cells += [_cell(f["challenger"]), _cell(f["champion"])]
        verdict = got["verdict"]
        cells.append(f"**{verdict}**" if verdict == "worse" else verdict)
        lines.append("| " + " | ".join(cells) + " |")
        why = _why(got, metrics)
        if why and verdict != "no champion":
            notes.append(f"- {SET_TITLES.get(name, name)}: {why}")
    c = report.get("comparison") or {}
    if c:
        lines += [
            "",
            f"Each set must hold every metric >= champion - {c['tolerance']}; a set of fewer "
            f"than {c['min_rows']} rows, or a metric undefined on it, is not judged.",
        ]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def figures_text(report: dict[str, Any]) -> str:
    """:func:`figures_markdown`'s figures as aligned plain text for a terminal ("" if none)."""
    sets, metrics = _ordered(report)
    if not sets:
        return ""
    head = ["set", "rows"] + [f"{m} (this run / champion)" for m in metrics] + ["verdict"]
    table = [head]
    notes = []
    for name, got in sets:
        row = [SET_TITLES.get(name, name), f"{got['rows']:,}"]
        for m in metrics:
            f = got["judged"][m]
            row.append(f"{_cell(f['challenger'])} / {_cell(f['champion'])}")
        row.append(got["verdict"])
        table.append(row)
        why = _why(got, metrics)
        if why and got["verdict"] != "no champion":
            notes.append(f"  {SET_TITLES.get(name, name)}: {why}")
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines + notes) + "\n"


def _production_rows(df: pd.DataFrame | None, target_col: str) -> pd.DataFrame | None:
    """The held-out production rows that can be scored (a label of the target), or None."""
    if df is None or target_col not in df.columns:
        return None
    df = df[df[target_col].notna()]
    return df if len(df) else None
