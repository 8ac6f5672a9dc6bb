"""The DVC stages: one module per stage, named like the stage and its params section.

Each module has a pure function that tests call and a ``main()`` that DVC calls through
``python -m edgeops.stages.<name>``; paths come from the command line, knobs from params.yaml.
"""

STAGES = ("ingest", "validate", "split", "train", "evaluate")
