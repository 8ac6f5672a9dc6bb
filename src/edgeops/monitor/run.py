"""One monitoring run: collect -> window -> quality -> drift -> performance -> decision.

Used by ``edgeops monitor`` and, step by step, by the ``monitoring`` flow. Every target is judged
on its own window (a drifting line is not diluted by healthy ones); the run retrains if any target
says so. Reports: ``reports/monitoring/<target>/{drift.html,drift.json,quality.json,
performance.json}`` and ``reports/monitoring/{decision.json,summary.md}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops import atomic
from edgeops.deploy.targets import AgentError
from edgeops.errors import EdgeopsError
from edgeops.monitor import decision as dec
from edgeops.monitor.settings import MonitorSettings
from edgeops.monitor.store import Collected, ProductionStore
from edgeops.params import load_params, section
from edgeops.schema import Schema, schema_from_params

if TYPE_CHECKING:
    import pandas as pd

    from edgeops.deploy.operations import DeployContext
    from edgeops.deploy.targets import Target

Log = Callable[[str], None]


@dataclass
class Monitor:
    """Everything a run needs, resolved from params.yaml."""

    settings: MonitorSettings
    schema: Schema
    primary_metric: str
    model_name: str
    ctx: DeployContext
    workspace: Path = Path(".")
    store: ProductionStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = ProductionStore(self.workspace / self.settings.store)

    @classmethod
    def load(
        cls,
        params_path: str | Path = "params.yaml",
        targets: str | Path | None = None,
        **ctx_kw: Any,
    ) -> Monitor:
        from edgeops.deploy.operations import DeployContext

        params = load_params(params_path)
        return cls(
            settings=MonitorSettings.from_params(params),
            schema=schema_from_params(params),
            primary_metric=section(params, "evaluate").get("primary_metric", "roc_auc"),
            model_name=str((params.get("bundle") or {}).get("model_name", "model")),
            ctx=DeployContext.load(params_path, targets=targets, **ctx_kw),
            workspace=Path(params_path).resolve().parent,
        )

    def targets(self, names: list[str] | None) -> list[Target]:
        return self.ctx.targets.select(names)

    @property
    def reports(self) -> Path:
        return self.workspace / self.settings.reports

    # ---- steps -------------------------------------------------------------------------------
    def collect(self, target: Target, accept_reset: bool = False, log: Log = print) -> Collected:
        """The agent's new rows and labels, within ``monitor.collect_seconds`` in all and
        ``monitor.max_page_mb`` per page, each value checked against the training contract."""
        from edgeops.deploy.targets import AgentClient

        s = self.settings
        client = AgentClient(
            target, budget=s.collect_seconds, budget_setting="monitor.collect_seconds"
        )
        got = self.store.collect(
            client,
            accept_reset=accept_reset,
            page=s.page_rows,
            progress=log,
            schema=self.schema,
            max_page_bytes=int(s.max_page_mb * 2**20),
            wait_seconds=max(600.0, 2 * s.collect_seconds),
        )
        log(
            f"{target.name}: collected {got.rows:,} rows and {got.feedback:,} feedback labels "
            f"(log {got.log_id[:8]}, cursor {got.cursor:,} of {got.agent_last:,})"
        )
        return got

    def active_version(self, target: Target) -> str | None:
        from edgeops.deploy.targets import AgentClient

        active = AgentClient(target).status().get("active")
        return active["version"] if active else None

    def window(self, target: str, version: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The rows the deployed ``version`` predicted: the newest N, or those of the last H hours."""
        s = self.settings
        since = time.time() - s.window_hours * 3600 if s.window_hours else None
        df = self.store.read_rows(target, since=since, newest=None if since else s.window_rows)
        df = df[df["_model_version"] == version]
        if s.window_rows:
            df = df.tail(s.window_rows)
        info: dict[str, Any] = {
            "rows": len(df),
            "version": version,
            "by": f"last {s.window_hours:g} h" if since else f"newest {s.window_rows} rows",
        }
        if len(df):
            info["from"] = _iso(df["_ts"].min())
            info["to"] = _iso(df["_ts"].max())
            info["labelled"] = int(df["_feedback"].notna().sum())
        return df.reset_index(drop=True), info

    def check_columns(self, window: pd.DataFrame, target: str, bundle: Any) -> None:
        """The logs must carry the features the schema and the deployed model name."""
        features = [c.name for c in self.schema.features]
        inputs = sorted(s.name for s in bundle.model.inputs)
        if sorted(features) != inputs:
            raise EdgeopsError(
                f"the deployed model {bundle.version} on {target} takes {inputs}, but "
                f"validate.schema's features are {sorted(features)}",
                fix="deploy a model trained with this params.yaml, or monitor from its workspace",
            )
        missing = [f for f in features if f not in window.columns]
        if missing:
            raise EdgeopsError(
                f"the logs of {target} lack the feature columns {missing} of the deployed model "
                f"{bundle.version} (logged: {sorted(c for c in window.columns if not c.startswith('_'))})",
                fix="check the agent's log settings (log.drop_fields) and the deployed version",
            )


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(ts)))


def warm_evidently() -> Any:
    """Start importing Evidently (~9 s) in its worker process while the logs are being collected."""
    from edgeops.monitor.drift import start_worker

    return start_worker()


def write_reports(
    out: Path, target: str, result: dict[str, Any], outputs: dict[str, Any] | None
) -> dict[str, str]:
    """One target's JSON reports, with the drift step's HTML and Evidently run; returns the paths."""
    d = out / target
    paths = {}
    for name in ("quality", "drift", "performance"):
        if result.get(name) is not None:
            atomic.write_json(d / f"{name}.json", result[name])
            paths[name] = str(d / f"{name}.json")
    return {**paths, **(outputs or {})}


@dataclass
class Window:
    """One target's judged window, with what every check needs."""

    target: Target
    version: str | None
    rows: pd.DataFrame
    info: dict[str, Any]
    bundle: Any = None
    proba: Any = None

    def result(self) -> dict[str, Any]:
        return {"target": self.target.name, "version": self.version, "window": self.info}


def prepare(m: Monitor, target: Target, log: Log = print) -> Window:
    """The deployed version, its window (sampled if large), bundle and logged probabilities."""
    from edgeops.monitor.drift import window_proba
    from edgeops.monitor.reference import deployed_bundle

    version = m.active_version(target)
    if version is None:
        import pandas as pd

        return Window(target, None, pd.DataFrame(), {"rows": 0, "note": "no model is deployed"})
    rows, info = m.window(target.name, version)
    w = Window(target, version, rows, info)
    if len(rows) < m.settings.min_rows:
        return w
    w.bundle = deployed_bundle(target, version, m.ctx.public_key, m.workspace / "models/bundle")
    m.check_columns(rows, target.name, w.bundle)
    w.proba = window_proba(rows)
    n = min(len(rows), m.settings.max_rows)
    info["sample"] = {"rows": n, "seed": m.settings.seed, "of": len(rows)}
    return w


def quality_step(m: Monitor, w: Window) -> dict[str, Any]:
    """The training data's contract (nulls, ranges, categories) on the window."""
    from edgeops.monitor.quality import check_contract

    skip = set(m.schema.passthrough)  # sent by clients, logged, not features (text from JSON)
    cols = [c for c in w.rows.columns if not c.startswith("_") and c not in skip]
    return check_contract(w.rows[cols], m.schema)


def drift_step(m: Monitor, w: Window, log: Log = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evidently: the (sampled) window against the regimes of the deployed model's training split
    (monitor/drift.py); writes the HTML report and adds the run to the Evidently workspace.
    Returns (outputs, summary)."""
    from edgeops.monitor.drift import judged_frame, regime_frames, run_drift
    from edgeops.monitor.reference import load_reference

    s = m.settings
    sample = w.rows.sample(s.max_rows, random_state=s.seed) if len(w.rows) > s.max_rows else w.rows
    ref = load_reference(
        w.bundle,
        [c.name for c in m.schema.features],
        m.schema.target,
        s.reference_rows,
        s.seed,
        m.workspace,
        s.regime_min_rows,
    )
    classes, positive = list(w.bundle.model.classes), w.bundle.manifest.get("positive_class")
    proba = w.proba[sample.index.to_numpy()]
    current = judged_frame(sample, proba, m.schema, classes, positive)
    regimes = regime_frames(ref, m.schema, positive)
    apart = ", ".join(f"{r.name} {len(r.frame):,} of {r.rows_total:,}" for r in regimes[1:])
    log(
        f"{w.target.name}: drift of {len(current):,} rows against {len(regimes[0].frame):,} of "
        f"{ref.rows_total:,} training rows ({ref.source})"
        + (f" and each regime apart ({apart})" if apart else "")
    )
    workspace = {
        "dir": str(m.workspace / s.workspace),
        "project": m.model_name,
        "name": f"{w.target.name} {_iso(time.time())}",
        "tags": [w.target.name],
    }
    outputs, drift = run_drift(
        current,
        regimes,
        m.schema,
        classes,
        s,
        m.reports / w.target.name / "drift.html",
        workspace,
    )
    if outputs.get("evidently_error"):
        log(f"{w.target.name}: {outputs.pop('evidently_error')}")
    chosen = next(r for r in regimes if r.name == drift["regime"])
    drift["reference"] = {
        "rows": len(chosen.frame),
        "of": chosen.rows_total,
        "training_rows": ref.rows_total,
        "regime": chosen.name,
        "source": ref.source,
        "seed": s.seed,
        "version": w.version,
    }
    drift["current"] = w.info["sample"]
    return outputs, drift


def performance_step(m: Monitor, w: Window) -> dict[str, Any]:
    """Metrics on the window's labelled rows against the version's own test figures, over the
    classes present in the feedback (the test split restricted to them when a class is left out
    and the manifest's per-class figures do not give a judged metric)."""
    from edgeops.monitor.performance import load_test_rows, performance

    test_path = m.ctx.test_data if m.ctx.test_data.is_absolute() else m.workspace / m.ctx.test_data
    return performance(
        w.rows,
        w.proba,
        list(w.bundle.model.classes),
        w.bundle.manifest.get("metrics") or {},
        m.primary_metric,
        m.settings,
        w.bundle.manifest.get("positive_class"),
        lambda: load_test_rows(test_path, w.bundle, m.schema.target),
    )


def analyze(m: Monitor, target: Target, log: Log = print) -> tuple[dict[str, Any], Any]:
    """Judge one target's window: quality, drift, performance, decision. Returns (result, drift
    step's outputs: the HTML report and the Evidently run)."""
    w = prepare(m, target, log)
    result = w.result()
    outputs = None
    if w.bundle is not None:
        result["quality"] = quality_step(m, w)
        outputs, result["drift"] = drift_step(m, w, log)
        result["performance"] = performance_step(m, w)
    result["decision"], result["reasons"] = dec.target_decision(
        len(w.rows), m.settings.min_rows, result.get("drift"), result.get("performance")
    )
    if w.version is None:
        result["reasons"] = ["no model is deployed on this target"]
    return result, outputs


def run_monitor(
    m: Monitor,
    names: list[str] | None = None,
    collect: bool = True,
    accept_reset: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """The whole run for the selected targets; writes every report and decision.json."""
    warm_evidently()
    targets = m.targets(names)
    collected: dict[str, Any] = {}
    down: dict[str, AgentError] = {}
    if collect:
        collected, down = each_answering(
            targets, lambda t: vars(m.collect(t, accept_reset, log)), log
        )

    def judge(t: Target) -> dict[str, Any]:
        result, outputs = analyze(m, t, log)  # asks the agent its version: it may be down now
        result["collected"] = collected.get(t.name)
        result["reports"] = write_reports(m.reports, t.name, result, outputs)
        log(f"{t.name}: {result['decision']}: {'; '.join(result['reasons'])}")
        return result

    judged, down = each_answering(targets, judge, log, down)
    return finish(m, per_target(targets, judged, down))


def each_answering(
    targets: list[Target],
    step: Callable[[Target], dict[str, Any]],
    log: Log = print,
    down: dict[str, AgentError] | None = None,
) -> tuple[dict[str, Any], dict[str, AgentError]]:
    """``step`` for each target not ``down`` already: ``(results, down)``. An agent that does not
    answer, answers what no agent answers or with an error status of its own is set aside and
    named, the others go on; a token it refuses (401, 403: the operator's to fix) stops the run.
    Collected rows are stored, so nothing is collected twice."""
    done: dict[str, Any] = {}
    down = dict(down or {})
    for t in targets:
        if t.name in down:
            continue
        try:
            done[t.name] = step(t)
        except AgentError as exc:
            if exc.status in (401, 403):
                raise
            down[t.name] = exc
            log(f"{t.name}: skipped: {exc.problem}")
    return done, down


def per_target(
    targets: list[Target], judged: dict[str, Any], down: dict[str, AgentError]
) -> dict[str, dict[str, Any]]:
    """Each target's result, in the targets' order; a target that did not answer is
    ``unreachable``. No target answered: its error (there is nothing to judge)."""
    if targets and len(down) == len(targets):
        raise next(iter(down.values()))
    return {
        t.name: judged[t.name] if t.name in judged else dec.unreachable(down[t.name])
        for t in targets
    }


def finish(m: Monitor, per_target: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Overall decision (with the cooldown) -> decision.json and summary.md."""
    from edgeops.monitor.summary import markdown

    result = dec.overall(per_target, m.settings.cooldown_hours, m.ctx.audit.path)
    result.update(
        at=_iso(time.time()),
        model=m.model_name,
        thresholds=m.settings.thresholds(),
        targets=per_target,
    )
    atomic.write_json(m.reports / "decision.json", result)
    atomic.write_text(m.reports / "summary.md", markdown(result))
    return result
