"""Air-gapped by proof: the whole lifecycle runs in a network namespace that has loopback only, with
every connection attempt of every process recorded, and not one of them leaves loopback.

The lifecycle (tests/egress/lifecycle.py): an agent, ``dvc repro``, ``edgeops deploy``, ``edgeops
predict``, ``edgeops up`` (Prefect server + a process worker) running a ``training`` and a
``monitoring`` flow, ``edgeops simulate``, ``edgeops monitor``, the Evidently UI; each step checked.
The record (tests/egress/recorder.py): an audit hook in every Python process (sitecustomize.py on
PYTHONPATH: names looked up, addresses connected to) and ``strace -f`` on every process and thread
(``connect``/``sendto``/``sendmsg``: the uvloop servers' and non-Python programs' too).

A control first proves the recorder sees and names what it must: a Python process connecting to
192.0.2.1 (TEST-NET-1) and looking up example.com, a uvloop connect (invisible to the audit hook)
and a shell's ``/dev/tcp`` connect (no Python at all).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, tool_env
from tests.egress.recorder import Report, attempts_of, check, run_in_namespace

pytestmark = pytest.mark.integration

LIFECYCLE_BUDGET = 330  # seconds the driver may take (measured: 105-160 s on a shared 2-core VM)

CONTROL = textwrap.dedent("""
    import socket, subprocess, sys
    from tests.egress.recorder import bring_up_loopback

    bring_up_loopback()
    s = socket.socket()
    try:
        s.connect(("192.0.2.1", 80))
    except OSError as e:
        print("connect 192.0.2.1:80:", e)
    try:
        socket.getaddrinfo("example.com", 443)
    except OSError as e:
        print("lookup example.com:", e)
    uvloop = (
        "import asyncio, uvloop\\n"
        "async def main():\\n"
        "    try:\\n"
        "        await asyncio.open_connection('192.0.2.2', 81)\\n"
        "    except OSError as e:\\n"
        "        print('uvloop connect 192.0.2.2:81:', e)\\n"
        "uvloop.run(main())\\n"
    )
    subprocess.run([sys.executable, "-c", uvloop], timeout=60)
    subprocess.run(["bash", "-c", "exec 3<>/dev/tcp/192.0.2.3/82"], timeout=60)
    with socket.create_server(("127.0.0.1", 0)) as server:  # loopback: recorded, not flagged
        socket.create_connection(server.getsockname()).close()
""")


def _need_tools() -> None:
    missing = [t for t in ("unshare", "strace", "bash") if shutil.which(t) is None]
    assert not missing, f"the egress test needs {missing} (.ci/run installs them on Debian)"


def _recorded(tmp_path: Path, argv: list[str], timeout: float) -> tuple[int, str, Report]:
    """Run ``argv`` (from the repository root) recorded in the namespace: exit code, output, report."""
    _need_tools()
    proc, record, strace_log = run_in_namespace(argv, tmp_path / "ns", tool_env(), REPO, timeout)
    output = (tmp_path / "ns/out.log").read_text(errors="replace")
    report = check(record, strace_log)
    print(report.summary())
    return proc.returncode, output, report


def test_the_recorder_catches_and_names_non_loopback_attempts(tmp_path: Path) -> None:
    code, output, report = _recorded(tmp_path, [sys.executable, "-c", CONTROL], timeout=120)
    assert code == 0, output
    assert "Network is unreachable" in output  # the namespace has no way out
    flagged = report.describe()
    # the audit hook: the Python process, its address and the name it looked up
    hook = [a for a in report.attempts if a.layer == "audit hook"]
    assert {(a.call, a.target) for a in hook} >= {
        ("socket.connect", "192.0.2.1:80"),
        ("socket.getaddrinfo", "example.com"),
    }, flagged
    assert all(a.argv[:2] == (sys.executable, "-c") for a in hook), flagged
    # strace: the same connect, the lookup's query to the resolver (port 53, any address), the
    # uvloop connect the audit hook cannot see, the shell's connect; each with its command line
    by_strace = {a.target: a for a in report.attempts if a.layer == "strace"}
    assert {"192.0.2.1:80", "192.0.2.2:81", "192.0.2.3:82"} <= by_strace.keys(), flagged
    lookups = ("a DNS query", "a name lookup through systemd-resolved")
    assert any(a.reason in lookups for a in by_strace.values()), flagged
    assert "uvloop" in " ".join(by_strace["192.0.2.2:81"].argv), flagged
    assert by_strace["192.0.2.2:81"].parent[:2] == (sys.executable, "-c"), flagged  # who started it
    assert by_strace["192.0.2.3:82"].argv[0] == "bash", flagged
    assert "ENETUNREACH" in by_strace["192.0.2.1:80"].result
    assert not list(attempts_of(report, "127.0.0.1")), flagged
    assert report.loopback["audit hook"] >= 2 and report.loopback["strace"] >= 1
    # each Python process of the namespace ran the hook (the driver and the uvloop one)
    assert report.python_processes == report.hooked == 2, report.unhooked


def test_the_whole_lifecycle_completes_offline_and_nothing_leaves_loopback(
    tmp_path: Path, signing_keys: Path
) -> None:
    result = tmp_path / "lifecycle.json"
    argv = [
        sys.executable,
        "-m",
        "tests.egress.lifecycle",
        "--root",
        str(tmp_path / "lifecycle"),
        "--result",
        str(result),
        "--budget",
        str(LIFECYCLE_BUDGET),
    ]
    code, output, report = _recorded(tmp_path, argv, timeout=LIFECYCLE_BUDGET + 60)
    steps = json.loads(result.read_text())["steps"] if result.exists() else []
    for step in steps:
        print(f"{step['seconds']:6.1f} s  {'ok' if step['ok'] else 'FAILED'}  {step['step']}")
    failed = [s for s in steps if not s["ok"]]
    status = f"lifecycle exit {code}, failed steps: {failed}\n{output[-6000:]}"
    assert not report.attempts, (
        f"{len(report.attempts)} connection attempts beyond loopback:\n{report.describe()}\n"
        + status
    )
    assert code == 0 and steps and not failed, status
    assert steps[-2]["step"] == "the Evidently UI answers on loopback", [s["step"] for s in steps]
    # the recorder reached every Python process (PYTHONPATH survived bin/python, DVC's stages, the
    # Prefect worker's flow runs, uvicorn, evidently ui) and saw the lifecycle's loopback traffic
    assert not report.unhooked, (
        "the audit hook did not run in (strace still recorded them):\n" + "\n".join(report.unhooked)
    )
    assert report.python_processes >= 30, report.summary()
    assert report.loopback["audit hook"] > 100 and report.loopback["strace"] > 100, report.summary()
