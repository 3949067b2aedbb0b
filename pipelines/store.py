"""Where a run's output lives, and how it is committed.

One place decides paths. A run writes everything under ``runs/<run_id>/``; it becomes visible only when its
manifest is written, last and atomically, to ``manifests/<run_id>.json``. The manifest lists the files and
the Kafka offsets the run covered, so output and offsets commit together: readers (and the next run) look
at manifests only, and a run that died half-way leaves nothing anyone reads. ``LATEST`` names the newest
committed run for people and tools that want a stable pointer.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST_VERSION = 1
STATE_DIR = "state"  # inside a register run: what the next run starts from
MARTS_DIR = "marts"  # inside a register run: the BI marts, one folder per table


class StoreLockedError(RuntimeError):
    pass


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_atomically(path: Path, text: str) -> None:
    """Write a small file so that readers see the old content or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _lock_note() -> dict[str, Any]:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": utc_now()}


def _holder(note: str) -> str:
    """The lock file's note as a phrase; a holder that wrote none yet (or an older version) is unnamed."""
    try:
        held = json.loads(note)
        return f"pid {held['pid']} on {held['host']} ({held['command']}) since {held['since']}"
    except (ValueError, KeyError, TypeError):
        return "another run (it has not said who it is)"


@dataclass(frozen=True)
class RunStore:
    """The output directory of the pipeline (``--out``)."""

    root: Path

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def staging_prefix(self, run_id: str, feed: str) -> Path:
        return self.run_dir(run_id) / "staging" / feed / "part"

    def quarantine_prefix(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "quarantine" / "part"

    def vault_prefix(self, run_id: str, feed: str) -> Path:
        """Where a run writes the contact vault rows sealed from one feed (committed with its staging)."""
        return self.run_dir(run_id) / "contacts" / feed / "part"

    @property
    def contacts_dir(self) -> Path:
        return self.root / "contacts"

    @property
    def audit_log(self) -> Path:
        """``contacts/audit.jsonl``: the hash-chained log of every reveal and export of contacts."""
        return self.contacts_dir / "audit.jsonl"

    def vault_files(self) -> list[Path]:
        """The vault files of all committed runs, oldest run first (a reader keeps a token's first row)."""
        return [
            self.root / name
            for manifest in self.manifests()
            for name in manifest.get("contacts", {}).get("files", [])
        ]

    def vault_masked(self) -> pa.Table:
        """token, kind, masked of the vault rows of all committed runs, oldest run first: what the register
        pass may read without the vault key (never the nonce or the ciphertext)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = ["token", "kind", "masked"]
        tables = [pq.read_table(path, columns=columns) for path in self.vault_files()]
        schema = pa.schema([(name, pa.string()) for name in columns])
        return pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()

    def quality_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "dq"

    def set_aside_file(self, run_id: str, feed: str) -> Path:
        """Where a run writes the messages of a feed's batch an operator set aside (a quarantine part)."""
        return self.run_dir(run_id) / "quarantine" / f"part-set_aside-{feed}.parquet"

    # -- blocked batches and the operators' decisions about them (``batches/``) --------------------------

    @property
    def batches_dir(self) -> Path:
        return self.root / "batches"

    def blocked_batch_file(self, feed: str) -> Path:
        """``batches/blocked/<feed>.json``: the feed's batch that blocked last (offsets, counts, failures)."""
        return self.batches_dir / "blocked" / f"{feed}.json"

    def decision_file(self, feed: str) -> Path:
        """``batches/decisions/<feed>.json``: an operator's accept or set-aside, for the next run to apply."""
        return self.batches_dir / "decisions" / f"{feed}.json"

    def batch_records(self, kind: str) -> dict[str, dict[str, Any]]:
        """Feed → record of ``kind`` (``blocked`` or ``decisions``)."""
        folder = self.batches_dir / kind
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}

    def write_record(self, path: Path, record: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(record, ensure_ascii=False, indent=2) + "\n")

    @property
    def verdicts_dir(self) -> Path:
        return self.root / "verdicts"

    @property
    def register_dir(self) -> Path:
        return self.root / "register"

    @property
    def register_latest_link(self) -> Path:
        """The stable path BI tools read: always a complete register (``register/latest/<table>.parquet``)."""
        return self.register_dir / "latest"

    def register_latest(self) -> Path | None:
        link = self.register_latest_link
        return link.resolve() if link.exists() else None

    def register_run_dir(self, run_id: str) -> Path:
        return self.register_dir / "runs" / run_id

    def partial_register_dir(self, run_id: str) -> Path:
        return self.register_run_dir(run_id).with_name(f".{run_id}.partial")

    def write_register(
        self,
        run_id: str,
        tables: dict[str, pa.Table],
        meta: dict[str, Any],
        state: dict[str, pa.Table] | None = None,
        marts: dict[str, pa.Table] | None = None,
        partitions: dict[str, str] | None = None,
    ) -> Path:
        """Write a run's register tables (and the resolution state the next run starts from, under
        ``state/``; and the BI marts, one folder each under ``marts/``, hive-partitioned by the column
        ``partitions`` names) into a hidden folder nobody reads; ``publish_register`` shows it."""
        import pyarrow.parquet as pq

        if self.register_run_dir(run_id).exists():
            raise FileExistsError(f"register of {run_id} already landed")
        partial = self.partial_register_dir(run_id)
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        files = {**tables, **{f"{STATE_DIR}/{name}": table for name, table in (state or {}).items()}}
        for name, table in files.items():
            path = partial / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        for name, table in (marts or {}).items():
            folder = partial / MARTS_DIR / name
            column = (partitions or {}).get(name)
            if column and table.num_rows:
                pq.write_to_dataset(
                    table, folder, partition_cols=[column], basename_template="part-{i}.parquet"
                )
            else:
                folder.mkdir(parents=True)
                pq.write_table(table, folder / "part-0.parquet")
        meta_text = json.dumps(meta, ensure_ascii=False, indent=2, default=str)
        (partial / "_meta.json").write_text(meta_text + "\n", encoding="utf-8")
        return partial

    def publish_register(self, run_id: str) -> Path:
        """Rename the written run into place, then point ``latest`` at it. Each run's output is immutable;
        readers of ``latest`` see the old run or the new one, never a part."""
        final = self.register_run_dir(run_id)
        os.replace(self.partial_register_dir(run_id), final)
        self._point_latest_at(final)
        return final

    def _point_latest_at(self, final: Path) -> None:
        pointer = self.register_dir / ".latest.tmp"
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        pointer.symlink_to(final.relative_to(self.register_dir), target_is_directory=True)
        os.replace(pointer, self.register_latest_link)

    def register_runs(self) -> list[str]:
        """Register runs that landed completely (written and renamed into place), oldest first."""
        runs = self.register_dir / "runs"
        if not runs.is_dir():
            return []
        return sorted(
            p.name for p in runs.iterdir() if p.name.startswith("reg-") and (p / "_meta.json").is_file()
        )

    def finish_publishing(self) -> Path | None:
        """A run that landed but was never pointed at (a crash between the rename and the pointer): point
        ``latest`` at it now, so a rerun finishes what the crash left undone."""
        landed = self.register_runs()
        latest = self.register_latest()
        if landed and (latest is None or latest.name < landed[-1]):
            final = self.register_run_dir(landed[-1])
            self._point_latest_at(final)
            return final
        return None

    def register_meta(self, run_dir: Path) -> dict[str, Any]:
        return json.loads((run_dir / "_meta.json").read_text(encoding="utf-8"))

    def register_tables(self, run_dir: Path, names: list[str]) -> dict[str, pa.Table]:
        """The named tables of a register run (those it has)."""
        import pyarrow.parquet as pq

        paths = {name: run_dir / f"{name}.parquet" for name in names}
        return {name: pq.read_table(path) for name, path in paths.items() if path.is_file()}

    def register_marts(self, run_dir: Path, names: list[str]) -> dict[str, pa.Table]:
        """The named marts of a register run (those it has); partition columns come back as strings."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        found = {}
        for name in names:
            folder = run_dir / MARTS_DIR / name
            if folder.is_dir():
                table = ds.dataset(folder, partitioning="hive").to_table()
                found[name] = table.cast(
                    pa.schema(
                        [
                            f.with_type(pa.string()) if pa.types.is_dictionary(f.type) else f
                            for f in table.schema
                        ]
                    )
                )
        return found

    @property
    def marts_link(self) -> Path:
        """``<out>/marts``: the latest register run's marts, at a path that never changes (BI tools and the
        ``unitfusion_marts`` asset point here)."""
        return self.root / "marts"

    @property
    def analysis_database(self) -> Path:
        """``<out>/analysis.duckdb``: a DuckDB file with a view per mart of the latest register run."""
        return self.root / "analysis.duckdb"

    def rewrite_register_meta(self, run_id: str, meta: dict[str, Any]) -> None:
        """Replace the ``_meta.json`` of a written, unpublished run (figures known only after writing)."""
        path = self.partial_register_dir(run_id) / "_meta.json"
        write_atomically(path, json.dumps(meta, ensure_ascii=False, indent=2, default=str) + "\n")

    def register_state(self, run_dir: Path) -> dict[str, pa.Table] | None:
        """The resolution state kept with a register run (None if it kept none, or it was pruned)."""
        import pyarrow.parquet as pq

        folder = run_dir / STATE_DIR
        if not folder.is_dir():
            return None
        return {
            path.relative_to(folder).with_suffix("").as_posix(): pq.read_table(path)
            for path in sorted(folder.rglob("*.parquet"))
        }

    def prune_state(self, keep: int = 2) -> list[str]:
        """Drop the resolution state of all but the newest ``keep`` register runs: only the next run reads it
        (the published tables of every run stay)."""
        pruned = []
        for run_id in self.register_runs()[:-keep]:
            folder = self.register_run_dir(run_id) / STATE_DIR
            if folder.is_dir():
                shutil.rmtree(folder)
                pruned.append(run_id)
        return pruned

    # -- operations output, derived from a published register run (rebuildable, so no manifest) ---------

    def queues_dir(self, register_run: str) -> Path:
        """Township work queues of a register run: ``queues/<reg-run>/<division>_<township>.{xlsx,csv}``."""
        return self.root / "queues" / register_run

    @property
    def reports_dir(self) -> Path:
        """One self-contained HTML run report per register run: ``reports/<reg-run>.html``."""
        return self.root / "reports"

    @property
    def alerts_dir(self) -> Path:
        """The alerts of each run (``alerts/<run>.jsonl``): queued, then marked sent per channel."""
        return self.root / "alerts"

    def queue_partial_dir(self, register_run: str) -> Path:
        """Where an export of the work queues is written before it is renamed into place."""
        target = self.queues_dir(register_run)
        return target.with_name(f".{target.name}.partial")

    def pack_dir(self, period: str) -> Path:
        """A month's pack (``packs/<YYYY-MM>/``): that month's township work queues and ``summary.json``."""
        return self.root / "packs" / period

    def pack_partial_dir(self, period: str) -> Path:
        target = self.pack_dir(period)
        return target.with_name(f".{target.name}.partial")

    def profile_path(self, register_run: str, unit_id: str) -> Path:
        """A unit's profile page (一户一档) from a register run: ``profiles/<reg-run>/<unit_id>.html``."""
        return self.root / "profiles" / register_run / f"{unit_id}.html"

    def report_path(self, register_run: str) -> Path:
        return self.reports_dir / f"{register_run}.html"

    def alert_log(self, run_key: str) -> Path:
        """The outbox of one run's alerts and the record of each channel that sent them."""
        return self.alerts_dir / f"{run_key}.jsonl"

    def stale_partials(self, step: str) -> list[Path]:
        """What an interrupted step left behind: hidden ``.partial``/``.old`` queue folders
        (``work_queues``), ``.tmp`` reports (``report``). Nobody reads them; the step writes afresh."""
        folder = {"work_queues": self.root / "queues", "report": self.reports_dir}.get(step)
        if folder is None or not folder.is_dir():
            return []
        patterns = (".*.partial", ".*.old") if step == "work_queues" else (".*.tmp",)
        return sorted(path for pattern in patterns for path in folder.glob(pattern))

    # -- completion markers: which output step finished for which run ------------------------------------

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    def output_marker(self, run_id: str, step: str) -> Path:
        """``outputs/<run>/<step>.done``: the step (work queues, report, alerts) finished for that run."""
        return self.outputs_dir / run_id / f"{step}.done"

    def output_done(self, run_id: str, step: str) -> bool:
        return self.output_marker(run_id, step).is_file()

    def mark_output_done(self, run_id: str, step: str, summary: dict[str, Any]) -> None:
        marker = self.output_marker(run_id, step)
        marker.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"done_at": utc_now(), **summary}, ensure_ascii=False, default=str)
        write_atomically(marker, text + "\n")

    def pending_registers(self) -> list[str]:
        """Register runs written but not yet published (the DAG's land task publishes them)."""
        runs = self.register_dir / "runs"
        return sorted(p.name[1:-8] for p in runs.glob(".reg-*.partial")) if runs.is_dir() else []

    # -- reading committed state ---------------------------------------------------------------------

    def manifests(self) -> list[dict[str, Any]]:
        """Committed runs, oldest first."""
        if not self.manifests_dir.is_dir():
            return []
        return [
            json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(self.manifests_dir.glob("run-*.json"))
        ]

    def committed_runs(self) -> list[str]:
        """Ids of the committed ingest runs, oldest first (without reading their manifests)."""
        if not self.manifests_dir.is_dir():
            return []
        return sorted(path.stem for path in self.manifests_dir.glob("run-*.json"))

    def latest_manifest(self) -> dict[str, Any] | None:
        manifests = self.manifests()
        return manifests[-1] if manifests else None

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition): the end of the last committed range."""
        offsets: dict[tuple[str, int], int] = {}
        for manifest in self.manifests():
            for entry in manifest["offsets"]:
                key = (entry["topic"], entry["partition"])
                offsets[key] = max(offsets.get(key, 0), entry["end"])
        return offsets

    def committed_files(
        self, feed: str | None = None, kind: str = "staging", after_run: str | None = None
    ) -> list[Path]:
        """Files of all committed runs (or of those committed after ``after_run``), for one feed's staging
        or for the quarantine."""
        files = []
        for manifest in self.manifests():
            if after_run is not None and manifest["run_id"] <= after_run:
                continue
            if kind == "staging":
                names = (
                    manifest["feeds"].get(feed, {}).get("files", [])
                    if feed
                    else [f for stats in manifest["feeds"].values() for f in stats["files"]]
                )
            else:
                names = manifest["quarantine"]["files"]
            files += [self.root / name for name in names]
        return files

    def next_run_id(self) -> str:
        latest = self.latest_manifest()
        return f"run-{(latest['sequence'] + 1) if latest else 1:06d}"

    # -- writing ---------------------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time per output directory. The holder writes who it is into the lock file, so
        whoever finds it taken can say which process holds it and since when."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a+", encoding="utf-8") as handle:  # "w" would wipe the holder's note
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise StoreLockedError(f"{self.root} is locked by {_holder(handle.read())}") from None
            try:
                handle.truncate(0)
                handle.write(json.dumps(_lock_note()) + "\n")
                handle.flush()
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def discard_uncommitted(self) -> list[str]:
        """Remove run folders that never got a manifest (a crash or a blocked run); keep their DQ reports."""
        committed = {path.stem for path in self.manifests_dir.glob("run-*.json")}
        discarded = []
        if not self.runs_dir.is_dir():
            return discarded
        for run_dir in sorted(self.runs_dir.iterdir()):
            if run_dir.name in committed:
                continue
            self.reject_run(run_dir.name)
            discarded.append(run_dir.name)
        return discarded

    def reject_run(self, run_id: str) -> Path | None:
        """Drop an uncommitted run's folder, keeping its data-quality reports under ``rejected/`` (stamped:
        the next run reuses the id); where they went, if it had any."""
        run_dir = self.run_dir(run_id)
        kept = None
        quality = self.quality_dir(run_id)
        if quality.is_dir() and any(quality.iterdir()):
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            kept = self.rejected_dir / f"{run_id}-{stamp}"
            shutil.move(str(quality), kept)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        return kept

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Publish a run: its manifest is the commit point, ``LATEST`` follows."""
        self.manifests_dir.mkdir(parents=True, exist_ok=True)
        manifest = {"manifest_version": MANIFEST_VERSION, **manifest, "committed_at": utc_now()}
        path = self.manifests_dir / f"{manifest['run_id']}.json"
        if path.exists():
            raise FileExistsError(f"{path} is already committed")
        write_atomically(path, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        write_atomically(self.root / "LATEST", manifest["run_id"] + "\n")
        return path
