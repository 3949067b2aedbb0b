"""Township verdicts: decisions from field checks that override the model, on every run from then on.

Verdict files (CSV or JSONL with the columns of ``schemas/verdict.json``, or a township's filled work
queue, XLSX or CSV with Chinese headers, from ``pipelines.ops.workqueue``) are copied into the run store's
``verdicts/`` folder by ``unitfusion verdicts add``; every run reads all of them, so a verdict keeps
applying. A later verdict on the same item replaces an earlier one.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipelines.contracts import verdict_schema

SAME_UNIT = "same_unit"
DIFFERENT_UNITS = "different_units"
NEW_UNIT = "new_unit"
NOT_A_BUSINESS = "not_a_business"
DECISIONS = (SAME_UNIT, DIFFERENT_UNITS, NEW_UNIT, NOT_A_BUSINESS)
VERDICT_COLUMNS = tuple(verdict_schema().names)


class VerdictError(ValueError):
    pass


@dataclass(frozen=True)
class Verdict:
    verdict_id: str
    decision: str
    decided_by: str
    decided_at: str
    feed: str | None = None
    record_id: str | None = None
    unit_id_a: str | None = None
    unit_id_b: str | None = None
    note: str | None = None

    @property
    def item(self) -> tuple[str | None, ...]:
        """What the verdict is about; a later verdict on the same item wins."""
        if self.record_id:
            return ("record", self.feed, self.record_id)
        return ("pair", *sorted([self.unit_id_a or "", self.unit_id_b or ""]))


def _check(row: dict[str, str], where: str) -> Verdict:
    clean = {k: (row.get(k) or "").strip() or None for k in VERDICT_COLUMNS}
    if clean["decision"] not in DECISIONS:
        raise VerdictError(
            f"{where}: decision must be one of {', '.join(DECISIONS)}, got {clean['decision']!r}"
        )
    if clean["record_id"] and not clean["feed"]:
        raise VerdictError(f"{where}: a record verdict needs its feed")
    if not clean["record_id"] and not (clean["unit_id_a"] and clean["unit_id_b"]):
        raise VerdictError(f"{where}: give feed + record_id, or unit_id_a + unit_id_b")
    if clean["decision"] == SAME_UNIT and not clean["unit_id_b"]:
        raise VerdictError(
            f"{where}: same_unit needs unit_id_b (the unit the record or unit_id_a belongs to)"
        )
    for required in ("verdict_id", "decided_by", "decided_at"):
        if not clean[required]:
            raise VerdictError(f"{where}: {required} is missing")
    try:
        if datetime.fromisoformat(clean["decided_at"]).tzinfo is None:
            raise ValueError
    except ValueError:
        raise VerdictError(f"{where}: decided_at must be ISO 8601 with a UTC offset") from None
    return Verdict(**clean)  # type: ignore[arg-type]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file: UTF-8 (with or without BOM), or GB18030 as Excel on Chinese Windows
    saves it."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("gb18030")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    return [name.strip() for name in reader.fieldnames or []], [
        {(k or "").strip(): v for k, v in row.items()} for row in rows
    ]


def read_verdict_file(path: Path) -> list[Verdict]:
    """Verdicts of a file in the contract's columns (CSV, JSONL), or of a filled work queue (XLSX, or CSV
    with its Chinese headers; see ``pipelines.ops.workqueue``)."""
    from pipelines.ops.workqueue import filled_rows, is_work_queue, verdict_rows

    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [(i + 1, json.loads(line)) for i, line in enumerate(lines) if line.strip()]
    elif path.suffix == ".csv":
        header, plain = read_csv(path)
        numbered = list(enumerate(plain, start=2))
        rows = verdict_rows(path.name, header, numbered) if is_work_queue(header) else numbered
    elif path.suffix == ".xlsx":
        rows = filled_rows(path)
    else:
        raise VerdictError(f"{path.name}: verdict files are .csv, .xlsx or .jsonl")
    return [
        _check({k: "" if v is None else str(v) for k, v in r.items()}, f"{path.name} row {number}")
        for number, r in rows
    ]


def add_verdict_file(source: Path, verdicts_dir: Path) -> int:
    """Check a township's file and keep it in the run store; returns the number of verdicts."""
    verdicts = read_verdict_file(source)
    verdicts_dir.mkdir(parents=True, exist_ok=True)
    target = verdicts_dir / source.name
    if target.exists() and target.read_bytes() != source.read_bytes():
        target = verdicts_dir / f"{source.stem}-{len(list(verdicts_dir.iterdir()))}{source.suffix}"
    shutil.copyfile(source, target)
    return len(verdicts)


def load_verdicts(verdicts_dir: Path) -> list[Verdict]:
    """All verdicts in force: the latest per item (by decided_at, then verdict_id)."""
    if not verdicts_dir.is_dir():
        return []
    latest: dict[tuple, Verdict] = {}
    for path in sorted(verdicts_dir.iterdir()):
        if path.suffix in (".csv", ".jsonl", ".xlsx"):
            for verdict in read_verdict_file(path):
                current = latest.get(verdict.item)
                key = (datetime.fromisoformat(verdict.decided_at), verdict.verdict_id)
                if current is None or key >= (datetime.fromisoformat(current.decided_at), current.verdict_id):
                    latest[verdict.item] = verdict
    return sorted(latest.values(), key=lambda v: v.verdict_id)
