"""Verdict files townships hand back: CSV or JSONL in the columns of ``schemas/verdict.json``, or a filled
work queue (XLSX, or CSV with its Chinese headers; see ``pipelines.townships.workqueue``).

``unitfusion verdicts add`` checks a file and copies it into the run store's ``verdicts/`` folder; every run
reads all of them, so a verdict keeps applying. A stored file is never overwritten: it is kept under its
content hash and its own name, so two townships' ``verdicts.csv`` both stay, and the same file added twice
is kept once.

A verdict a hard constraint would override is refused at add, against the latest published register: a
"same unit" whose sides hold two distinct valid USCCs never applies (such units never merge), so it would sit
unapplied and its item in the queue forever. The message offers ``same_operator`` (一户多证) instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.store import STATE_DIR
from pipelines.townships.workqueue import filled_rows, is_work_queue, verdict_rows
from pipelines.verdicts import (
    Verdict,
    VerdictError,
    check_row,
    code_conflict,
    in_force,
    is_future,
    read_csv,
    unapplied,
)

log = logging.getLogger(__name__)
SUFFIXES = (".csv", ".jsonl", ".xlsx")


@dataclass(frozen=True)
class Kept:
    """What ``add_verdict_file`` did: the verdicts it read, where the file is kept, whether it was new."""

    count: int
    path: Path
    new: bool


@dataclass(frozen=True)
class StoredVerdicts:
    """The verdicts of a run store: those in force, and those set aside (rows of the run report's table)."""

    in_force: list[Verdict]
    set_aside: list[dict[str, str | None]] = field(default_factory=list)


def read_verdict_file(
    path: Path, feeds: Iterable[str] | None = None, now: datetime | None = None
) -> list[Verdict]:
    """Verdicts of a file in the contract's columns (CSV, JSONL), or of a filled work queue (XLSX, or CSV
    with its Chinese headers; see ``pipelines.townships.workqueue``). Anything unreadable is a
    ``VerdictError`` naming the file and, where there is one, the line or row. ``feeds`` and ``now`` as in
    ``check_row``."""
    return [verdict for _, verdict in _numbered_verdicts(path, feeds, now)]


def _numbered_verdicts(
    path: Path, feeds: Iterable[str] | None, now: datetime | None
) -> list[tuple[str, Verdict]]:
    """Each verdict of a file with where it is (``v.csv row 3``), for messages about it."""
    if path.suffix == ".jsonl":
        rows = _jsonl_rows(path)
    elif path.suffix == ".csv":
        header, plain = read_csv(path)
        numbered = list(enumerate(plain, start=2))
        rows = verdict_rows(path.name, header, numbered) if is_work_queue(header) else numbered
    elif path.suffix == ".xlsx":
        rows = _workbook_rows(path)
    else:
        raise VerdictError(f"{path.name}: verdict files are .csv, .xlsx or .jsonl")
    unit = "line" if path.suffix == ".jsonl" else "row"
    numbered = []
    for number, row in rows:
        where = f"{path.name} {unit} {number}"
        cells = {k: "" if v is None else str(v) for k, v in row.items()}
        numbered.append((where, check_row(cells, where, feeds=feeds, now=now)))
    return numbered


def _jsonl_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise VerdictError(f"{path.name}: not UTF-8 text (byte {error.start})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise VerdictError(
                f"{path.name} line {number}: not JSON ({error.msg}, column {error.colno})"
            ) from None
        if not isinstance(row, dict):
            raise VerdictError(f"{path.name} line {number}: not a JSON object")
        rows.append((number, row))
    return rows


def _workbook_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The filled rows of a workbook; a file that is no workbook (truncated, renamed, damaged) is one line."""
    try:
        return filled_rows(path)
    except VerdictError:
        raise
    except Exception as error:  # openpyxl fails in many ways on a damaged file: zip, XML, missing parts
        raise VerdictError(f"{path.name}: not a readable XLSX workbook ({error})") from None


def add_verdict_file(
    source: Path,
    verdicts_dir: Path,
    feeds: Iterable[str] | None = None,
    register: Path | None = None,
) -> Kept:
    """Check a township's file and keep it in the run store, never over another file: under its content hash
    and name. A file kept before (same bytes) is not kept again. ``feeds``: the known feeds (default: those
    of the contracts); a verdict about another feed is refused. ``register``: a published register run (the
    store's latest); a verdict its codes would override is refused (see ``RegisterCodes``)."""
    if feeds is None:
        from pipelines.contracts import feed_names

        feeds = feed_names()
    numbered = _numbered_verdicts(source, feeds, datetime.now(UTC))
    if register is not None:
        codes = RegisterCodes.read(register, [verdict for _, verdict in numbered])
        for where, verdict in numbered:
            if why := code_conflict(verdict, codes.of_a(verdict), codes.of_b(verdict)):
                raise VerdictError(f"{where}: {why}")
    verdicts = [verdict for _, verdict in numbered]
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    for kept in stored_files(verdicts_dir):
        if hashlib.sha256(kept.read_bytes()).hexdigest() == digest:
            return Kept(len(verdicts), kept, new=False)
    verdicts_dir.mkdir(parents=True, exist_ok=True)
    target = verdicts_dir / f"{digest[:16]}-{source.name}"
    _write_new(target, data)
    return Kept(len(verdicts), target, new=True)


@dataclass(frozen=True)
class RegisterCodes:
    """The valid USCCs a published register holds for the units and records some verdicts name: what
    clustering holds them to (a unit's code from ``register.parquet``; a record's from its entity in the
    run's resolution state, since a record without a code of its own may still move to another unit)."""

    units: dict[str, str]
    records: dict[tuple[str, str], str]

    def of_a(self, verdict: Verdict) -> str | None:
        if verdict.record_id:
            return self.records.get((verdict.feed or "", verdict.record_id))
        return self.units.get(verdict.unit_id_a or "")

    def of_b(self, verdict: Verdict) -> str | None:
        return self.units.get(verdict.unit_id_b or "")

    @classmethod
    def read(cls, run_dir: Path, verdicts: list[Verdict]) -> RegisterCodes:
        """Only the rows the verdicts name are read. A register without resolution state (pruned, or
        older) gives no record codes: those verdicts are left to the run, which lists what it cannot apply."""
        unit_ids = {u for v in verdicts for u in (v.unit_id_a, v.unit_id_b) if u}
        keys = {(v.feed or "", v.record_id) for v in verdicts if v.record_id}
        units = _rows(run_dir / "register.parquet", ["unit_id", "uscc"], "unit_id", unit_ids)
        links = _rows(
            run_dir / "links.parquet", ["feed", "record_id", "entity_id"], "record_id", {r for _, r in keys}
        )
        entity_of = {
            (r["feed"], r["record_id"]): r["entity_id"]
            for r in links
            if (r["feed"], r["record_id"]) in keys and r["entity_id"]
        }
        entities = _rows(
            run_dir / STATE_DIR / "entities.parquet",
            ["entity_id", "uscc"],
            "entity_id",
            set(entity_of.values()),
        )
        code_of = {r["entity_id"]: r["uscc"] for r in entities if r["uscc"]}
        return cls(
            units={r["unit_id"]: r["uscc"] for r in units if r["uscc"]},
            records={key: code_of[e] for key, e in entity_of.items() if e in code_of},
        )


def _rows(path: Path, columns: list[str], key: str, wanted: set[str]) -> list[dict]:
    """The rows of a Parquet table whose ``key`` is one of ``wanted`` (none if the file is missing)."""
    import pyarrow.parquet as pq

    if not wanted or not path.is_file():
        return []
    return pq.read_table(path, columns=columns, filters=[(key, "in", sorted(wanted))]).to_pylist()


def _write_new(target: Path, data: bytes) -> None:
    """Write a file whole under a name nobody has: written aside, then linked in (which fails if taken)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, target)  # unlike a rename, never replaces a file
    finally:
        tmp.unlink(missing_ok=True)


def stored_files(verdicts_dir: Path) -> list[Path]:
    """The verdict files kept in a run store, in name order (hidden files being written are not)."""
    if not verdicts_dir.is_dir():
        return []
    return sorted(p for p in verdicts_dir.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("."))


def load_verdicts(verdicts_dir: Path, now: datetime | None = None) -> StoredVerdicts:
    """The verdicts in force in a run store's verdict folder. A verdict dated in the future (a file put there
    by hand, or kept before such dates were refused) is set aside, not applied: it would win forever."""
    now = now or datetime.now(UTC)
    kept: list[Verdict] = []
    set_aside = []
    for path in stored_files(verdicts_dir):
        for verdict in read_verdict_file(path):
            if is_future(datetime.fromisoformat(verdict.decided_at), now):
                log.info("%s: verdict %s is dated in the future; not applied", path.name, verdict.verdict_id)
                set_aside.append(unapplied(verdict, f"decided_at in the future ({path.name})"))
            else:
                kept.append(verdict)
    return StoredVerdicts(in_force(kept), set_aside)
