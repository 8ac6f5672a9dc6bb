"""The ``monitor`` section of params.yaml, checked once, with errors that name the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeops.errors import EdgeopsError
from edgeops.params import number

NUM_METHODS = (
    "wasserstein",
    "ks",
    "psi",
    "kl_div",
    "jensenshannon",
    "anderson",
    "ed",
    "cramer_von_mises",
)
CAT_METHODS = ("jensenshannon", "chisquare", "z", "psi", "kl_div", "TVD")


def guard_metrics(perf: dict[str, Any]) -> tuple[str, ...]:
    """``monitor.performance.guard_metrics``: metrics judged besides the primary one."""
    from edgeops.monitor.performance import COMPARED

    value = perf.get("guard_metrics", ["balanced_accuracy"])
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or any(v not in COMPARED for v in value):
        raise EdgeopsError(
            f"monitor.performance.guard_metrics must be a list of {list(COMPARED)}, not {value!r}",
            fix="e.g. guard_metrics: [balanced_accuracy], or [] for the primary metric alone",
        )
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class MonitorSettings:
    store: Path = Path("data/production")
    reports: Path = Path("reports/monitoring")
    workspace: Path = Path(".evidently")
    window_rows: int | None = 2000
    window_hours: float | None = None
    min_rows: int = 1000
    max_rows: int = 20000
    seed: int = 0
    reference_rows: int = 10000
    regime_min_rows: int = 200
    num_method: str = "wasserstein"
    num_threshold: float = 0.15
    cat_method: str = "jensenshannon"
    cat_threshold: float = 0.1
    drift_share: float = 0.1
    false_alarm: float = 0.01
    min_labelled: int = 200
    min_per_class: int = 10
    max_drop: float = 0.1
    guard_metrics: tuple[str, ...] = ("balanced_accuracy",)
    cooldown_hours: float = 24.0
    retrain: bool = True
    page_rows: int = 5000
    collect_seconds: float = 300.0
    max_page_mb: float = 64.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MonitorSettings:
        cfg = params.get("monitor") or {}
        if not isinstance(cfg, dict):
            raise EdgeopsError("params.yaml: monitor must be a mapping")
        win = cfg.get("window") or {}
        drift = cfg.get("drift") or {}
        perf = cfg.get("performance") or {}
        rows, hours = win.get("rows", 2000), win.get("hours")
        if (rows is None) == (hours is None):
            raise EdgeopsError(
                "monitor.window: set exactly one of rows and hours",
                fix="e.g. window: {rows: 2000, hours: null}",
            )
        if drift.get("num_method", "wasserstein") not in NUM_METHODS:
            raise EdgeopsError(f"monitor.drift.num_method must be one of {NUM_METHODS}")
        if drift.get("cat_method", "jensenshannon") not in CAT_METHODS:
            raise EdgeopsError(f"monitor.drift.cat_method must be one of {CAT_METHODS}")
        s = cls(
            store=Path(cfg.get("store", "data/production")),
            reports=Path(cfg.get("reports", "reports/monitoring")),
            workspace=Path(cfg.get("workspace", ".evidently")),
            window_rows=None
            if rows is None
            else int(number(win, "rows", 2000, "monitor.window", 1)),
            window_hours=None
            if hours is None
            else number(win, "hours", 24, "monitor.window", 0.01),
            min_rows=int(number(win, "min_rows", 1000, "monitor.window", 1)),
            max_rows=int(number(win, "max_rows", 20000, "monitor.window", 100)),
            seed=int(number(win, "seed", 0, "monitor.window")),
            reference_rows=int(number(cfg, "reference_rows", 10000, "monitor", 100)),
            regime_min_rows=int(number(cfg, "regime_min_rows", 200, "monitor", 1)),
            num_method=drift.get("num_method", "wasserstein"),
            num_threshold=number(drift, "num_threshold", 0.15, "monitor.drift"),
            cat_method=drift.get("cat_method", "jensenshannon"),
            cat_threshold=number(drift, "cat_threshold", 0.1, "monitor.drift"),
            drift_share=number(drift, "share", 0.1, "monitor.drift", 0.0, 1.0),
            false_alarm=number(drift, "false_alarm", 0.01, "monitor.drift", 0.0, 0.5),
            min_labelled=int(number(perf, "min_labelled", 200, "monitor.performance", 1)),
            min_per_class=int(number(perf, "min_per_class", 10, "monitor.performance", 1)),
            max_drop=number(perf, "max_drop", 0.1, "monitor.performance", 0.0, 1.0),
            guard_metrics=guard_metrics(perf),
            cooldown_hours=number(cfg, "cooldown_hours", 24, "monitor"),
            retrain=bool(cfg.get("retrain", True)),
            page_rows=int(number(cfg, "page_rows", 5000, "monitor", 1, 5000)),
            collect_seconds=number(cfg, "collect_seconds", 300, "monitor", 1),
            max_page_mb=number(cfg, "max_page_mb", 64, "monitor", 0.01),
        )
        if s.window_rows is not None and s.window_rows < s.min_rows:
            raise EdgeopsError(
                f"monitor.window.rows ({s.window_rows}) is below min_rows ({s.min_rows}): "
                "no window could ever be judged",
                fix="raise window.rows or lower window.min_rows",
            )
        return s

    def thresholds(self) -> dict[str, Any]:
        """What the decision was measured against, for the reports."""
        return {
            "drift": {
                "num_method": self.num_method,
                "num_threshold": self.num_threshold,
                "cat_method": self.cat_method,
                "cat_threshold": self.cat_threshold,
                "share": self.drift_share,
                "false_alarm": self.false_alarm,
            },
            "performance": {
                "min_labelled": self.min_labelled,
                "min_per_class": self.min_per_class,
                "max_drop": self.max_drop,
                "guard_metrics": list(self.guard_metrics),
            },
            "window": {
                "rows": self.window_rows,
                "hours": self.window_hours,
                "min_rows": self.min_rows,
                "max_rows": self.max_rows,
                "seed": self.seed,
            },
            "reference": {"rows": self.reference_rows, "regime_min_rows": self.regime_min_rows},
            "cooldown_hours": self.cooldown_hours,
        }
