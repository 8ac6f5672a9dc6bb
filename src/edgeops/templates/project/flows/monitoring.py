"""This project's ``monitoring`` flow: the one edgeops ships (``edgeops.flows.monitoring``).

prefect.yaml's entrypoint points here. Keep the file thin: the flow is the installed package's,
so upgrading edgeops upgrades it.
"""

from edgeops.flows.monitoring import monitoring

__all__ = ["monitoring"]

if __name__ == "__main__":
    monitoring()
