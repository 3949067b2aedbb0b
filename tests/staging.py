"""Write committed staging runs directly (no broker), for tests of what reads staging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contracts import contract, load_contracts
from pipelines.generate import TRUTH_FILES
from pipelines.store import RunStore


def commit_rows(store: RunStore, rows_by_feed: dict[str, list[dict[str, Any]]]) -> str:
    """Commit one run holding the given rows (missing fields are null; Kafka coordinates are made up)."""
    run_id = store.next_run_id()
    feeds = {}
    offsets = []
    for feed in load_contracts():
        rows = rows_by_feed.get(feed, [])
        schema = contract(feed).staging_schema()
        start = store.committed_offsets().get((f"feeds.{feed}", 0), 0)
        full = [
            {**{name: None for name in schema.names}, **row, "_topic": f"feeds.{feed}", "_partition": 0,
             "_offset": start + i, "_run_id": run_id}
            for i, row in enumerate(rows)
        ]  # fmt: skip
        path: Path = store.staging_prefix(run_id, feed).parent / "part-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(full, schema=schema), path)
        feeds[feed] = {
            "planned": len(rows),
            "staged": len(rows),
            "quarantined": 0,
            "files": [store.relative(path)],
        }
        offsets.append(
            {"feed": feed, "topic": f"feeds.{feed}", "partition": 0, "start": start, "end": start + len(rows)}
        )
    store.commit(
        {
            "run_id": run_id,
            "sequence": int(run_id.split("-")[1]),
            "offsets": offsets,
            "feeds": feeds,
            "quarantine": {"by_reason": {}, "files": []},
        }
    )
    return run_id


def stage_sample(store: RunStore, sample_dir: Path, key: bytes) -> str:
    """Parse a generated sample the way ingest does (contract check, tokenisation) and commit it."""
    from pipelines.ingest.parse import RawMessage, parse_message
    from pipelines.pii import Tokeniser

    tokens = Tokeniser(key)
    rows: dict[str, list[dict[str, Any]]] = {}
    for feed, feed_contract in load_contracts().items():
        lines = (sample_dir / f"{feed}.jsonl").read_bytes().splitlines()
        for offset, line in enumerate(lines):
            record_id = str(__import__("json").loads(line)["record_id"]).encode()
            ok, row = parse_message(
                feed_contract, RawMessage(feed, f"feeds.{feed}", 0, offset, None, record_id, line), tokens, ""
            )
            assert ok, row["detail"]
            rows.setdefault(feed, []).append({k: v for k, v in row.items() if not k.startswith("_")})
    return commit_rows(store, rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def true_units(sample_dir: Path) -> dict[tuple[str, str], str | None]:
    """(feed, record_id) → the true unit (None for private persons), from a generated sample's truth."""
    rows = [r for name in TRUTH_FILES for r in read_jsonl(sample_dir / name)]
    return {(r["feed"], r["record_id"]): r["unit_id"] for r in rows}


def generated_store(tmp_path_factory: Any, units: int, seed: int, key: str) -> tuple[Path, RunStore]:
    """A generated sample and a run store holding it as one committed staging run."""
    from pipelines.generate import generate

    sample = tmp_path_factory.mktemp("sample")
    generate(units=units, seed=seed, out_dir=sample)
    store = RunStore(tmp_path_factory.mktemp("store"))
    stage_sample(store, sample, key.encode())
    return sample, store
