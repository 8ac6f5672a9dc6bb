"""The agent's configuration: a YAML/JSON file, command-line flags, and tokens from files or env.

Tokens are never defaulted: the deploy token must be given (``--deploy-token-file`` or
``EDGEOPS_DEPLOY_TOKEN``); the predict token likewise, unless predict auth is switched off for a
trusted network (``predict_auth: false``). Labels are a privilege of their own: ``/v1/feedback``
takes the feedback token (``--feedback-token-file`` or ``EDGEOPS_FEEDBACK_TOKEN``, one per device,
held by whoever records the ground truth) or the deploy token, never the predict token; an agent
without a feedback token takes labels from the operator's deploy token only.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration a person must fix before the agent can start."""


@dataclass
class AgentConfig:
    state_dir: Path
    public_key: Path
    deploy_token: str = ""
    predict_token: str = ""
    feedback_token: str = ""  # /v1/feedback: labels need their own token (or the deploy token)
    predict_auth: bool = True
    host: str = "127.0.0.1"
    port: int = 8710
    # request limits
    max_body_bytes: int = 1 << 20  # predict / feedback bodies
    max_rows: int = 1000
    max_feedback_items: int = 1000  # labels in one /v1/feedback batch -> 413
    max_bundle_bytes: int = 256 << 20
    body_timeout_seconds: float = 30.0
    verify_timeout_seconds: float = 30.0  # an upload's verification + golden check -> 422
    unknown_categories: str = "reject"  # reject (422) | accept (encoded as "unseen")
    # connections and load: a flood without a token must not starve the probes or token holders
    idle_timeout_seconds: float = 5.0  # no request on a connection (new or keep-alive) -> closed
    header_timeout_seconds: float = 10.0  # a request's first byte to its last header -> 408
    max_header_bytes: int = 64 << 10  # request line + headers -> 431
    max_connections: int = 1000  # beyond: the connection idle longest is closed
    max_inflight_requests: int = 64  # handled at once (probes excepted) -> 503; 0 = no limit
    max_inflight_per_client: int = 16  # ... from one client address -> 503; 0 = no limit
    backlog: int = 2048  # the listening socket's accept queue
    # Prometheus: /metrics on the main port (default) or only on metrics_port; a token if set
    metrics_port: int = 0
    metrics_host: str = ""  # metrics_port's bind address ("": host)
    metrics_token_file: str = ""  # or $EDGEOPS_METRICS_TOKEN; the deploy token is accepted too
    metrics_token: str = ""
    # versions and probation
    keep_versions: int = 5
    probation_requests: int = 200
    probation_seconds: float = 300.0
    probation_max_error_rate: float = 0.2
    probation_min_requests: int = 10
    # inference log
    log_retention_days: float = 30.0
    log_max_rows: int = 2_000_000
    log_max_bytes: int = 1 << 30  # the database on disk; oldest rows purged down to 90%
    log_queue_max_bytes: int = 64 << 20  # rows waiting for the writer (memory); beyond: dropped
    log_purge_interval_seconds: float = 60.0
    log_drop_fields: list[str] = field(default_factory=list)
    log_hash_fields: list[str] = field(default_factory=list)
    log_hash_salt: str = ""
    threads: int = 1  # onnxruntime intra-op threads; 1 is best for many small requests

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting that has a default, with it (src/edgeops/examples/agent.yaml documents these)."""
        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING:
                out[f.name] = f.default_factory()
        return out

    def validate(self) -> AgentConfig:
        if not self.deploy_token:
            raise ConfigError(
                "no deploy token: set EDGEOPS_DEPLOY_TOKEN or pass --deploy-token-file "
                "(there is no default secret)"
            )
        if self.predict_auth and not self.predict_token:
            raise ConfigError(
                "no predict token: set EDGEOPS_PREDICT_TOKEN or pass --predict-token-file, or "
                "switch predict auth off on a trusted network (--no-predict-auth)"
            )
        if self.predict_auth and self.predict_token == self.deploy_token:
            raise ConfigError("the predict token must differ from the deploy token")
        if self.feedback_token and self.feedback_token in (self.deploy_token, self.predict_token):
            raise ConfigError(
                "the feedback token must differ from the deploy and the predict token "
                "(labels are a privilege of their own: give each device its own feedback token)"
            )
        if self.unknown_categories not in ("reject", "accept"):
            raise ConfigError("unknown_categories must be 'reject' or 'accept'")
        for name in (
            "idle_timeout_seconds",
            "header_timeout_seconds",
            "max_header_bytes",
            "max_connections",
            "backlog",
            "log_max_bytes",
            "log_queue_max_bytes",
            "max_feedback_items",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.metrics_port and self.metrics_port == self.port:
            raise ConfigError("metrics_port must differ from port (0: /metrics on the main port)")
        if not Path(self.public_key).is_file():
            raise ConfigError(
                f"public key {self.public_key} not found (the signing.pub from `edgeops keys init`)"
            )
        return self


def read_token(path: str | Path | None, env: str) -> str:
    """A token from a file (first line) or, failing that, an environment variable."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"token file {p} not found")
        token = p.read_text().strip().splitlines()[0].strip() if p.read_text().strip() else ""
        if not token:
            raise ConfigError(f"token file {p} is empty")
        return token
    return os.environ.get(env, "").strip()


def load_config(path: str | Path | None, **overrides: Any) -> AgentConfig:
    """Merge a config file (YAML or JSON) with explicit overrides (None = not given)."""
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        text = p.read_text()
        try:
            from edgeops.params import parse_yaml

            data = parse_yaml(text) or {}
        except ImportError:  # pragma: no cover - pyyaml is a base dependency
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of settings")
    known = {f.name for f in fields(AgentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown settings in {path}: {unknown}; known: {sorted(known)}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("state_dir", "public_key"):
        if not data.get(key):
            raise ConfigError(f"{key} is required (--{key.replace('_', '-')})")
        data[key] = Path(data[key]).expanduser()
    cfg = AgentConfig(**data)
    if not cfg.metrics_token:
        cfg.metrics_token = read_token(cfg.metrics_token_file or None, "EDGEOPS_METRICS_TOKEN")
    return cfg
