"""The drift reference: the training split of the model version a target actually runs.

The bundle's signed manifest records the md5 of the training split it was trained on (the hash
DVC files it under), so the reference is found even after newer runs replaced
``data/prepared/train.parquet``: first the workspace's file, then DVC's cache. The bundle itself
comes from the workspace (``models/bundle``) when it is that version, else from the agent.

The reference knows its regimes. After a drift retrain the model was trained on the source's rows
and on the devices' labelled production rows; ``split`` puts those last in the training split and
records how many in its Parquet footer (stages/split.py). The regimes: the source's rows, the
production rows (:func:`regime_bounds`), and the production rows split by what they look like:
the ones the source's rows do not explain and the others (:func:`production_regimes`). Each is
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
        b for b in regime_bounds(path, total) if b[2] - b[1] >= regime_min_rows
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
    if len(regimes) == 3:  # the source's rows and the production rows: split the latter
        regimes += production_regimes(regimes[1], regimes[2], features, seed, regime_min_rows)
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


#: rows of each side (the source's, the production rows') the domain classifier learns from
CLASSIFIER_ROWS = 2_000
#: the production rows the domain classifier puts above this probability of being production rows
#: are the ones the source's rows do not explain. Its classes are weighted to balance, so a row it
#: cannot tell apart gets about 0.5 or less; 0.8 is confident (measured on the plant: 97 % of
#: hot-summer rows above it, under 1 % of baseline rows, in a mixture or alone)
NEW_ABOVE = 0.8
#: the two parts of the production rows: the ones unlike the source's rows, the ones like them
PRODUCTION_NEW, PRODUCTION_LIKE_SOURCE = "production new", "production like source"


def regime_bounds(path: Path, total: int) -> list[tuple[str, int, int]]:
    """``(name, first row, end)`` of the regimes of the training split at ``path``: the source's
    rows and the production rows (their count as ``split`` recorded it; none for a split written
    before it kept the record)."""
    from edgeops.stages.split import production_rows

    prod = min(production_rows(path) or 0, total)
    if prod == 0:
        return [(SOURCE, 0, total)]
    start = total - prod
    return [(SOURCE, 0, start), (PRODUCTION, start, total)]


def production_regimes(
    source: Regime, production: Regime, features: list[str], seed: int, min_rows: int = 200
) -> list[Regime]:
    """The production rows split by what they look like: the ones the source's rows do not explain
    (``production new``) and the others (``production like source``), each a regime when it has at
    least ``min_rows`` rows; none else.

    A retrain on a baseline week and a hot week learned each week, and the production rows as a
    whole are a mixture like neither; time does not separate them when a stretch is shorter than
    the data's cycles, but what the rows look like does. :func:`new_rows` tells them apart."""
    import numpy as np
    import pandas as pd

    new = new_rows(source.frame[features], production.frame[features], seed)
    out = []
    for name, mask in ((PRODUCTION_NEW, new), (PRODUCTION_LIKE_SOURCE, ~new)):
        share = float(mask.mean()) if len(mask) else 0.0
        rows_total = round(share * production.rows_total)
        if int(mask.sum()) < min_rows or rows_total < min_rows:
            return []
        frame = pd.DataFrame(production.frame[mask]).reset_index(drop=True)
        out.append(Regime(name, frame, np.asarray(production.proba)[mask], rows_total))
    return out


def new_rows(source: pd.DataFrame, production: pd.DataFrame, seed: int) -> Any:
    """Which of the ``production`` rows the ``source`` rows do not explain (a boolean array).

    A domain classifier (scikit-learn's ``HistGradientBoostingClassifier``, classes weighted to
    balance, categorical columns as categories, missing values as they are) learns to tell up to
    :data:`CLASSIFIER_ROWS` source rows from up to as many production rows; cross-fitted: the
    production rows are cut in two halves (seeded), each scored by a classifier that learned from
    the other half, so no row is scored by a classifier that saw it. A row is new when its
    probability of being a production row is above :data:`NEW_ABOVE`. The same frames and seed
    give the same answer."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    both = pd.concat([source, production], ignore_index=True)
    for col in both.columns:
        if pd.api.types.is_numeric_dtype(both[col]) and not pd.api.types.is_bool_dtype(both[col]):
            both[col] = both[col].astype("float64")
        else:
            both[col] = both[col].astype("string").astype("category")
    src, prod = both.iloc[: len(source)], both.iloc[len(source) :]
    src = src.iloc[np.sort(rng.permutation(len(src))[:CLASSIFIER_ROWS])]
    half = rng.permutation(len(prod)) % 2 == 0
    p = np.zeros(len(prod))
    for fold in (half, ~half):
        learn = prod[~fold]
        learn = learn.iloc[np.sort(rng.permutation(len(learn))[:CLASSIFIER_ROWS])]
        if fold.sum() == 0 or len(learn) == 0:
            continue
        x = pd.concat([src, learn])
        y = np.r_[np.zeros(len(src)), np.ones(len(learn))]
        with threadpool_limits(1):  # a few thousand rows: threads cost more than they save
            clf = HistGradientBoostingClassifier(
                max_iter=100, class_weight="balanced", random_state=seed
            ).fit(x, y)
            p[fold] = clf.predict_proba(prod[fold])[:, 1]
    return p > NEW_ABOVE
