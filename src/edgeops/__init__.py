"""edgeops: on-prem MLOps, from plant data to signed edge bundles."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # `edgeops.__version__` comes from the installed distribution (pyproject.toml's version),
    # read on first use: importlib.metadata costs ~50 ms, too much for every `import edgeops`
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("edgeops")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'edgeops' has no attribute {name!r}")
