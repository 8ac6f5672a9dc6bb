"""Run a command in a network namespace that has loopback only, record every connection attempt of
every process in it, and judge the record.

Two layers record, because neither alone sees everything:

- the audit hook of ``sitecustomize.py`` (on ``PYTHONPATH``) in every Python process: the names
  looked up (``getaddrinfo("example.com")``), the addresses connected to, with the process's own
  command line. It is blind to code that bypasses Python's ``socket`` module: uvloop (which
  uvicorn uses when it is installed, so the Prefect server, the agent and the Evidently UI) does
  its ``connect`` and ``getaddrinfo`` in libuv;
- ``strace -f`` on the namespace's first process, so on every process and thread in it (Python or
  not: git, sh, curl): every ``connect``, and every ``sendto``/``sendmsg``/``sendmmsg`` that names a
  destination; ``execve`` and ``clone`` to tell which command line a pid (or thread) belongs to.
  It sees addresses, not names: a lookup shows up as a query to the resolver (port 53).

Loopback is 127.0.0.0/8, ``::1`` (also IPv4-mapped), ``localhost``; a bind to ``0.0.0.0``/``::``
(all interfaces: only ``lo`` exists there) and Unix/netlink sockets are local. Anything else, any
DNS query (port 53, to a loopback resolver too: it would forward it), a connect to
systemd-resolved's socket (a Unix socket reaches the host's resolver from any namespace) and any
name lookup of a name other than ``localhost`` is an attempt to leave the machine. (glibc also
tries nscd's socket, ``/var/run/nscd/socket``, for user and group lookups as much as for host
names: that one stays local; the audit hook names the hosts Python looks up either way.)

The namespace: ``unshare --net --pid --fork --kill-child --mount-proc`` (``--map-root-user`` when
not root): its own network (only ``lo``, down until :func:`bring_up_loopback`) and its own pids
(``strace`` is pid 1; when it ends, or ``unshare`` is killed, the kernel kills every process left
in it: a daemon the command forgot cannot outlive the test).
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import re
import shlex
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HOOK_DIR = Path(__file__).resolve().parent  # holds sitecustomize.py
RECORD_ENV = "EDGEOPS_EGRESS_RECORD"
SYSCALLS = "execve,clone,clone3,fork,vfork,connect,sendto,sendmsg,sendmmsg"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
LOCAL_FAMILIES = {"AF_UNIX", "AF_NETLINK", "AF_UNSPEC"}  # AF_UNSPEC: a UDP socket's disconnect
RESOLVER_SOCKETS = ("/run/systemd/resolve/", "/var/run/systemd/resolve/")  # nss-resolve's varlink


# ---------------------------------------------------------------------------------------------
# the namespace


def namespace_command(argv: list[str], strace_log: Path) -> list[str]:
    """``argv`` as the traced first process of a new network + pid namespace."""
    unshare = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        unshare.append("--map-root-user")
    strace = [
        "strace",
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-e",
        "signal=none",
        "-s",
        "4096",
        "-e",
        f"trace={SYSCALLS}",
        "-o",
        str(strace_log),
    ]
    return [*unshare, *strace, *argv]


def namespace_env(env: dict[str, str], record: Path) -> dict[str, str]:
    """``env`` with the audit hook on ``PYTHONPATH`` (first) and its record file named."""
    paths = [str(HOOK_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return env | {"PYTHONPATH": os.pathsep.join(paths), RECORD_ENV: str(record)}


def run_in_namespace(
    argv: list[str], workdir: Path, env: dict[str, str], cwd: Path, timeout: float
) -> tuple[subprocess.CompletedProcess[bytes], Path, Path]:
    """Run ``argv`` recorded in the namespace; return the process (output in ``workdir/out.log``),
    the audit record and the strace log."""
    workdir.mkdir(parents=True, exist_ok=True)
    record, strace_log = workdir / "audit.jsonl", workdir / "strace.log"
    # output to a file, not a pipe: nothing waits on a descriptor a stray daemon could hold open
    with open(workdir / "out.log", "wb") as out:
        proc = subprocess.run(
            namespace_command(argv, strace_log),
            cwd=cwd,
            env=namespace_env(env, record),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    return proc, record, strace_log


def bring_up_loopback() -> None:
    """``ip link set lo up`` without iproute2 (SIOCGIFFLAGS / SIOCSIFFLAGS); the kernel then gives
    ``lo`` 127.0.0.1/8 and ::1."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s, siocgifflags, struct.pack("16sh", b"lo", 0))
        flags = struct.unpack("16sh", ifreq)[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


# ---------------------------------------------------------------------------------------------
# what is loopback


def loopback_host(host: object) -> bool:
    """A loopback address or name; also none and the wildcard (``0.0.0.0``, ``::``): a bind to all
    interfaces, or a connect to this host."""
    if host is None or host == "":
        return True  # getaddrinfo(None, port) (a server's bind), bind(("", port))
    if not isinstance(host, str):
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False  # any other name: a lookup that can leave the machine
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return ip.is_loopback or ip.is_unspecified


def _is_ip(host: object) -> bool:
    try:
        ipaddress.ip_address(str(host).strip("[]").split("%")[0])
    except ValueError:
        return False
    return True


def egress_reason(family: str, host: object, port: object) -> str | None:
    """Why a socket address is not loopback, or None if it is (``host``: a Unix socket's path)."""
    if family == "AF_UNIX" and isinstance(host, str) and host.startswith(RESOLVER_SOCKETS):
        return "a name lookup through systemd-resolved"
    if family in LOCAL_FAMILIES:
        return None
    if family not in ("AF_INET", "AF_INET6"):
        return f"a {family} socket"
    if port == 53:
        return "a DNS query"
    return None if loopback_host(host) else "not loopback"


# ---------------------------------------------------------------------------------------------
# the record


@dataclass(frozen=True)
class Attempt:
    """One recorded network event that was not loopback."""

    layer: str  # "audit hook" or "strace"
    pid: int
    argv: tuple[str, ...]
    call: str  # the audit event or the syscall
    target: str  # the address, name or URL
    reason: str
    result: str = ""
    parent: tuple[str, ...] = ()  # the command line of the process that started this one

    def describe(self) -> str:
        result = f" = {self.result}" if self.result else ""
        by = f", started by {_short(self.parent, 120)}" if self.parent else ""
        return (
            f"{_short(self.argv, 300)} (pid {self.pid}{by}) {self.call} {self.target}{result}: "
            f"{self.reason} [{self.layer}]"
        )


def _short(argv: tuple[str, ...], limit: int) -> str:
    cmd = shlex.join(argv) if argv else "(command line unknown)"
    return cmd if len(cmd) <= limit else cmd[:limit] + "..."  # `python -c '<a script>'`


@dataclass
class Report:
    attempts: list[Attempt] = field(default_factory=list)
    audit_events: Counter[str] = field(default_factory=Counter)  # event -> count
    strace_calls: Counter[str] = field(default_factory=Counter)  # syscall -> count (with address)
    loopback: Counter[str] = field(default_factory=Counter)  # layer -> loopback/local events
    python_processes: int = 0  # Python programs strace saw start
    hooked: int = 0  # ... of which the audit hook recorded the start
    unhooked: list[str] = field(default_factory=list)  # ... the others: their command lines

    def describe(self) -> str:
        """The attempts grouped by process and target, most frequent first."""
        groups = Counter(a.describe() for a in self.attempts)
        return "\n".join(f"  {n}x {text}" for text, n in groups.most_common())

    def summary(self) -> str:
        return (
            f"audit hook: {sum(self.audit_events.values())} events {dict(self.audit_events)}; "
            f"strace: {sum(self.strace_calls.values())} calls with an address "
            f"{dict(self.strace_calls)}; loopback/local {dict(self.loopback)}; "
            f"non-loopback {len(self.attempts)}; Python processes {self.python_processes}, "
            f"hooked {self.hooked}"
        )


def _audit_target(rec: dict) -> tuple[str, str | None]:
    """(what was reached, why it is not loopback) of one audit record."""
    event = rec["event"]
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"):
        family, address = rec.get("family", "?"), rec.get("address")
        if family in ("AF_INET", "AF_INET6") and isinstance(address, list) and len(address) >= 2:
            host, port = address[0], address[1]
            target = f"[{host}]:{port}" if family == "AF_INET6" else f"{host}:{port}"
            return target, egress_reason(family, host, port)
        path = address if isinstance(address, str) else None  # a Unix socket's
        return f"{family} {address}", egress_reason(family, path, None)
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = rec.get("host")
        if loopback_host(host):
            return f"{host!s}", None
        return f"{host!s}", "not loopback" if _is_ip(host) else "a name lookup"
    if event == "socket.getnameinfo":
        address = rec.get("address") or [None]
        return f"{address}", None if loopback_host(address[0]) else "a reverse lookup"
    if event == "urllib.Request":
        url = str(rec.get("url"))
        parts = urlsplit(url)
        if parts.scheme in ("", "file", "data"):
            return url, None
        return url, None if loopback_host(parts.hostname) else "a URL not on loopback"
    host = rec.get("host")
    return f"{host}:{rec.get('port')}", None if loopback_host(host) else "not loopback"


def read_audit(path: Path, report: Report) -> dict[int, tuple[int, tuple[str, ...]]]:
    """Judge the audit record; return the pids whose hook recorded a start: (parent pid, argv)."""
    started: dict[int, tuple[int, tuple[str, ...]]] = {}
    if not path.exists():
        return started
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "start":
            started[int(rec["pid"])] = (int(rec["ppid"]), tuple(rec.get("argv") or ()))
            continue
        report.audit_events[rec["event"]] += 1
        target, reason = _audit_target(rec)
        if reason is None:
            report.loopback["audit hook"] += 1
        else:
            argv, ppid = tuple(rec.get("argv") or ()), int(rec.get("ppid", 0))
            parent = started[ppid][1] if ppid in started else ()
            report.attempts.append(
                Attempt(
                    "audit hook", int(rec["pid"]), argv, rec["event"], target, reason, "", parent
                )
            )
    return started


_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>(.*)|(\w+)\((.*))$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)([^=]*)$")  # the last "= ...": data may hold one too
_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([\d.]+)"\)')
_INET6 = re.compile(
    r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([0-9a-fA-F:.]+)"'
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"(?:\.\.\.)?')
_UNIX = re.compile(r'sa_family=AF_UNIX, sun_path=("(?:[^"\\]|\\.)*")')
_FAMILY = re.compile(r"sa_family=(\w+)")


def _strace_address(args: str) -> tuple[str, str, int | None] | None:
    """(family, host, port) of the first socket address in a call's text; None if it names none.

    The data a ``sendto`` carries is a quoted string whose quotes strace escapes, so an address
    written inside the data cannot match the patterns, which need the unescaped quotes.
    """
    if m := _INET.search(args):
        return "AF_INET", m.group(2), int(m.group(1))
    if m := _INET6.search(args):
        return "AF_INET6", m.group(2), int(m.group(1))
    if m := _UNIX.search(args):
        return "AF_UNIX", _strings(m.group(1))[0], None
    if m := _FAMILY.search(_QUOTED.sub('""', args)):
        return m.group(1), "", None
    return None


def _strings(text: str) -> list[str]:
    out = []
    for m in _QUOTED.finditer(text):
        raw = m.group(0).removesuffix("...")
        try:
            out.append(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            out.append(raw.strip('"'))
    return out


def _is_python(path: str) -> bool:
    """Whether an executed file is a Python interpreter, or a script that runs one (bin/python,
    the project's shim, is a shell script: it is the Python it then executes that counts)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return False
    if first.startswith(b"#!"):
        return b"python" in first
    return re.fullmatch(r"python[\d.]*", os.path.basename(path)) is not None


def read_strace(
    path: Path, report: Report, started: dict[int, tuple[int, tuple[str, ...]]]
) -> None:
    """Judge the strace log; count the Python programs it saw start, and which of them the audit
    hook recorded (its ``start`` line carries the same pid: both live in the namespace)."""
    pending: dict[int, tuple[str, str]] = {}
    calls: list[tuple[int, int, str, str, str]] = []  # (line, pid, syscall, args, result)
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for n, line in enumerate(lines):
        m = _LINE.match(line)
        if not m:
            continue
        pid = int(m.group(1))
        if m.group(2):  # <... call resumed>rest
            name, head = pending.pop(pid, (m.group(2), ""))
            text = head + m.group(3)
        else:
            name, text = m.group(4), m.group(5)
            if text.endswith("<unfinished ...>"):
                pending[pid] = (name, text.removesuffix("<unfinished ...>"))
                continue
        r = _RESULT.search(text)
        calls.append((n, pid, name, text, f"{r.group(1)}{r.group(2)}".strip() if r else "?"))
    for pid, (name, head) in pending.items():  # still in the call when the log ended
        calls.append((len(lines), pid, name, head, "unfinished"))

    execs: dict[int, list[tuple[int, list[str]]]] = {}
    parents: dict[int, list[tuple[int, int, bool]]] = {}  # tid -> (line, creator, a thread?)
    python_pids: dict[int, list[str]] = {}
    for n, pid, name, text, result in calls:
        if name == "execve" and result == "0":
            strings = _strings(text)  # the file, then argv (the environment is abbreviated)
            execs.setdefault(pid, []).append((n, strings[1:]))
            if strings and _is_python(strings[0]):
                python_pids[pid] = strings[1:]
        elif name in ("clone", "clone3", "fork", "vfork") and result.split()[0].isdigit():
            child = int(result.split()[0])
            parents.setdefault(child, []).append((n, pid, "CLONE_THREAD" in text))

    def created(tid: int, n: int) -> tuple[int, int, bool] | None:
        """How ``tid`` came to be, as of line ``n``: (line, creator, a thread?)."""
        before = [c for c in parents.get(tid, []) if c[0] < n]
        return before[-1] if before else None

    def argv_of(tid: int, n: int, depth: int = 0) -> tuple[str, ...]:
        """The command line ``tid`` (a process or a thread) ran at line ``n``."""
        before = [a for line, a in execs.get(tid, []) if line < n]
        if before:
            return tuple(before[-1])
        origin = created(tid, n)
        return argv_of(origin[1], origin[0], depth + 1) if origin and depth < 1000 else ()

    def parent_argv(tid: int, n: int) -> tuple[str, ...]:
        """The command line of the process that started ``tid``'s process."""
        for _ in range(1000):
            origin = created(tid, n)
            if origin is None:
                return ()
            line, creator, thread = origin
            if not thread:  # the fork that made this process: its creator is the parent
                return argv_of(creator, line)
            tid, n = creator, line
        return ()

    for n, pid, name, text, result in calls:
        if name not in ("connect", "sendto", "sendmsg", "sendmmsg"):
            continue
        address = _strace_address(text)
        if address is None:
            continue  # a connected socket's send: its connect was judged
        family, host, port = address
        if family == "AF_UNSPEC":
            continue
        report.strace_calls[name] += 1
        reason = egress_reason(family, host, port)
        if reason is None:
            report.loopback["strace"] += 1
            continue
        target = f"[{host}]:{port}" if family == "AF_INET6" else f"{host}:{port}"
        if family not in ("AF_INET", "AF_INET6"):
            target = f"{family} {host}".strip()
        report.attempts.append(
            Attempt(
                "strace", pid, argv_of(pid, n), name, target, reason, result, parent_argv(pid, n)
            )
        )

    report.python_processes = len(python_pids)
    report.hooked = len(python_pids.keys() & started)
    report.unhooked = [
        f"pid {pid}: {shlex.join(argv)}" for pid, argv in python_pids.items() if pid not in started
    ]


def check(record: Path, strace_log: Path) -> Report:
    """Read both layers' records into one report."""
    report = Report()
    started = read_audit(record, report)
    read_strace(strace_log, report, started)
    return report


def attempts_of(report: Report, needle: str) -> Iterable[Attempt]:
    """The attempts whose target contains ``needle``."""
    return (a for a in report.attempts if needle in a.target)
