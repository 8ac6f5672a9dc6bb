"""Running edgeops under Prefect: the self-hosted server and workers (``edgeops up``/``down``),
runs through the server (``edgeops run``/``runs``), the DVC workspace the flows drive, lineage
commits, and ``edgeops doctor``. The flows themselves live in the top-level ``flows/`` folder."""
