"""The champion/challenger gate: a new bundle reaches devices only if it is at least as good.

The challenger is the new bundle; the champion is the version actually active on the targets (asked
from the agents, cross-checked with the registry) and downloaded from an agent. Both are scored
with onnxruntime on the same current test split. Promote only if the challenger's primary metric
is >= champion - tolerance and every absolute floor holds; with no champion yet, floors only.
A rejected challenger is a normal outcome (exit code 3), not a crash.
"""

from __future__ import annotations

import collections
import io
import tarfile
import tempfile
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


def verify_local(bundle_dir: str | Path, public_key: Any) -> VerifiedBundle:
    """Verify a bundle on this host exactly as the device will (or explain why not)."""
    try:
        return verify_bundle(bundle_dir, public_key)
    except BundleError as exc:
        raise EdgeopsError(
            f"bundle {bundle_dir} rejected ({exc.name}): {exc.message}",
            fix=exc.fix or "rebuild it: dvc repro",
        ) from None


def score(bundle: VerifiedBundle, df: pd.DataFrame, target: str) -> dict[str, Any]:
    """Score a verified bundle's ONNX model on a raw DataFrame with onnxruntime."""
    from edgeops.stages.evaluate import scores

    return scores(df[target].to_numpy(), predict_proba(bundle, df), list(bundle.model.classes))


def predict_proba(bundle: VerifiedBundle, df: pd.DataFrame) -> Any:
    """Class probabilities (columns = the bundle's classes) of raw rows, as the device computes them."""
    missing = [s.name for s in bundle.model.inputs if s.name not in df.columns]
    if missing:
        raise EdgeopsError(f"{bundle.version} needs columns {missing} that the data lacks")
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
    challenger: dict[str, Any], champion: dict[str, Any] | None, cfg: dict[str, Any]
) -> tuple[bool, str]:
    """(promote?, reason) from the two metric sets and the gate params."""
    primary = cfg.get("primary_metric", "roc_auc")
    tol = float(cfg.get("tolerance", 0.0))
    failed = [
        f"{name} {challenger.get(name, float('nan')):.4f} < floor {floor}"
        for name, floor in (cfg.get("floors") or {}).items()
        if not (challenger.get(name, float("-inf")) >= float(floor))
    ]
    if failed:
        return False, "below the absolute floors: " + "; ".join(failed)
    if champion is None:
        return True, f"first deployment: every floor holds ({primary} {challenger[primary]:.4f})"
    ch, cp = challenger[primary], champion[primary]
    if ch >= cp - tol:
        return True, f"{primary} {ch:.4f} >= champion {cp:.4f} - tolerance {tol}"
    return False, f"{primary} {ch:.4f} < champion {cp:.4f} - tolerance {tol}"


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
    raise EdgeopsError(f"could not fetch the champion {version} from any target: {last}")


def run_gate(challenger: VerifiedBundle, targets: list[Target], registry_production: str | None,
             df: pd.DataFrame, target_col: str, cfg: dict[str, Any], public_key: Any) -> dict[str, Any]:  # fmt: skip
    """Score challenger and champion; return the report (``promote``, ``reason``, figures)."""
    actives = active_versions(targets)
    running = [v for v in actives.values() if v]
    champion_version: str | None = None
    notes = []
    if running:
        counts = collections.Counter(running)
        champion_version = counts.most_common(1)[0][0]
        if len(counts) > 1:
            notes.append(
                f"targets run different versions {dict(counts)}; champion = the most common"
            )
        if registry_production and registry_production != champion_version:
            notes.append(
                f"registry says production is {registry_production}, the agents run {champion_version}: the agents win"
            )
    elif registry_production:
        notes.append(
            f"registry says production is {registry_production}, but no target runs a model"
        )
    report: dict[str, Any] = {
        "challenger": {"version": challenger.version},
        "champion": {"version": champion_version},
        "targets": actives,
        "primary_metric": cfg.get("primary_metric", "roc_auc"),
        "tolerance": cfg.get("tolerance", 0.0),
        "floors": cfg.get("floors") or {},
        "test_rows": len(df),
        "notes": notes,
    }
    report["challenger"]["metrics"] = score(challenger, df, target_col)
    champion_metrics = None
    if champion_version == challenger.version:
        n = sum(v == champion_version for v in actives.values())
        report.update(
            promote=True,
            already_deployed=True,
            reason=f"{challenger.version} is already the champion ({n} of {len(actives)} targets run it)",
        )
        return report
    if champion_version:
        with tempfile.TemporaryDirectory(prefix="edgeops-champion-") as tmp:
            champ = fetch_bundle(targets, champion_version, public_key, Path(tmp))
            try:
                champion_metrics = score(champ, df, target_col)
            except EdgeopsError as exc:
                notes.append(
                    f"champion cannot be scored on the current data ({exc.problem}); floors only"
                )
        report["champion"]["metrics"] = champion_metrics
    promote, reason = decide(report["challenger"]["metrics"], champion_metrics, cfg)
    report.update(promote=promote, reason=reason)
    return report
