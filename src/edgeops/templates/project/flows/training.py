"""This project's ``training`` flow: the one edgeops ships (``edgeops.flows.training``).

prefect.yaml's entrypoint points here. Keep the file thin: the flow is the installed package's,
so upgrading edgeops upgrades it.
"""

from edgeops.flows.training import training

__all__ = ["training"]

if __name__ == "__main__":
    training()
