"""The egress test's recorder: loaded into every Python process whose PYTHONPATH names this folder.

When ``EDGEOPS_EGRESS_RECORD`` names a file, an audit hook (PEP 578) appends one JSON line to it
per network event of this process: every ``socket.connect`` (``connect_ex`` too), ``sendto``,
``sendmsg`` and ``bind``, every name lookup (``getaddrinfo``, ``gethostbyname[_ex]``,
``gethostbyaddr``, ``getnameinfo``) and the URL-level events of the standard library
(``urllib.Request``, ``http.client.connect``, ``smtplib.connect``, ...), each with the pid, the
parent's pid and the command line (``sys.orig_argv``). A ``start`` line records that the hook
runs in this process at all: the test checks every Python program ``strace`` saw start has one.

Nothing is blocked: the network namespace the test runs in has loopback only, so a non-loopback
attempt fails there by itself; the record is what names the process and the address.

Standard library only, and quiet: a recorder that fails must never change what it records. Any
other ``sitecustomize`` on the path (a distribution's) still runs after this one.
"""

from __future__ import annotations

import json
import os
import sys

RECORD_ENV = "EDGEOPS_EGRESS_RECORD"

_WATCHED = frozenset(
    {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "urllib.Request",
        "http.client.connect",
        "ftplib.connect",
        "smtplib.connect",
        "imaplib.open",
        "poplib.connect",
        "nntplib.connect",
        "telnetlib.Telnet.open",
    }
)


def _plain(value: object) -> object:
    """A JSON-ready copy of an audit argument (addresses are tuples, bytes or str)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _install(path: str) -> None:
    fd: list[int] = []  # opened on first use (after a fork the child shares it: O_APPEND)

    def write(record: dict[str, object]) -> None:
        if not fd:
            fd.append(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        record.update(pid=os.getpid(), ppid=os.getppid(), argv=list(sys.orig_argv))
        # one write() per line: O_APPEND keeps lines of concurrent processes whole
        os.write(fd[0], (json.dumps(record, default=repr) + "\n").encode())

    def hook(event: str, args: tuple[object, ...]) -> None:
        # no lock, no reentrancy guard: write() raises no watched event (os.open raises "open"),
        # and a flag would drop the events of a second thread
        if event not in _WATCHED:
            return
        try:
            record: dict[str, object] = {"event": event}
            if event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"):
                sock, address = args[0], args[1]
                family = getattr(sock, "family", None)
                record["family"] = getattr(family, "name", str(family))
                record["address"] = _plain(address)
            elif event == "socket.getaddrinfo":
                record["host"], record["port"] = _plain(args[0]), _plain(args[1])
            elif event in ("socket.gethostbyname", "socket.gethostbyaddr"):
                record["host"] = _plain(args[0])
            elif event == "socket.getnameinfo":
                record["address"] = _plain(args[0])
            elif event == "urllib.Request":
                record["url"] = _plain(args[0])
            else:  # http.client.connect (self, host, port), smtplib.connect (self, host, port), ...
                record["host"] = _plain(args[1]) if len(args) > 1 else None
                record["port"] = _plain(args[2]) if len(args) > 2 else None
            write(record)
        except Exception:  # noqa: BLE001 - never disturb the process being recorded
            pass

    try:
        write({"event": "start"})
    except OSError:
        return
    sys.addaudithook(hook)


def _chain() -> None:
    """Run the next ``sitecustomize`` on sys.path (this module took its name)."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - what site.py does with a failing sitecustomize
        print(f"Error in sitecustomize ({spec.origin}): {exc!r}", file=sys.stderr)


if os.environ.get(RECORD_ENV):
    _install(os.environ[RECORD_ENV])
_chain()
