"""Township verdicts as values: the verdict contract (``schemas/verdict.json``), its check, and which
verdict is in force.

A verdict is a decision from a field check that overrides the model on every run from then on. The files
townships hand back are read in ``pipelines.townships.verdict_files``; the resolver receives the verdicts in
force as values of ``Verdict``. A later verdict on the same item replaces an earlier one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
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


def check_row(row: dict[str, str], where: str) -> Verdict:
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


def in_force(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """The verdicts in force: the latest per item (by decided_at, then verdict_id)."""
    latest: dict[tuple, Verdict] = {}
    for verdict in verdicts:
        current = latest.get(verdict.item)
        key = (datetime.fromisoformat(verdict.decided_at), verdict.verdict_id)
        if current is None or key >= (datetime.fromisoformat(current.decided_at), current.verdict_id):
            latest[verdict.item] = verdict
    return sorted(latest.values(), key=lambda v: v.verdict_id)
