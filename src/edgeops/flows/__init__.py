"""The Prefect flows every project runs: :mod:`edgeops.flows.training` and
:mod:`edgeops.flows.monitoring`.

A project's own ``flows/`` folder holds two thin files that import these (``prefect.yaml``'s
entrypoints point at them), so the layout the product promises holds in every project and an
upgrade of edgeops brings the flows with it. Importing this package imports Prefect (~2 s): the
CLI and the agent never do.
"""
