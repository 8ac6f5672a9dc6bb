"""Edge targets (``deploy/targets.yaml``) and a small HTTP client for their agents.

    public_key: ~/.config/edgeops/keys/signing.pub   # what the agents trust (checked before upload)
    targets:
      - name: line-1
        url: http://10.0.4.21:8710
        site: winterthur
        tags: [milling]
        canary: true                  # gets the new model first
        token_env: EDGEOPS_TOKEN_LINE1   # the deploy token: an environment variable ...
      - name: line-2
        url: http://10.0.4.22:8710
        token_file: /etc/edgeops/line-2.token   # ... or a file (first line; a relative path is
                                                 # in the key directory, as `edgeops agent
                                                 # start` writes them: line-2-deploy.token)

No secrets in this file: only where to find them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeops.edge.header_text import encode
from edgeops.errors import EdgeopsError


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    site: str = ""
    tags: tuple[str, ...] = ()
    canary: bool = False
    token_env: str | None = None
    token_file: str | None = None

    def token(self) -> str:
        if self.token_file:
            p = Path(self.token_file).expanduser()
            if not p.is_absolute():  # a bare name: in the key directory (edgeops agent start)
                from edgeops.keys import default_key_dir

                p = default_key_dir() / p
            if not p.is_file():
                raise EdgeopsError(
                    f"target {self.name}: token file {p} not found",
                    fix="create it, or use token_env",
                )
            lines = p.read_text().strip().splitlines()
            if not lines or not lines[0].strip():
                raise EdgeopsError(f"target {self.name}: token file {p} is empty")
            return lines[0].strip()
        if self.token_env:
            value = os.environ.get(self.token_env, "").strip()
            if not value:
                raise EdgeopsError(
                    f"target {self.name}: environment variable {self.token_env} is not set",
                    fix=f"export {self.token_env}=<the agent's deploy token>",
                )
            return value
        raise EdgeopsError(
            f"target {self.name} names no token_env or token_file",
            fix="add one to the targets file",
        )


@dataclass
class Targets:
    targets: list[Target]
    public_key: Path | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def select(self, names: list[str] | None) -> list[Target]:
        """The named targets (all when ``names`` is empty), canary first."""
        by_name = {t.name: t for t in self.targets}
        if names:
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise EdgeopsError(
                    f"unknown target(s) {unknown} in {self.path}",
                    fix=f"known targets: {sorted(by_name)}",
                )
            chosen = [by_name[n] for n in names]
        else:
            chosen = list(self.targets)
        return sorted(chosen, key=lambda t: not t.canary)  # stable: canary first, file order after


def load_targets(path: str | Path) -> Targets:
    """Read and check the targets file."""
    import yaml

    from edgeops.params import parse_yaml

    path = Path(path)
    if not path.is_file():
        raise EdgeopsError(
            f"targets file {path} not found",
            fix="create it (the format: edgeops's docs/deploying.md, or `edgeops init` a project)",
        )
    try:
        raw = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EdgeopsError(f"{path} is not valid YAML: {exc}") from exc
    items = raw.get("targets") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise EdgeopsError(
            f"{path} lists no targets", fix="add a 'targets:' list with name and url"
        )
    targets, seen = [], set()
    for i, t in enumerate(items):
        if not isinstance(t, dict) or not t.get("name") or not t.get("url"):
            raise EdgeopsError(f"{path}: targets[{i}] needs a name and a url")
        if t["name"] in seen:
            raise EdgeopsError(f"{path}: target name {t['name']!r} appears twice")
        for secret in ("token", "password", "deploy_token"):
            if secret in t:
                raise EdgeopsError(
                    f"{path}: target {t['name']} holds a secret ({secret}); this file is committed",
                    fix="use token_env or token_file instead",
                )
        seen.add(t["name"])
        targets.append(
            Target(
                name=str(t["name"]),
                url=str(t["url"]).rstrip("/"),
                site=str(t.get("site", "")),
                tags=tuple(t.get("tags") or ()),
                canary=bool(t.get("canary", False)),
                token_env=t.get("token_env"),
                token_file=t.get("token_file"),
            )
        )
    pub = raw.get("public_key")
    return Targets(targets=targets, public_key=Path(pub).expanduser() if pub else None, path=path)


class AgentError(EdgeopsError):
    """An agent that did not answer as it should.

    ``kind``: ``unreachable`` (no connection: worth a retry), ``timeout`` (its answer did not
    arrive within the time limit), ``misbehaving`` (it answered what no edgeops agent answers: a
    redirect, an oversized or malformed page, a cursor that does not advance) or ``http`` (an
    error status, ``status`` says which). The first three set the target aside and name it; an
    error status (a wrong token) is the operator's to fix.
    """

    def __init__(
        self,
        target: str,
        problem: str,
        status: int | None = None,
        code: str | None = None,
        kind: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(f"target {target}: {problem}", fix=fix)
        self.target, self.status, self.code = target, status, code
        self.kind = kind or ("http" if status is not None else "unreachable")


def misbehaving(
    target: str, problem: str, code: str | None = None, fix: str | None = None
) -> AgentError:
    """The error for an agent whose answer cannot be collected as it is (no edgeops agent
    answers so, or its log was reset): it is named and set aside, the others go on."""
    return AgentError(
        target, f"misbehaving agent: {problem}", code=code, kind="misbehaving", fix=fix
    )


#: the code of an answer over the byte limit (a collector may ask again for fewer rows)
TOO_LARGE = "answer_too_large"


#: the largest answer read from an agent unless a call says otherwise (status, predict, ...)
MAX_ANSWER_BYTES = 16 << 20
#: a bundle download (the agent's own default upload limit is 256 MiB)
MAX_BUNDLE_BYTES = 1 << 30


class AgentClient:
    """The deploy side of the agent API, over plain HTTP (stdlib only).

    Every request has a total time limit (``timeout``, and, with ``budget``, what is left of
    that many seconds from the client's first request: a whole collection's, named by the
    setting ``budget_setting``), a cap on the bytes it reads, and follows no redirect: a ``3xx``
    is an error naming where it pointed, so the bearer token never goes to another address.
    """

    def __init__(
        self,
        target: Target,
        timeout: float = 30.0,
        budget: float | None = None,
        budget_setting: str = "",
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.budget, self.budget_setting = budget, budget_setting
        #: time.monotonic() by which every request must be done (None: ``timeout`` each); set
        #: by the first request, so a wait before it (for a lock) does not count
        self.deadline: float | None = None
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.target.token()
        return self._token

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        ctype: str | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> tuple[int, bytes]:
        hdrs = {"Authorization": f"Bearer {self.token}"} if auth else {}
        if ctype:
            hdrs["Content-Type"] = ctype
        hdrs.update(headers or {})
        limit, within = self.timeout, f"{self.timeout:g} s"
        if self.budget is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.budget
        if self.deadline is not None and self.deadline - time.monotonic() < limit:
            limit = self.deadline - time.monotonic()
            within = f"its time limit of {self.budget:g} s ({self.budget_setting})"
        if limit <= 0:
            problem = f"agent at {self.target.url} did not finish within {within}"
            raise AgentError(self.target.name, problem, kind="timeout")
        return _exchange(self.target, method, path, body, hdrs, limit, within, max_bytes)

    def _json(
        self, method: str, path: str, payload: Any = None, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self._request(
            method, path, body, "application/json" if body is not None else None, **kw
        )
        if status not in ok:
            raise self._error(status, data)
        try:
            return json.loads(data) if data else None
        except (ValueError, RecursionError):  # a body that is not UTF-8, or nested too deep
            raise misbehaving(
                self.target.name,
                f"{method} {path.split('?')[0]} answered {len(data):,} bytes that are not JSON",
            ) from None

    def _error(self, status: int, data: bytes) -> AgentError:
        try:
            err = json.loads(data)["error"]
            code, message = err.get("code"), err.get("message")
            fields = err.get("fields") or []
            if fields:
                message += ": " + "; ".join(
                    f"{f.get('field')}: {f.get('problem')}" for f in fields[:3]
                )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            code, message = None, data[:200].decode(errors="replace")
        hint = {401: " (wrong or missing deploy token)", 403: " (this token may not do that)"}.get(
            status, ""
        )
        return AgentError(
            self.target.name, f"HTTP {status} {code or ''}: {message}{hint}".strip(), status, code
        )

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/v1/status")

    def ready(self) -> dict[str, Any] | None:
        status, data = self._request("GET", "/readyz", auth=False)
        return json.loads(data) if status == 200 else None

    def upload(
        self, archive: bytes, reason: str, actor: str, replace_model: bool = False
    ) -> dict[str, Any]:
        headers = {"X-Edgeops-Reason": encode(reason[:200]), "X-Edgeops-Actor": encode(actor[:100])}
        if replace_model:
            headers["X-Edgeops-Replace-Model"] = "true"
        status, data = self._request(
            "POST", "/v1/bundles", archive, "application/gzip", headers=headers
        )
        if status != 201:
            raise self._error(status, data)
        return json.loads(data)

    def rollback(self, version: str | None, reason: str, actor: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"reason": reason[:200]}
        if version:
            payload["version"] = version
        return self._json(
            "POST", "/v1/rollback", payload, headers={"X-Edgeops-Actor": encode(actor[:100])}
        )

    def predict(self, rows: list[dict[str, Any]], check: bool = False) -> dict[str, Any]:
        """Predict ``rows``; ``check``: a deploy's own check (the agent answers, never logs)."""
        headers = {"X-Edgeops-Check": "deploy"} if check else None
        return self._json("POST", "/v1/predict", {"rows": rows}, headers=headers)

    def feedback_batch(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Many labels in one request: ``[{"request_id", "label", "row"?}, ...]``, all or none."""
        return self._json("POST", "/v1/feedback", {"items": items})

    def feedback(self, request_id: str, label: Any, row: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"request_id": request_id, "label": label}
        if row is not None:
            payload["row"] = row
        return self._json("POST", "/v1/feedback", payload)

    def logs(self, after: int = 0, limit: int = 5000, max_bytes: int = MAX_ANSWER_BYTES) -> Any:
        """Logged predictions with id > ``after``: ``{items, next, last, log_id}``."""
        return self._json(
            "GET", f"/v1/logs?after={int(after)}&limit={int(limit)}", max_bytes=max_bytes
        )

    def feedback_log(
        self, after: int = 0, limit: int = 5000, max_bytes: int = MAX_ANSWER_BYTES
    ) -> Any:
        """Feedback events with seq > ``after``: ``{items, next, last, log_id}``."""
        return self._json(
            "GET", f"/v1/logs/feedback?after={int(after)}&limit={int(limit)}", max_bytes=max_bytes
        )

    def download(self, version: str) -> bytes:
        status, data = self._request("GET", f"/v1/bundles/{version}", max_bytes=MAX_BUNDLE_BYTES)
        if status != 200:
            raise self._error(status, data)
        return data


def _exchange(
    target: Target,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    limit: float,
    within: str,
    max_bytes: int,
) -> tuple[int, bytes]:
    """One HTTP request to ``target``: ``(status, body)`` within ``limit`` seconds in all (a
    watchdog closes the socket at the deadline, so an answer trickled a byte at a time ends
    too), reading at most ``max_bytes``; a redirect is refused, never followed."""
    import http.client
    import socket
    import threading
    from urllib.parse import urlsplit

    url = urlsplit(target.url)
    name, where = target.name, target.url
    cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = cls(url.hostname or "", url.port, timeout=limit)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    started = time.monotonic()
    watchdog = threading.Timer(limit, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        try:
            conn.request(method, url.path.rstrip("/") + path, body=body, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                raise AgentError(
                    name, f"agent at {where} did not answer within {within}", kind="timeout"
                ) from None
            reason = getattr(exc, "reason", None) or exc
            raise AgentError(name, f"agent at {where} is unreachable ({reason})") from None
        if 300 <= resp.status < 400:
            raise misbehaving(
                name,
                f"{method} {path.split('?')[0]} answered {resp.status} redirecting to "
                f"{resp.getheader('location')!r}: edgeops follows no redirect (the token would "
                "go along); point the targets file at the agent itself",
            )
        declared = resp.getheader("content-length") or ""
        if declared.isdigit() and int(declared) > max_bytes:
            raise _too_big(name, method, path, max_bytes, f"announced {int(declared):,} bytes")
        chunks, size = [], 0
        try:
            while chunk := resp.read1(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(name, method, path, max_bytes, "sent more")
                chunks.append(chunk)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                raise AgentError(
                    name,
                    f"agent at {where} did not send its answer within {within} "
                    f"({size:,} bytes in {time.monotonic() - started:.0f} s)",
                    kind="timeout",
                ) from None
            raise AgentError(name, f"agent at {where} broke off its answer ({exc})") from None
        if expired.is_set():
            problem = f"agent at {where} did not send its answer within {within}"
            raise AgentError(name, problem, kind="timeout")
        return resp.status, b"".join(chunks)
    finally:
        watchdog.cancel()
        conn.close()


def _too_big(name: str, method: str, path: str, max_bytes: int, what: str) -> AgentError:
    return misbehaving(
        name,
        f"{method} {path.split('?')[0]} {what}: over the limit of {max_bytes:,} bytes "
        "for one answer",
        code=TOO_LARGE,
    )
