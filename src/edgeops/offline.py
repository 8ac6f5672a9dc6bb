"""Nothing leaves the premises: every library's telemetry is switched off before it loads.

The switches live in one file, ``telemetry-off.env`` beside this module (it ships in the wheel):
plain ``KEY=value`` lines that bash (``set -a; . FILE``), GNU make (``include FILE``) and systemd
(``EnvironmentFile=FILE``) read as they are. The Makefile, ``.ci/run`` and the systemd units use
that file; Python entry points use :data:`TELEMETRY_OFF` / :func:`telemetry_off`, parsed from it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The one file that lists every telemetry switch (``KEY=value`` lines, ``#`` comment lines).
ENV_FILE: Path = Path(__file__).with_name("telemetry-off.env")

_LINE = re.compile(r"(?P<key>[A-Z_][A-Z0-9_]*)=(?P<value>[A-Za-z0-9_.-]+)")


def parse_env_file(text: str, source: str = "telemetry-off.env") -> dict[str, str]:
    """``KEY=value`` lines in order; blank and ``#`` lines skipped, anything else an error.

    Only what bash, make and systemd read alike is accepted: no quotes, spaces or ``export``.

    >>> parse_env_file("# off\\nDO_NOT_TRACK=1\\n\\nGX_ANALYTICS_ENABLED=false\\n")
    {'DO_NOT_TRACK': '1', 'GX_ANALYTICS_ENABLED': 'false'}
    """
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if not m:
            raise ValueError(f"{source}:{number}: not a plain KEY=value line: {raw!r}")
        if m["key"] in env:
            raise ValueError(f"{source}:{number}: {m['key']} is set twice")
        env[m["key"]] = m["value"]
    return env


#: Environment that turns off every telemetry channel of the libraries edgeops uses
#: (read from :data:`ENV_FILE`; each switch is explained there).
TELEMETRY_OFF: dict[str, str] = parse_env_file(ENV_FILE.read_text(encoding="utf-8"), str(ENV_FILE))


def telemetry_off() -> None:
    """Set the telemetry-off variables in this process (and so in its children).

    A value the operator set explicitly is kept. Call this from entry points (CLI, stage mains,
    the agent, flows), before the library in question is imported.
    """
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
