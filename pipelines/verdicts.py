"""Township verdicts as values: the verdict contract (``schemas/verdict.json``), its check, and which
verdict is in force.

A verdict is a decision from a field check that overrides the model on every run from then on. The files
townships hand back are read in ``pipelines.townships.verdict_files``; the resolver receives the verdicts in
force as values of ``Verdict``. A later verdict on the same item replaces an earlier one, so a verdict dated
in the future is refused: it would win over every later decision.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pipelines.contracts import verdict_schema

SAME_UNIT = "same_unit"
DIFFERENT_UNITS = "different_units"
NEW_UNIT = "new_unit"
NOT_A_BUSINESS = "not_a_business"
# 一户多证: one operator holds both licences. Recorded and kept apart like different units, never merged:
# the answer to a "same unit" that two distinct valid USCCs would override on every run.
SAME_OPERATOR = "same_operator"
DECISIONS = (SAME_UNIT, DIFFERENT_UNITS, NEW_UNIT, NOT_A_BUSINESS, SAME_OPERATOR)
NEEDS_UNIT_B = (SAME_UNIT, SAME_OPERATOR)  # the unit the record (or unit_id_a) is one with
VERDICT_COLUMNS = tuple(verdict_schema().names)
CLOCK_SLACK = timedelta(days=1)  # a township's clock (or time zone slip) may run ahead of ours
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet evaluates; work queues quote it


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
    def about(self) -> str:
        """The item in words, for people: ``tax T8``, or ``U1… / U2…``."""
        if self.record_id:
            return f"{self.feed} {self.record_id}"
        return f"{self.unit_id_a} / {self.unit_id_b}"

    @property
    def item(self) -> tuple[str | None, ...]:
        """What the verdict is about; a later verdict on the same item wins."""
        if self.record_id:
            return ("record", self.feed, self.record_id)
        return ("pair", *sorted([self.unit_id_a or "", self.unit_id_b or ""]))


def unapplied(verdict: Verdict, reason: str) -> dict[str, str | None]:
    """A verdict that could not apply, and why: a row of the run report's table (and the register's meta)."""
    return {
        "verdict_id": verdict.verdict_id,
        "decision": verdict.decision,
        "about": verdict.about,
        "decided_by": verdict.decided_by,
        "decided_at": verdict.decided_at,
        "reason": reason,
    }


def check_row(
    row: dict[str, str], where: str, feeds: Iterable[str] | None = None, now: datetime | None = None
) -> Verdict:
    """A row of the verdict contract as a ``Verdict``, or a ``VerdictError`` saying where and what is wrong.
    ``feeds``: the known feeds; ``now``: refuse a ``decided_at`` in the future of it (see ``is_future``).
    Either is left unchecked when None."""
    clean = {k: (row.get(k) or "").strip() or None for k in VERDICT_COLUMNS}
    if clean["decision"] not in DECISIONS:
        raise VerdictError(
            f"{where}: decision must be one of {', '.join(DECISIONS)}, got {clean['decision']!r}"
        )
    if clean["record_id"] and not clean["feed"]:
        raise VerdictError(f"{where}: a record verdict needs its feed")
    known = None if feeds is None else set(feeds)
    if known is not None and clean["feed"] and clean["feed"] not in known:
        raise VerdictError(
            f"{where}: unknown feed {clean['feed']!r}; known feeds: {', '.join(sorted(known))}"
        )
    if not clean["record_id"] and not (clean["unit_id_a"] and clean["unit_id_b"]):
        raise VerdictError(f"{where}: give feed + record_id, or unit_id_a + unit_id_b")
    if clean["decision"] in NEEDS_UNIT_B and not clean["unit_id_b"]:
        raise VerdictError(
            f"{where}: {clean['decision']} needs unit_id_b (the unit the record or unit_id_a is one with)"
        )
    for required in ("verdict_id", "decided_by", "decided_at"):
        if not clean[required]:
            raise VerdictError(f"{where}: {required} is missing")
    try:
        decided_at = datetime.fromisoformat(clean["decided_at"])
        if decided_at.tzinfo is None:
            raise ValueError
    except ValueError:
        raise VerdictError(f"{where}: decided_at must be ISO 8601 with a UTC offset") from None
    if now is not None and is_future(decided_at, now):
        raise VerdictError(f"{where}: decided_at {clean['decided_at']} is in the future")
    return Verdict(**clean)  # type: ignore[arg-type]


def code_conflict(verdict: Verdict, code_a: str | None, code_b: str | None) -> str | None:
    """Why a ``same_unit`` verdict cannot apply, or None: its two sides hold distinct valid USCCs
    (``code_a``: of the record or unit_id_a, ``code_b``: of unit_id_b), and distinct USCCs never merge, so
    every run would ignore it and the item would stay in its queue. One line offering ``same_operator``."""
    if verdict.decision != SAME_UNIT or not code_a or not code_b or code_a == code_b:
        return None
    side_a = f"{verdict.feed} {verdict.record_id}" if verdict.record_id else f"unit {verdict.unit_id_a}"
    return (
        f"same_unit cannot apply: {side_a} holds USCC {code_a} and unit {verdict.unit_id_b} holds {code_b}, "
        "and distinct valid USCCs never merge; if one operator holds both licences (一户多证), "
        f"give decision {SAME_OPERATOR} (同一经营者) instead"
    )


def is_future(decided_at: datetime, now: datetime) -> bool:
    """Later than ``now`` by more than ``CLOCK_SLACK``: such a verdict would win over every decision made
    after it."""
    return decided_at > now + CLOCK_SLACK


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file: UTF-8 (with or without BOM), or GB18030 as Excel on Chinese Windows
    saves it. The ``'`` work queues write before a cell a spreadsheet would take for a formula is dropped."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as error:
            raise VerdictError(
                f"{path.name}: not text in UTF-8 or GB18030 (byte {error.start}); save it as CSV again"
            ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as error:
        raise VerdictError(f"{path.name} line {reader.line_num}: not CSV ({error})") from None
    return [name.strip() for name in reader.fieldnames or []], [
        {(k or "").strip(): _unquote(v) for k, v in row.items()} for row in rows
    ]


def _unquote(cell: str | list | None) -> str | list | None:
    """A cell without the one ``'`` that keeps a spreadsheet from taking it for a formula (put only before
    ``FORMULA_STARTS``, so a ``'`` typed before anything else stays)."""
    if isinstance(cell, str) and cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def in_force(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """The verdicts in force: the latest per item (by decided_at, then verdict_id)."""
    latest: dict[tuple, Verdict] = {}
    for verdict in verdicts:
        current = latest.get(verdict.item)
        key = (datetime.fromisoformat(verdict.decided_at), verdict.verdict_id)
        if current is None or key >= (datetime.fromisoformat(current.decided_at), current.verdict_id):
            latest[verdict.item] = verdict
    return sorted(latest.values(), key=lambda v: v.verdict_id)
