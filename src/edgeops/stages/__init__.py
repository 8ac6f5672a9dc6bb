"""The DVC stages: one module per stage, named like the stage and its params section.

Each module has a pure function that tests call and a ``main()`` that DVC calls through
``edgeops stage <name>`` (or ``python -m edgeops.stages.<name>``); paths come from the command
line, knobs from params.yaml.
"""

STAGES = ("ingest", "validate", "split", "train", "evaluate")

#: Each stage's version: raised when a release changes what the stage writes from the same
#: inputs. A project records the versions it ran with (.edgeops/project.yaml) and each stage in
#: its dvc.yaml depends on its own entry, so `edgeops upgrade` re-runs the stages whose version
#: changed and nothing else; a stage refuses to run when the project's record differs (the
#: installed edgeops was upgraded without `edgeops upgrade`).
STAGE_VERSIONS = {
    "ingest": 1,
    "validate": 1,
    "split": 1,
    "train": 1,
    "evaluate": 1,
    "export": 1,
    "bundle": 1,
}
