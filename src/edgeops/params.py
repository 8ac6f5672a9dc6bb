"""Reading ``params.yaml``: every knob of the pipeline, one section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Load the whole params file as a dict."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise EdgeopsError(
            f"{path} not found (cwd: {Path.cwd()})",
            fix="run from the repository root, where params.yaml lives",
        )
    try:
        data = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EdgeopsError(
            f"{path} is not valid YAML: {exc}", fix="correct the YAML syntax"
        ) from exc
    if not isinstance(data, dict):
        raise EdgeopsError(
            f"{path} must hold a mapping of sections",
            fix="see the comments in a params.yaml made by edgeops init",
        )
    return data


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's parser when PyYAML has it: the same safe constructors,
    ten times faster (params.yaml: 17 ms -> 1.4 ms; every stage and command reads it)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of the params, with a clear error when it is missing."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise EdgeopsError(
            f"params.yaml has no '{name}' section",
            fix=f"add a '{name}:' section (the stages and their sections: edgeops's docs/pipeline.md)",
        )
    return value


def row_count(cfg: dict[str, Any], name: str, key: str, default: int = 0) -> int:
    """``cfg[key]`` (of the params section ``name``) as a number of rows: a whole number >= 0
    (0: no limit; ``default`` when it is left out); else, null included, one clear error naming
    the setting."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EdgeopsError(
            f"{name}.{key} must be a whole number of rows >= 0, got {value!r}",
            fix=f"write e.g. {default or 10_000_000} in params.yaml (0: no limit)",
        )
    return value


def number(
    cfg: dict[str, Any],
    key: str,
    default: float,
    where: str,
    lo: float = 0.0,
    hi: float | None = None,
) -> float:
    """``cfg[key]`` (``where``: the section's dotted name) as a number from ``lo`` to ``hi``,
    else one clear error naming the setting."""
    value = cfg.get(key, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        value = float(value)
    except (TypeError, ValueError):
        raise EdgeopsError(f"{where}.{key} must be a number, got {value!r}") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise EdgeopsError(f"{where}.{key} must be {bound}, got {value}", fix=f"set {where}.{key}")
    return value
