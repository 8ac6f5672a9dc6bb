"""The built-in demo plant: a seeded generator of machine-sensor data for a small machine shop.

Modelled on how milling machines fail (after the AI4I 2020 predictive-maintenance study): five
mechanisms produce a rare ``failure`` label (about 3-5 %), each physically plausible:

- tool wear failure: the tool is replaced or fails somewhere between 200 and 240 minutes of wear;
- heat dissipation failure: process and air temperature too close while the spindle is slow;
- power failure: torque x angular speed outside the drive's 3.5-9 kW band;
- overstrain failure: tool wear x torque above a limit that depends on the machine type;
- random failures, 0.1 %.

``scenario`` is the hook for drift: ``hot_summer`` shifts temperatures, ``biased_sensor`` makes
the torque sensor read high, ``new_product_mix`` changes which products and machines run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeopsError

if TYPE_CHECKING:
    import pandas as pd

SCENARIOS = ("baseline", "hot_summer", "biased_sensor", "new_product_mix")
MACHINE_TYPES = ("L", "M", "H")
PRODUCT_LINES = ("gearbox", "pump", "valve", "spindle")
#: rows generated at a time: a larger data set is made (and ingested) chunk by chunk
CHUNK_ROWS = 2_000_000
OVERSTRAIN_LIMIT = {"L": 11_000.0, "M": 12_000.0, "H": 13_000.0}


def simulate(rows: int = 50_000, seed: int = 42, scenario: str = "baseline") -> pd.DataFrame:
    """Generate ``rows`` sensor readings; the same arguments always give the same frame.

    >>> df = simulate(rows=1000, seed=1)
    >>> sorted(df.columns)[:3]
    ['air_temp_k', 'failure', 'machine_type']
    """
    import numpy as np
    import pandas as pd

    _check(rows, scenario)
    if rows <= CHUNK_ROWS:
        return _chunk(rows, np.random.default_rng(seed), 0, scenario)
    return pd.concat(list(_chunks(rows, seed, scenario)), ignore_index=True)


def simulate_chunks(
    rows: int = 50_000, seed: int = 42, scenario: str = "baseline"
) -> Iterator[pd.DataFrame]:
    """:func:`simulate`'s frame as consecutive frames of at most :data:`CHUNK_ROWS` rows, made one
    at a time (memory: one chunk). The first chunk is ``simulate`` of up to ``CHUNK_ROWS`` rows;
    chunk ``k`` draws from its own generator, seeded ``[seed, k]``, and continues the clock."""
    _check(rows, scenario)
    return _chunks(rows, seed, scenario)


def _check(rows: int, scenario: str) -> None:
    if rows < 1:
        raise EdgeopsError(
            f"simulator rows must be >= 1, got {rows}", fix="set ingest.simulator.rows"
        )
    if scenario not in SCENARIOS:
        raise EdgeopsError(
            f"unknown simulator scenario {scenario!r}", fix=f"use one of {', '.join(SCENARIOS)}"
        )


def _chunks(rows: int, seed: int, scenario: str) -> Iterator[pd.DataFrame]:
    import numpy as np

    for k, start in enumerate(range(0, rows, CHUNK_ROWS)):
        rng = np.random.default_rng(seed if k == 0 else [seed, k])
        yield _chunk(min(CHUNK_ROWS, rows - start), rng, start, scenario)


def _chunk(rows: int, rng: Any, start: int, scenario: str) -> pd.DataFrame:
    """``rows`` readings from minute ``start`` on, drawn from ``rng``."""
    import numpy as np
    import pandas as pd

    type_p = [0.5, 0.3, 0.2]
    line_p = [0.35, 0.3, 0.25, 0.1]
    if scenario == "new_product_mix":
        type_p = [0.2, 0.3, 0.5]
        line_p = [0.1, 0.2, 0.2, 0.5]
    machine_type = rng.choice(MACHINE_TYPES, size=rows, p=type_p)
    product_line = rng.choice(PRODUCT_LINES, size=rows, p=line_p)

    # Air temperature: a slow daily cycle plus noise, around 300 K.
    t = np.arange(start, start + rows)
    air = 300.0 + 2.0 * np.sin(2 * np.pi * t / 1440.0) + rng.normal(0.0, 0.6, rows)
    if scenario == "hot_summer":
        air += 6.0
    process = air + 10.0 + rng.normal(0.0, 1.0, rows)

    # Drive: rated ~2.9 kW; speed and torque are anti-correlated at constant power.
    power_target = rng.normal(6_000.0, 800.0, rows)
    speed = np.clip(rng.normal(1_540.0, 170.0, rows), 1_100.0, 2_900.0)
    torque = np.clip(
        power_target / (speed * 2 * np.pi / 60.0) + rng.normal(0.0, 4.0, rows), 3.0, 80.0
    )

    # Tool wear in minutes; harder machines wear the tool a little faster.
    wear_rate = np.select([machine_type == "H", machine_type == "M"], [1.1, 1.05], 1.0)
    tool_wear = np.clip(rng.uniform(0.0, 230.0, rows) * wear_rate, 0.0, 253.0).round()

    vibration = 1.5 + 0.008 * tool_wear + 0.02 * np.abs(torque - 40.0)
    vibration = vibration * rng.lognormal(0.0, 0.15, rows)

    power = torque * speed * 2 * np.pi / 60.0
    twf = (tool_wear >= 200) & (rng.random(rows) < 0.08)
    hdf = ((process - air) < 8.6) & (speed < 1_380)
    pwf = (power < 3_500) | (power > 9_000)
    limit = np.select([machine_type == m for m in MACHINE_TYPES], list(OVERSTRAIN_LIMIT.values()))
    osf = tool_wear * torque > limit
    rnf = rng.random(rows) < 0.001
    failure = (twf | hdf | pwf | osf | rnf).astype("int64")

    measured_torque = torque * (1.15 if scenario == "biased_sensor" else 1.0)
    df = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2026-01-05 06:00") + pd.to_timedelta(t, unit="min"),
            "machine_type": machine_type,
            "product_line": product_line,
            "air_temp_k": air.round(2),
            "process_temp_k": process.round(2),
            "spindle_speed_rpm": speed.round(0),
            "torque_nm": measured_torque.round(2),
            "tool_wear_min": tool_wear,
            "vibration_mm_s": vibration.round(3),
            "failure": failure,
        }
    )
    # Sensors drop out now and then: about 1 % missing vibration, 0.5 % missing air temperature.
    df.loc[rng.random(rows) < 0.01, "vibration_mm_s"] = np.nan
    df.loc[rng.random(rows) < 0.005, "air_temp_k"] = np.nan
    return df
