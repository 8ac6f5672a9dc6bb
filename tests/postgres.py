"""A throw-away PostgreSQL server for integration tests (Debian's initdb/pg_ctl, loopback only)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

# loopback only; durability off for speed (the data is thrown away)
CONF = "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n"


def find_pg_bin() -> Path | None:
    """Newest /usr/lib/postgresql/<version>/bin with initdb, pg_ctl, psql, pg_isready; or None."""
    dirs = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    for d in sorted(dirs, key=lambda p: int(p.parent.name), reverse=True):
        if all(os.access(d / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "psql", "pg_isready")):
            return d
    return None


class PostgresServer:
    """initdb + pg_ctl on a free loopback port in a temp dir; stop() always cleans up.

    As root, the binaries run as the ``postgres`` user in a mkdtemp dir it owns: under ``base_dir``
    if postgres can traverse it (pytest's /tmp/pytest-of-root is 0700) and the unix socket path fits
    its 107-byte limit, else under the system temp dir. Socket logins are trusted (the admin side);
    TCP logins on 127.0.0.1 need a password (scram-sha-256). The server log ends in base_dir.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir, self.port, self.bin = Path(base_dir), 0, find_pg_bin()
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self._root: Path | None = None
        self._pid = 0  # the postmaster's

    def _run(self, tool: str, *args: str, input: str | None = None, timeout: float = 60) -> str:
        """Run a PostgreSQL binary (as postgres when we are root, except psql); raise on failure."""
        assert self.bin is not None and self._root is not None
        kw: dict[str, Any] = {"cwd": self._root, "input": input, "timeout": timeout}
        if self._user and tool != "psql":  # initdb/postgres refuse root
            kw |= {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        done = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True, **kw)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def start(self, timeout: float = 60) -> PostgresServer:
        """initdb, configure, pg_ctl start -w (new port on a clash), pg_isready; stop() on failure.

        ``timeout`` bounds the server start; initdb has its own 60 s."""
        if self.bin is None or self._root is not None:
            raise RuntimeError("no PostgreSQL under /usr/lib/postgresql/*/bin, or already started")
        base = self.base_dir.resolve()
        base.mkdir(parents=True, exist_ok=True)
        reachable = not self._user or all(p.stat().st_mode & 0o001 for p in (base, *base.parents))
        parent = base if reachable and len(str(base)) < 75 else tempfile.gettempdir()
        self._root = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
        data, log = self._root / "data", self._root / "server.log"
        try:
            if self._user:
                os.chown(self._root, self._user.pw_uid, self._user.pw_gid)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256"]  # TCP needs a password
            opts = ["-U", "postgres", "-E", "UTF8", "--no-locale", "-N", *auth]
            self._run("initdb", "-D", str(data), *opts)
            with open(data / "postgresql.conf", "a") as conf:
                sock = str(self._root).replace("'", "''")
                conf.write(f"{CONF}unix_socket_directories = '{sock}'\n")
            for attempt in range(3):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    self.port = s.getsockname()[1]
                cmd = ["start", "-w", "-t", str(int(timeout)), "-D", str(data), "-l", str(log)]
                try:
                    self._run("pg_ctl", *cmd, "-o", f"-p {self.port}", timeout=timeout + 10)
                    break
                except RuntimeError:
                    if attempt == 2 or "already in use" not in log.read_text(errors="replace"):
                        raise
            self._pid = int((data / "postmaster.pid").read_text().split()[0])
            self._run("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "10")
            return self
        except BaseException as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no server log)"
            self.stop()
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt & co. as they are
            raise RuntimeError(f"PostgreSQL did not start: {exc}\n--- log ---\n{tail}") from exc

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A non-superuser login role and a database it owns; returns the asyncpg SQLAlchemy URL."""
        sql = 'CREATE ROLE :"o" LOGIN PASSWORD :\'pw\';\nCREATE DATABASE :"db" OWNER :"o";\n'
        args = ["-h", str(self._root), "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        args += ["-v", f"o={owner}", "-v", f"pw={password}", "-v", f"db={name}"]  # psql quotes them
        self._run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, input=sql)
        user, pw, db = (quote(s, safe="") for s in (owner, password, name))
        return f"postgresql+asyncpg://{user}:{pw}@127.0.0.1:{self.port}/{db}"

    def query(self, sql: str, database: str) -> str:
        """Run one SQL statement as the superuser over the socket; its unaligned output."""
        args = ["-h", str(self._root), "-p", str(self.port), "-U", "postgres", "-d", database]
        return self._run(
            "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args, "-c", sql
        ).strip()

    def _alive(self, seen: set[int]) -> list[int]:
        """Add the postmaster's descendants to seen; return the non-zombies in it. (Its children
        setsid() themselves and its orphans move to pid 1: no session or parent test works.)"""
        ps = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,stat="], capture_output=True, text=True)
        procs = {int(p): (int(pp), st) for p, pp, st in map(str.split, ps.stdout.splitlines())}
        seen |= {self._pid} if self._pid in procs else set()
        while new := {p for p, (pp, _) in procs.items() if pp in seen} - seen:
            seen |= new
        return [p for p in seen if p in procs and not procs[p][1].startswith("Z")]

    def stop(self) -> None:
        """pg_ctl stop -m fast, SIGKILL what is left of the cluster after 2 s, rm the temp dir."""
        if self._root is None:
            return
        data, seen = self._root / "data", set[int]()
        with contextlib.suppress(OSError, ValueError, IndexError):
            self._pid = self._pid or int((data / "postmaster.pid").read_text().split()[0])
        if self._alive(seen):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-t", "20", "-D", str(data))
        t0 = time.monotonic()  # pg_ctl -w only waits for postmaster.pid to vanish, not for exits
        while left := self._alive(seen):
            if time.monotonic() - t0 > 10:
                raise RuntimeError(f"postgres processes {left} survived stop()")
            for pid in left if time.monotonic() - t0 > 2 else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if (self._root / "server.log").exists():  # keep the log for post-mortems
            shutil.copyfile(self._root / "server.log", self.base_dir / "postgres.log")
        shutil.rmtree(self._root, ignore_errors=True)
        self._root, self._pid = None, 0

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
