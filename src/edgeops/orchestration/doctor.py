"""``edgeops doctor``: is this host ready to run the pipeline? One line per check, with the fix.

Every check is a small function returning a :class:`Check`. None may hang: network calls time out
within 5 s, and when no Prefect server answers, the pool, worker and deployment checks are skipped
(one FAIL for the server instead of a cascade). DVC and Prefect are imported only by the checks
that need them, Prefect only after :meth:`Orchestration.apply_client_env`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from edgeops.deploy.targets import AgentClient, AgentError, Target, load_targets
from edgeops.errors import EdgeopsError
from edgeops.offline import TELEMETRY_OFF
from edgeops.orchestration import processes
from edgeops.orchestration.settings import Orchestration
from edgeops.params import load_params

Status = Literal["OK", "WARN", "FAIL"]
GIB = 1024**3
TIMEOUT = 5.0  # seconds: the longest any one network call may take
TARGET_TIMEOUT = 3.0
_ON, _OFF = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
UP = "edgeops up"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was looked at, what was found, how to fix a problem."""

    name: str
    status: Status
    detail: str
    fix: str | None = None

    def lines(self) -> str:
        """``OK   name: detail``; a WARN or FAIL adds an indented ``fix:`` line."""
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return text + (f"\n     fix: {self.fix}" if self.fix and self.status != "OK" else "")


def check_python() -> Check:
    """edgeops is built and locked for Python 3.11."""
    c, v = partial(Check, "python"), sys.version_info
    found = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if (v.major, v.minor) == (3, 11):
        return c("OK", found)
    fix = "use Python 3.11 (`make demo` builds .venv from uv.lock)"
    return c("FAIL" if v < (3, 11) else "WARN", f"{found}: edgeops is built for 3.11", fix)


def check_cpu() -> Check:
    """Training, the Prefect server and a worker share the cores: two at least."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2:
        detail = f"{cores} core: training and the server compete"
        return Check("cpu", "WARN", detail, "give this host 2 cores or more")
    return Check("cpu", "OK", f"{cores} cores")


def check_memory(meminfo: Path = Path("/proc/meminfo")) -> Check:
    """Total memory from /proc/meminfo (or a lower cgroup v2 limit) and what is available."""
    c = partial(Check, "memory")
    try:
        pairs = (line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        kib = {key: int(value.split()[0]) for key, value in pairs}
    except (OSError, ValueError, IndexError) as exc:
        return c("WARN", f"cannot read {meminfo}: {exc}", "check the memory by hand (free -g)")
    total, available = kib.get("MemTotal", 0) * 1024, kib.get("MemAvailable", 0) * 1024
    with contextlib.suppress(OSError, ValueError):  # no cgroup v2 limit: "max", or no file
        total = min(total, int(Path("/sys/fs/cgroup/memory.max").read_text()))
    detail = f"{total / GIB:.1f} GiB total, {available / GIB:.1f} GiB available"
    if total < 4 * GIB:
        return c("WARN", f"{detail} (less than 4 GiB)", "give this host 4 GiB or more")
    return c("OK", detail)


def check_disk(path: Path) -> Check:
    """Free space where the DVC cache lives (measured at its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / GIB
    c, detail = partial(Check, "disk"), f"{free:.1f} GiB free at {path}"
    fix = "free space, or move the DVC cache to a bigger disk: dvc cache dir /bigger/disk/path"
    if free < 1:
        return c("FAIL", f"{detail} (less than 1 GiB)", fix)
    if free < 5:
        return c("WARN", f"{detail} (less than 5 GiB)", fix)
    return c("OK", detail)


def local_api_url(s: Orchestration) -> str:
    """The API URL at orchestration.host:port (a wildcard host is reached over loopback)."""
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    return f"http://{host}:{s.port}/api"


def check_port(s: Orchestration, server_answers: bool) -> Check:
    """orchestration.port: a Prefect server answers there, or the port is free for it."""
    where = local_api_url(s).removeprefix("http://").removesuffix("/api")
    host, port = where.rsplit(":", 1)
    if server_answers:
        return Check("port", "OK", f"{where}: the Prefect server answers")
    if not processes.port_open(host, int(port)):
        return Check("port", "OK", f"{where} is free for the Prefect server")
    detail = f"port {port} on {host} is held by another program (not a Prefect server)"
    fix = "stop that program, or set orchestration.port in params.yaml to a free port"
    return Check("port", "FAIL", detail, fix)


def check_git(root: Path) -> Check:
    """git is installed and the workspace is a git work tree (DVC and the lineage need it)."""
    git = shutil.which("git")
    if not git:
        return Check("git", "FAIL", "git is not on PATH", "install git (apt-get install git)")
    run = partial(subprocess.run, cwd=root, capture_output=True, text=True, timeout=TIMEOUT)
    top = run([git, "rev-parse", "--show-toplevel"])
    if top.returncode != 0:
        return Check("git", "FAIL", f"{root} is not a git work tree", f"git init {root}")
    branch = run([git, "symbolic-ref", "--short", "-q", "HEAD"]).stdout.strip()
    return Check("git", "OK", f"work tree {top.stdout.strip()} (branch {branch or 'detached'})")


def check_dvc_repo(root: Path) -> Check:
    """.dvc/ and dvc.yaml in the workspace."""
    c = partial(Check, "dvc repo")
    if not (root / ".dvc").is_dir():
        return c("FAIL", f"{root} is not a DVC repository (no .dvc/)", f"cd {root} && dvc init")
    if not (root / "dvc.yaml").is_file():
        return c("FAIL", f"no dvc.yaml in {root}", "use the params.yaml next to dvc.yaml")
    return c("OK", f"{root} (.dvc/, dvc.yaml)")


def load_dvc_config(root: Path) -> dict[str, Any]:
    """DVC's merged config (system, global, .dvc/config, config.local), local paths resolved."""
    from dvc.config import Config, ConfigError

    try:
        return dict(Config(dvc_dir=str(root / ".dvc")))
    except ConfigError as exc:
        raise EdgeopsError(f"DVC config: {exc}", fix="correct it (dvc config --list)") from None


def _write_error(directory: Path) -> str | None:
    """None if a file can be created in and deleted from ``directory``, else why not."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".edgeops-doctor-"):
            return None
    except OSError as exc:
        return f"not writable ({exc.strerror or exc})"


def check_dvc_remote(root: Path, conf: Mapping[str, Any]) -> Check:
    """The default remote is set; a local one exists (or can be created) and is writable."""
    c = partial(Check, "dvc remote")
    name = (conf.get("core") or {}).get("remote")
    url = str(((conf.get("remote") or {}).get(name) or {}).get("url") or "") if name else ""
    if not url:
        what = f"default remote {name!r} has no url" if name else "no default DVC remote"
        return c("FAIL", what, f"dvc remote add -d {name or 'localstore'} /srv/edgeops-dvc-store")
    if "://" in url and not url.startswith("file://"):
        return c("WARN", f"{name} -> {url}: not checked (not a local path)", "dvc status --cloud")
    path = Path(url.removeprefix("file://")).expanduser()
    path = path if path.is_absolute() else root / ".dvc" / path  # DVC: relative to .dvc/
    fix = f"mkdir -p {path} writable by this user (or: dvc remote modify {name} url DIR)"
    if path.exists():
        problem = _write_error(path) if path.is_dir() else "not a directory"
        if problem:
            return c("FAIL", f"{name} -> {path}: {problem}", fix)
        return c("OK", f"{name} -> {path} (writable)")
    if path.parent.is_dir() and not _write_error(path.parent):
        return c("OK", f"{name} -> {path} (the first dvc push creates it)")
    return c("FAIL", f"{name} -> {path}: missing, and so is a writable parent", fix)


def check_signing_key() -> Check:
    """The bundle signing key exists and only its owner can read it."""
    from edgeops.keys import PRIVATE_NAME, PUBLIC_NAME, default_key_dir

    c, private = partial(Check, "signing key"), default_key_dir() / PRIVATE_NAME
    if not private.is_file():
        return c(
            "FAIL", f"no signing key at {private}", "edgeops keys init (or set EDGEOPS_KEY_DIR)"
        )
    mode = private.stat().st_mode & 0o777
    if mode & 0o077:  # load_private_key refuses such a key: the bundle stage would fail
        detail = f"{private} has mode {mode:o}: others can read it (signing refuses it)"
        return c("FAIL", detail, f"chmod 600 {private}")
    if not (private.parent / PUBLIC_NAME).is_file():
        detail = f"{private} has no {PUBLIC_NAME} next to it"
        return c("WARN", detail, f"restore {PUBLIC_NAME}: devices verify bundles with it")
    return c("OK", f"{private} (mode {mode:o})")


def check_records(params_path: str | Path) -> Check:
    """The registry and the audit log are what edgeops last signed (hash chain + signature)."""
    import time

    from edgeops.deploy.operations import DeployContext
    from edgeops.deploy.records import RecordsBroken
    from edgeops.monitor.decision import CLOCK_SKEW_SECONDS, entry_time

    c = partial(Check, "deploy records")
    ctx = DeployContext.load(params_path)
    try:
        state = ctx.verify_records()
    except RecordsBroken as exc:
        return c("FAIL", exc.problem.removeprefix("the deploy records do not verify: "), exc.fix)
    if not state.signed:
        return c("OK", "none yet: the first deploy starts the signed audit chain")
    ahead = time.time() + CLOCK_SKEW_SECONDS
    future = [
        f"{e.get('event')} at {e.get('at')}"
        for e in ctx.audit.read()
        if (entry_time(e) or 0) > ahead
    ]
    if future:
        detail = f"{len(future)} audit entries dated in the future: {', '.join(future[:3])}"
        return c("WARN", detail, "check this host's clock (timedatectl); the cooldown ignores them")
    return c("OK", f"{state.entries} audit entries chained and signed, the registry as signed")


def check_target(t: Target, timeout: float = TARGET_TIMEOUT) -> Check:
    """One edge target: reachable, its deploy token at hand, its active model version."""
    c, client = partial(Check, f"target {t.name}"), AgentClient(t, timeout=timeout)
    reach = "start the agent (edgeops edge serve); check the url and token in the targets file"
    try:
        probe, _ = client._request("GET", "/readyz", auth=False)  # 200 ready, 503 no model
        if probe not in (200, 503):
            return c(
                "WARN", f"{t.url} answers HTTP {probe} on /readyz: not an edgeops agent", reach
            )
        t.token()
        active = (client.status().get("active") or {}).get("version")
    except AgentError as exc:
        where = t.token_env or t.token_file
        fix = f"set {where} to this agent's deploy token" if exc.status in (401, 403) else reach
        return c("WARN", exc.problem.removeprefix(f"target {t.name}: "), fix)
    except EdgeopsError as exc:  # the token is missing
        problem = exc.problem.removeprefix(f"target {t.name}: ")
        return c("WARN", f"{t.url} answers, but no deploy token: {problem}", exc.fix)
    if probe != 200 or not active:
        return c("WARN", f"{t.url} answers, but no model is ready", f"edgeops deploy -t {t.name}")
    return c("OK", f"{active} ready at {t.url}")


def check_targets(params: Mapping[str, Any], root: Path) -> list[Check]:
    """Every target of deploy.targets, probed in parallel (each call within 3 s)."""
    path = Path((params.get("deploy") or {}).get("targets") or "deploy/targets.yaml")
    try:
        targets = load_targets(path if path.is_absolute() else root / path).targets
    except EdgeopsError as exc:
        return [Check("targets", "WARN", exc.problem, exc.fix or "see deploy/targets.yaml")]
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(check_target, targets))


def check_server(s: Orchestration, answers: bool, port: Check) -> Check:
    """The Prefect server answers /api/health at the URL clients use."""
    if answers:
        return Check("prefect server", "OK", f"healthy at {s.api_url}")
    fix = f"start it with `{UP}` (or set PREFECT_API_URL to where it runs)"
    if port.status == "FAIL":
        fix = f"free port {s.port} or choose another (see the port check), then `{UP}`"
    detail = f"no Prefect server answers at {s.api_url} (pool, worker, deployment not checked)"
    return Check("prefect server", "FAIL", detail, fix)


def _pool_and_worker(s: Orchestration, pool: Any) -> list[Check]:
    """The work pool line, and the online workers when the pool exists."""
    from edgeops.orchestration.client import online_workers

    if pool is None:
        return [Check("work pool", "FAIL", f"{s.work_pool} does not exist", UP)]
    status = "WARN" if pool.is_paused else "OK"
    paused = " (paused)" if pool.is_paused else ""
    fix = f"prefect work-pool resume {s.work_pool}" if pool.is_paused else None
    checks = [Check("work pool", status, f"{s.work_pool} ({pool.type}){paused}", fix)]
    if workers := online_workers(s.work_pool):
        return [*checks, Check("worker", "OK", f"online: {', '.join(workers)}")]
    fix = f"{UP} (or: prefect worker start --pool {s.work_pool})"
    return [*checks, Check("worker", "FAIL", f"no worker polls {s.work_pool}", fix)]


def _deployment(s: Orchestration, deployment: Any) -> Check:
    """This project's training deployment line: its pool and active schedules."""
    c, fix = partial(Check, "deployment"), f"{UP} (applies prefect.yaml)"
    name = s.deployment("training")
    if deployment is None:
        return c("WARN", f"{name} is not on the server", fix)
    schedules = [d.schedule for d in deployment.schedules if d.active]
    crons = [
        f"{getattr(x, 'cron', x)} {getattr(x, 'timezone', '') or ''}".strip() for x in schedules
    ]
    if not crons:
        return c("WARN", f"{name} has no active schedule", fix)
    pool = deployment.work_pool_name
    return c("OK", f"{name} on pool {pool}, schedule {'; '.join(crons)}")


def _projects(s: Orchestration) -> list[Check]:
    """Every project the server knows, one line each; one whose folder is gone is a WARN."""
    from edgeops.orchestration.projects import known_projects

    checks = []
    for p in known_projects():
        here = " (this one)" if p.folder and p.folder.resolve() == s.workspace.resolve() else ""
        detail = f"{p.name}{here}: model {p.model}, {', '.join(p.deployments)}, in {p.folder}"
        if p.folder_gone:
            names = " ".join(p.deployments)
            fix = (
                f"if it moved, run `edgeops up` in its new folder (its deployments follow); if "
                f"it is gone: prefect deployment delete {names.replace(' ', ' && prefect deployment delete ')}"
            )
            checks.append(Check("project", "WARN", f"{detail}: the folder holds no project", fix))
        else:
            checks.append(Check("project", "OK", detail))
    return checks


def _or_none(read: Callable[[str], Any], name: str, missing: type[Exception]) -> Any:
    """``read(name)``, or None when the server has no such object."""
    try:
        return read(name)
    except missing:
        return None


def check_prefect(s: Orchestration) -> list[Check]:
    """Auth, work pool, worker and the training deployment: each call within 5 s, no retries."""
    s.apply_client_env()
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT as REQUEST_TIMEOUT
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from edgeops.orchestration.client import prefect_errors

    updates = {PREFECT_API_URL: s.api_url, REQUEST_TIMEOUT: TIMEOUT, PREFECT_CLIENT_MAX_RETRIES: 0}
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        try:
            with prefect_errors(s):  # maps a 401 to its fix; a missing pool is no error here
                pool = _or_none(client.read_work_pool, s.work_pool, missing=ObjectNotFound)
        except EdgeopsError as exc:  # the other calls would fail the same way: stop here
            return [Check("prefect auth", "FAIL", exc.problem, exc.fix)]
        auth = "PREFECT_API_AUTH_STRING" if os.environ.get("PREFECT_API_AUTH_STRING") else "none"
        checks = [Check("prefect auth", "OK", f"API calls accepted (auth: {auth})")]
        checks += _pool_and_worker(s, pool)
        deployment = _or_none(
            client.read_deployment_by_name, s.deployment("training"), ObjectNotFound
        )
        projects = _projects(s)
    return [*checks, _deployment(s, deployment), *projects]


def check_telemetry(dvc: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> Check:
    """Every switch of TELEMETRY_OFF is off (not overridden to on), and DVC's core.analytics."""
    bad = [
        k
        for k, off in TELEMETRY_OFF.items()
        if (env.get(k) or "").strip().lower() not in (_ON if off in _ON else _OFF)
    ]
    found = [f"{k}={env[k]!r}" if k in env else f"{k} unset" for k in bad]
    export = " ".join(f"{k}={TELEMETRY_OFF[k]}" for k in bad)
    fixes = [f"export {export} (or unset them: edgeops switches them off)"] if bad else []
    analytics = (dvc.get("core") or {}).get("analytics", True) is False
    if dvc and not analytics:  # a plain `dvc` call, without DVC_NO_ANALYTICS, would report
        found.append("DVC core.analytics is not false")
        fixes.append("dvc config core.analytics false")
    if found:
        return Check("telemetry", "WARN", "not off: " + ", ".join(found), "; ".join(fixes))
    extra = ", DVC core.analytics false" if dvc else ""
    return Check("telemetry", "OK", f"all {len(TELEMETRY_OFF)} switches off{extra}")


def check_lineage(s: Orchestration) -> Check:
    """orchestration.lineage.commit: each new model version is committed and tagged in git."""
    if (s.lineage or {}).get("commit"):
        return Check("lineage", "OK", "each new model version is committed and tagged")
    detail = "orchestration.lineage.commit is false: runs are not reproducible from git tags"
    return Check("lineage", "WARN", detail, "set it true in your deployment repository")


def _failure(name: str, exc: Exception) -> Check:
    """The FAIL line for a check that raised."""
    if isinstance(exc, EdgeopsError):
        return Check(name, "FAIL", exc.problem, exc.fix)
    if isinstance(exc, ImportError):
        fix = "pip install 'edgeops[pipeline]' (or `make demo`)"
        return Check(name, "FAIL", f"{exc.name or exc} is not installed", fix)
    detail = f"the check failed: {type(exc).__name__}: {exc}"[:300]  # a timeout, a surprise
    return Check(name, "FAIL", detail, "run it again; if it persists, report this line")


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; one that breaks becomes a FAIL line instead of hiding the others."""
    try:
        out = fn()
    except Exception as exc:
        return [_failure(name, exc)]
    return out if isinstance(out, list) else [out]


def run_checks(settings: Orchestration, params_path: str | Path) -> list[Check]:
    """All checks, in the order they are shown."""
    root, params = settings.workspace, load_params(params_path)
    dvc: dict[str, Any] = {}
    dvc_error: list[Check] = []
    if (root / ".dvc").is_dir():
        try:
            dvc = load_dvc_config(root)
        except Exception as exc:
            dvc_error = [_failure("dvc remote", exc)]
    cache = Path((dvc.get("cache") or {}).get("dir") or root / ".dvc" / "cache")
    local_up = processes.healthy(local_api_url(settings))
    remote = local_api_url(settings) != settings.api_url
    up = processes.healthy(settings.api_url) if remote else local_up
    (port,) = _guarded("port", lambda: check_port(settings, local_up))
    plan: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("python", check_python),
        ("cpu", check_cpu),
        ("memory", check_memory),
        ("disk", lambda: check_disk(cache)),
        ("port", lambda: port),
        ("git", lambda: check_git(root)),
        ("dvc repo", lambda: check_dvc_repo(root)),
        ("dvc remote", lambda: check_dvc_remote(root, dvc) if dvc else dvc_error),
        ("signing key", check_signing_key),
        ("deploy records", lambda: check_records(params_path)),
        ("targets", lambda: check_targets(params, root)),
        ("prefect server", lambda: check_server(settings, up, port)),
        ("prefect", lambda: check_prefect(settings) if up else []),
        ("telemetry", lambda: check_telemetry(dvc)),
        ("lineage", lambda: check_lineage(settings)),
    ]
    return [check for name, fn in plan for check in _guarded(name, fn)]
