"""edgeops: on-prem MLOps, from plant data to signed edge bundles."""

__version__ = "0.1.0"
