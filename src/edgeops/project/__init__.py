"""Projects: what ``edgeops init`` makes and ``edgeops upgrade`` keeps current.

The product is the installed package; a project is a git + DVC repository that uses it (params,
pipeline, deployments, thin flows, targets, data, reports). The template ships in the package
(``edgeops/templates/project``); :mod:`~edgeops.project.template` renders it and records what it
rendered in the project's ``.edgeops/`` folder, :mod:`~edgeops.project.create` makes a project,
:mod:`~edgeops.project.upgrade` merges a newer template into one, keeping the company's edits.
"""
