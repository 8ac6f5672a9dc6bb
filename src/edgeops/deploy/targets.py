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
        token_file: /etc/edgeops/line-2.token   # ... or a file (first line)

No secrets in this file: only where to find them.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
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
            fix="create it (see deploy/targets.yaml in the README)",
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
                name=str(t["name"]), url=str(t["url"]).rstrip("/"), site=str(t.get("site", "")),
                tags=tuple(t.get("tags") or ()), canary=bool(t.get("canary", False)),
                token_env=t.get("token_env"), token_file=t.get("token_file"),
            )
        )  # fmt: skip
    pub = raw.get("public_key")
    return Targets(targets=targets, public_key=Path(pub).expanduser() if pub else None, path=path)


class AgentError(EdgeopsError):
    """An agent that did not answer as it should (unreachable, 4xx, 5xx)."""

    def __init__(
        self, target: str, problem: str, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(f"target {target}: {problem}", fix=None)
        self.target, self.status, self.code = target, status, code


class AgentClient:
    """The deploy side of the agent API, over plain HTTP (stdlib only)."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.target.token()
        return self._token

    def _request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None,
                 headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, bytes]:  # fmt: skip
        req = urllib.request.Request(self.target.url + path, data=body, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        if ctype:
            req.add_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AgentError(
                self.target.name, f"agent at {self.target.url} is unreachable ({reason})"
            ) from None

    def _json(
        self, method: str, path: str, payload: Any = None, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self._request(
            method, path, body, "application/json" if body is not None else None, **kw
        )
        if status not in ok:
            raise self._error(status, data)
        return json.loads(data) if data else None

    def _error(self, status: int, data: bytes) -> AgentError:
        try:
            err = json.loads(data)["error"]
            code, message = err.get("code"), err.get("message")
            fields = err.get("fields") or []
            if fields:
                message += ": " + "; ".join(
                    f"{f.get('field')}: {f.get('problem')}" for f in fields[:3]
                )
        except (ValueError, KeyError, TypeError):
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

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return self._json("POST", "/v1/predict", {"rows": rows})

    def feedback(self, request_id: str, label: Any, row: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"request_id": request_id, "label": label}
        if row is not None:
            payload["row"] = row
        return self._json("POST", "/v1/feedback", payload)

    def logs(self, after: int = 0, limit: int = 5000) -> dict[str, Any]:
        """Logged predictions with id > ``after``: ``{items, next, last, log_id}``."""
        return self._json("GET", f"/v1/logs?after={int(after)}&limit={int(limit)}")

    def feedback_log(self, after: int = 0, limit: int = 5000) -> dict[str, Any]:
        """Feedback events with seq > ``after``: ``{items, next, last, log_id}``."""
        return self._json("GET", f"/v1/logs/feedback?after={int(after)}&limit={int(limit)}")

    def download(self, version: str) -> bytes:
        status, data = self._request("GET", f"/v1/bundles/{version}")
        if status != 200:
            raise self._error(status, data)
        return data
