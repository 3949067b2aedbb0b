"""When to resolve, and landing the result: a new register whenever its inputs changed.

Inputs of a register: the committed ingest runs, the township verdicts and the model. A register run records
a fingerprint of all three; a pass with nothing new in any of them lands nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.resolve.job import ResolveResult, ResolveSettings, resolve
from pipelines.resolve.model import MODEL_PATH, model_version
from pipelines.rules.warnings import warnings_for_register
from pipelines.staging import all_latest_records
from pipelines.store import RunStore, utc_now


@dataclass
class Landed:
    result: ResolveResult
    path: Path
    seconds: float


def inputs_fingerprint(store: RunStore, model_path: Path = MODEL_PATH) -> dict[str, str | None]:
    latest = store.latest_manifest()
    digest = hashlib.sha256()
    if store.verdicts_dir.is_dir():
        for path in sorted(store.verdicts_dir.iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "ingest_run": latest["run_id"] if latest else None,
        "verdicts": digest.hexdigest()[:16],
        "model_version": model_version(model_path),
    }


def _latest_meta(store: RunStore) -> dict | None:
    latest = store.register_latest()
    if latest is None:
        return None
    return json.loads((latest / "_meta.json").read_text(encoding="utf-8"))


def next_register_run_id(store: RunStore) -> str:
    runs = store.register_dir / "runs"
    done = [p for p in runs.iterdir() if p.name.startswith("reg-")] if runs.is_dir() else []
    return f"reg-{len(done) + 1:06d}"


def prepare_register(
    store: RunStore,
    settings: ResolveSettings | None = None,
    model_path: Path = MODEL_PATH,
    force: bool = False,
) -> ResolveResult | None:
    """Resolve and write a new register, unpublished, if its inputs changed (or ``force``)."""
    with store.lock():
        fingerprint = inputs_fingerprint(store, model_path)
        if fingerprint["ingest_run"] is None:
            return None
        previous = _latest_meta(store)
        if not force and previous and previous.get("inputs") == fingerprint:
            return None
        for stale in store.pending_registers():  # an earlier attempt that never published
            shutil.rmtree(store.partial_register_dir(stale))
        run_id = next_register_run_id(store)
        begun = time.monotonic()
        records = all_latest_records(store)  # read once: the resolver and the warning rules both use them
        read_s = round(time.monotonic() - begun, 3)
        result = resolve(store, run_id, settings, model_path, records)
        result.timings = {"read": read_s, **result.timings}
        # warnings land with the register they are about (ids carried over from the published one)
        begun = time.monotonic()
        result.tables["warnings"] = warnings_for_register(store, result.tables, run_id, records=records)
        result.timings["warnings"] = round(time.monotonic() - begun, 3)
        meta = {
            "run_id": run_id,
            "inputs": fingerprint,
            "model_version": result.model_version,
            "created_at": utc_now(),
            "counts": {name: table.num_rows for name, table in result.tables.items()},
            "timings_s": result.timings,
            "refused_joins": result.refused_joins,
            "predicted_pairs": result.predicted_pairs,
        }
        store.write_register(run_id, result.tables, meta)
        return result


def publish_pending(store: RunStore) -> Path | None:
    """Publish the newest written register (the last step of a pass)."""
    with store.lock():
        pending = store.pending_registers()
        return store.publish_register(pending[-1]) if pending else None


def resolve_and_land(
    store: RunStore,
    settings: ResolveSettings | None = None,
    model_path: Path = MODEL_PATH,
    force: bool = False,
) -> Landed | None:
    """Resolve and publish a new register if its inputs changed (or ``force``)."""
    begun = time.monotonic()
    result = prepare_register(store, settings, model_path, force)
    if result is None:
        return None
    path = publish_pending(store)
    assert path is not None
    return Landed(result, path, time.monotonic() - begun)
