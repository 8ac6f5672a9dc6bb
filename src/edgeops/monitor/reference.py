"""The drift reference: the training split of the model version a target actually runs.

The bundle's signed manifest records the md5 of the training split it was trained on (the hash
DVC files it under), so the reference is found even after newer runs replaced
``data/prepared/train.parquet``: first the workspace's file, then DVC's cache. The bundle itself
comes from the workspace (``models/bundle``) when it is that version, else from the agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.deploy.targets import Target
    from edgeops.edge.bundle import VerifiedBundle

TRAIN_SPLIT = Path("data/prepared/train.parquet")


@dataclass
class Reference:
    version: str
    frame: pd.DataFrame  # features (+ target) of the sampled training split
    proba: Any  # the deployed model's probabilities on it
    source: str  # where the training split was found
    rows_total: int
    classes: list[Any]


def deployed_bundle(
    target: Target, version: str, public_key: Any, workspace_bundle: Path = Path("models/bundle")
) -> VerifiedBundle:
    """The verified bundle of ``version``: the workspace's if it is that one, else the agent's copy."""
    from edgeops.deploy.gate import fetch_bundle, verify_local

    manifest = workspace_bundle / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text())["model"]["version"] == version:
        return verify_local(workspace_bundle, public_key)
    tmp = Path(tempfile.mkdtemp(prefix="edgeops-monitor-"))
    return fetch_bundle([target], version, public_key, tmp)


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_train_split(manifest: dict[str, Any], workspace: Path = Path(".")) -> tuple[Path, str]:
    """(path, where) of the training split a bundle was trained on, or a clear error."""
    data = manifest.get("data") or {}
    version = manifest["model"]["version"]
    md5 = data.get("train_md5")
    local = workspace / TRAIN_SPLIT
    if not md5:
        raise EdgeopsError(
            f"model {version} does not record its training split (bundles built before monitoring "
            "existed): no drift reference",
            fix="retrain and deploy once (`edgeops run training` or `dvc repro` + `edgeops deploy`)",
        )
    if local.is_file() and md5_file(local) == md5:
        return local, str(TRAIN_SPLIT)
    cached = _dvc_cache(workspace) / "files" / "md5" / md5[:2] / md5[2:]
    if cached.is_file():
        return cached, f"DVC cache ({md5})"
    raise EdgeopsError(
        f"the training split of the deployed model {version} (md5 {md5}) is neither "
        f"{TRAIN_SPLIT} nor in the DVC cache: no drift reference",
        fix="fetch it with `dvc pull` (or check out the commit that built it, "
        f"e.g. `git checkout <model>/{version}`, and run `dvc pull`)",
    )


def _dvc_cache(workspace: Path) -> Path:
    """The DVC cache directory (honours `dvc cache dir`) without importing DVC when it is default."""
    import configparser

    cfg = configparser.ConfigParser()
    for name in ("config", "config.local"):
        with contextlib.suppress(configparser.Error):
            cfg.read(workspace / ".dvc" / name)
    if cfg.has_option("cache", "dir"):
        d = Path(cfg.get("cache", "dir"))
        return d if d.is_absolute() else workspace / ".dvc" / d
    return workspace / ".dvc" / "cache"


def load_reference(
    bundle: VerifiedBundle,
    features: list[str],
    target: str,
    rows: int,
    seed: int,
    workspace: Path = Path("."),
) -> Reference:
    """Sample the training split of ``bundle`` and predict it with the bundle's own model.

    The sample is uniform without replacement: ``rows`` positions drawn by
    ``numpy.random.default_rng(seed)`` (:func:`edgeops.parquet_sample.sample_rows`), read one row
    group at a time, only the features, the target and the model's inputs; the whole split when it
    has no more than ``rows`` rows. The same split and seed give the same reference.
    """

    from edgeops.deploy.gate import predict_proba
    from edgeops.parquet_sample import rows_and_columns, sample_rows

    path, where = find_train_split(bundle.manifest, workspace)
    total, names = rows_and_columns(path)
    missing = [c for c in features if c not in names]
    if missing:
        raise EdgeopsError(f"the training split {where} lacks the feature columns {missing}")
    keep = [*features, *([target] if target in names else [])]
    inputs = [s.name for s in bundle.model.inputs if s.name in names and s.name not in keep]
    df = sample_rows(path, rows, seed, columns=[*keep, *inputs]).reset_index(drop=True)
    return Reference(
        bundle.version,
        df[keep],
        predict_proba(bundle, df),
        where,
        total,
        list(bundle.model.classes),
    )
