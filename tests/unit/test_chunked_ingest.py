"""Ingest at scale: the simulator makes a large data set chunk by chunk and ingest writes it a
chunk at a time; the file holds what the one-frame path would hold, production rows last."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from edgeops.monitor.store import feedback_frame, rows_frame, write_part
from edgeops.sources import read_source_chunks
from edgeops.sources import simulator as sim
from edgeops.sources.production import add_production
from edgeops.stages.ingest import drop_columns, prepared_frames, write_frames
from tests.unit.test_monitor import SCHEMA, _items


def test_a_data_set_up_to_a_chunk_is_what_it_always_was(monkeypatch) -> None:
    small = sim.simulate(rows=700, seed=5)
    monkeypatch.setattr(sim, "CHUNK_ROWS", 700)
    (only,) = list(sim.simulate_chunks(700, 5))
    pd.testing.assert_frame_equal(only, small)


def test_chunks_continue_the_clock_and_concatenate_to_simulate(monkeypatch) -> None:
    monkeypatch.setattr(sim, "CHUNK_ROWS", 300)
    chunks = list(sim.simulate_chunks(1000, 5, "hot_summer"))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    whole = pd.concat(chunks, ignore_index=True)
    assert whole["timestamp"].is_monotonic_increasing and whole["timestamp"].is_unique
    pd.testing.assert_frame_equal(whole, sim.simulate(1000, 5, "hot_summer"))
    assert not chunks[1].iloc[:, 1:].equals(chunks[0].iloc[:, 1:])  # each its own draws


def test_chunked_ingest_writes_the_rows_and_the_production_rows_last(tmp_path: Path, monkeypatch):
    series = tmp_path / "store/line-1/abcdef0123456789"
    write_part(series, "rows", 1, 40, rows_frame(_items(1, 40)))
    fb = [
        {"id": i, "request_id": f"r{i}", "row": 0, "feedback": "1", "feedback_ts": 1.8e9, "seq": i}
        for i in range(1, 11)
    ]
    write_part(series, "feedback", 1, 10, feedback_frame(fb))
    production = {"include": True, "path": str(tmp_path / "store")}
    monkeypatch.setattr(sim, "CHUNK_ROWS", 400)
    cfg = {"source": "simulator", "simulator": {"rows": 1000, "seed": 9}}

    frames, detected = read_source_chunks(cfg)
    found: dict = {}
    digest, rows = write_frames(
        prepared_frames(frames, SCHEMA, production, found), tmp_path / "d.parquet"
    )

    expected, keys, _ = add_production(
        drop_columns(sim.simulate(1000, 9), SCHEMA)[0], production, SCHEMA, 1000
    )
    assert detected == {} and rows == 1010 == len(expected) and found["source_rows"] == 1000
    assert found["keys"].equals(keys) and found["columns"] == list(expected.columns)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "d.parquet"), expected)
    assert (
        pq.ParquetFile(tmp_path / "d.parquet").metadata.num_row_groups == 4
    )  # 3 chunks, then production
    assert len(digest) == 64 and not list(tmp_path.glob("*.tmp"))
