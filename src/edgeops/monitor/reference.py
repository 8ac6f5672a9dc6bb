"""The drift reference: the training split of the model version a target actually runs.

The bundle's signed manifest records the md5 of the training split it was trained on (the hash
DVC files it under), so the reference is found even after newer runs replaced
``data/prepared/train.parquet``: first the workspace's file, then DVC's cache. The bundle itself
comes from the workspace (``models/bundle``) when it is that version, else from the agent.

The reference knows its regimes. After a drift retrain the model was trained on the source's rows
and on the devices' labelled production rows; ``split`` puts those last in the training split and
records how many in its Parquet footer (stages/split.py). The regimes: the source's rows, the
production rows, and stretches of time of the production rows (:func:`regime_bounds`). Each is
sampled apart (up to ``monitor.reference_rows`` each), and the whole split as well (the mixture):
the drift step judges a window against each (monitor/drift.py). A regime with fewer than
``monitor.regime_min_rows`` rows is not sampled apart; a split without production rows has one
regime, the whole split.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.deploy.targets import Target
    from edgeops.edge.bundle import VerifiedBundle

TRAIN_SPLIT = Path("data/prepared/train.parquet")


#: the regimes of a training split: all of it (the mixture), the source's rows, the production rows
ALL, SOURCE, PRODUCTION = "all", "source", "production"


@dataclass
class Regime:
    """One regime's sample of the training split."""

    name: str  # ALL, SOURCE or PRODUCTION
    frame: pd.DataFrame  # features (+ target) of the sampled rows
    proba: Any  # the deployed model's probabilities on them
    rows_total: int  # the regime's rows in the training split


@dataclass
class Reference:
    version: str
    frame: pd.DataFrame  # features (+ target) of the sampled training split (the mixture)
    proba: Any  # the deployed model's probabilities on it
    source: str  # where the training split was found
    rows_total: int
    classes: list[Any]
    #: the mixture first, then each regime sampled apart (none when the split holds one regime)
    regimes: list[Regime] = field(default_factory=list)


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
    regime_min_rows: int = 200,
) -> Reference:
    """Sample the training split of ``bundle`` and predict it with the bundle's own model.

    The sample is uniform without replacement: ``rows`` positions drawn by
    ``numpy.random.default_rng(seed)`` (:func:`edgeops.parquet_sample.sample_positions`), read one
    row group at a time, only the features, the target and the model's inputs; the whole split
    when it has no more than ``rows`` rows. The same split and seed give the same reference. The
    source's rows and the production rows (:func:`regime_bounds`) are sampled the same way, each
    apart, when the split holds both with at least ``regime_min_rows`` rows each.
    """
    import numpy as np
    import pandas as pd

    from edgeops.deploy.gate import predict_proba
    from edgeops.parquet_sample import rows_and_columns, sample_positions, take_rows

    path, where = find_train_split(bundle.manifest, workspace)
    total, names = rows_and_columns(path)
    missing = [c for c in features if c not in names]
    if missing:
        raise EdgeopsError(f"the training split {where} lacks the feature columns {missing}")
    keep = [*features, *([target] if target in names else [])]
    inputs = [s.name for s in bundle.model.inputs if s.name in names and s.name not in keep]

    def positions(start: int, stop: int) -> Any:
        n = stop - start
        return start + (np.arange(n) if rows >= n else sample_positions(n, rows, seed))

    parts = [(ALL, 0, total)] + [
        b for b in regime_bounds(path, total, regime_min_rows) if b[2] - b[1] >= regime_min_rows
    ]
    if len(parts) < 3:  # one regime only: it is the whole split
        parts = parts[:1]
    chosen = [positions(start, stop) for _, start, stop in parts]
    every = np.concatenate(chosen)
    df = take_rows(path, every, columns=[*keep, *inputs]).reset_index(drop=True)
    proba = predict_proba(bundle, df)
    regimes, at = [], 0
    for (name, start, stop), pos in zip(parts, chosen, strict=True):
        sl = slice(at, at + len(pos))
        frame = pd.DataFrame(df[keep].iloc[sl]).reset_index(drop=True)
        regimes.append(Regime(name, frame, proba[sl], stop - start))
        at += len(pos)
    mixture = regimes[0]
    return Reference(
        bundle.version,
        mixture.frame,
        mixture.proba,
        where,
        total,
        list(bundle.model.classes),
        regimes,
    )


#: the most stretches of time the production rows are cut into (each a regime of its own)
MAX_STRETCHES = 8


def regime_bounds(path: Path, total: int, min_rows: int = 200) -> list[tuple[str, int, int]]:
    """``(name, first row, end)`` of the regimes of the training split at ``path``: the source's
    rows, the production rows (their count as ``split`` recorded it; none for a split written
    before it kept the record) and, when they are at least twice ``min_rows``, consecutive
    stretches of them. The production rows are in the order the devices saw them (ingest sorts
    them by the time of the prediction): a retrain on a baseline week and a hot week learned each
    week, and the mixture of the two is like neither. Up to :data:`MAX_STRETCHES` stretches of
    equal size, each at least ``min_rows`` rows, named ``production i/k``."""
    from edgeops.stages.split import production_rows

    prod = min(production_rows(path) or 0, total)
    if prod == 0:
        return [(SOURCE, 0, total)]
    start = total - prod
    out = [(SOURCE, 0, start), (PRODUCTION, start, total)]
    k = min(MAX_STRETCHES, prod // max(min_rows, 1))
    if k >= 2:
        cuts = [start + round(i * prod / k) for i in range(k + 1)]
        out += [(f"{PRODUCTION} {i + 1}/{k}", cuts[i], cuts[i + 1]) for i in range(k)]
    return out
