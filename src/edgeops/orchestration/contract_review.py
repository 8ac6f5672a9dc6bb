"""A person in the loop for the data contract: when the devices' rows break ``validate.schema``,
the ``training`` run shows the proposed change (:mod:`edgeops.contract`) as an artifact and
pauses until someone approves or rejects it in the Prefect UI (or through the API:
``prefect.flow_runs.resume_flow_run(id, run_input={"approve": True, "approver": ...})``).

Approved: ``validate.schema`` in params.yaml takes the change (comments kept), the audit log
records it (``contract_changed``, with the columns, old and new bounds, the approver) and the
run goes on from ``validate``; the lineage commit of the new model version holds params.yaml.
Rejected, or no answer within ``deploy.approval_timeout_minutes``: the run ends with the
reason, nothing is deployed. A proposal with faults (a stuck sensor, impossible readings) is
never offered: the run ends naming them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect.input import RunInput
from pydantic import Field

if TYPE_CHECKING:
    from edgeops.contract import ContractProposal

#: the Prefect artifact that shows the proposal
ARTIFACT_KEY = "contract-proposal"


class ContractApproval(RunInput):
    """The answer a person gives in the Prefect UI's resume form."""

    approve: bool = Field(
        default=False,
        description="Tick to write the proposed contract into params.yaml and go on; leave it "
        "to reject (the run ends, nothing deployed).",
    )
    approver: str = Field(default="", description="Your name (kept in the audit log).")
    comment: str = Field(default="", description="Why (kept in the audit log).")


def audit_fields(proposal: ContractProposal) -> dict[str, Any]:
    """What the audit log keeps of a proposal: per column the change and the rows it admits."""
    return {
        "changes": [
            {
                "column": c.column,
                "kind": c.kind,
                "old": c.old,
                "new": c.new,
                "rows": c.rows,
                "production_rows": c.production_rows,
            }
            for c in proposal.changes
        ],
        "rows": proposal.rows,
        "production_rows": proposal.production_rows,
    }
