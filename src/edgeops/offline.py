"""Nothing leaves the premises: every library's telemetry is switched off before it loads."""

from __future__ import annotations

import os

#: Environment that turns off every telemetry channel of the libraries edgeops uses.
#: DO_NOT_TRACK: Prefect SDK, Evidently UI; DVC_NO_ANALYTICS: DVC CLI;
#: PREFECT_SERVER_ANALYTICS_ENABLED: the Prefect server heartbeat; ORT_DISABLE_TELEMETRY: onnxruntime;
#: OTEL_SDK_DISABLED: OpenTelemetry set-up from the environment (FastAPI >= 0.150 would add OTLP
#: exporters when FASTAPI_OTEL_AUTO_CONFIGURE=true; the agent also switches it off in code).
TELEMETRY_OFF: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "ORT_DISABLE_TELEMETRY": "1",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
}


def telemetry_off() -> None:
    """Set the telemetry-off variables in this process (and so in its children).

    A value the operator set explicitly is kept. Call this from entry points (CLI, stage mains,
    the agent), before the library in question is imported.
    """
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
