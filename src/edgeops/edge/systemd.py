"""systemd's notification protocol (sd_notify(3)) without libsystemd: one datagram to $NOTIFY_SOCKET.

With ``Type=notify`` (src/edgeops/examples/edgeops-agent.service) systemd counts the agent as started only when
it sends ``READY=1``, and expects ``STOPPING=1`` when it begins to shut down::

    from edgeops.edge.systemd import notify
    notify("READY=1")

Outside systemd ($NOTIFY_SOCKET unset) every call does nothing and returns False.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STOPPING=1"``, ``"STATUS=..."``; one per line) to systemd.

    True when the datagram was sent; False when there is no $NOTIFY_SOCKET, or it cannot be used
    (logged as a warning: the service manager will then time the start out, not this process).
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket: its name starts with a NUL byte
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET=%s: not a socket path, not notifying systemd", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", state.replace("\n", " "), exc)
        return False
    return True
