"""Verdict files townships hand back: CSV or JSONL in the columns of ``schemas/verdict.json``, or a filled
work queue (XLSX, or CSV with its Chinese headers; see ``pipelines.townships.workqueue``).

``unitfusion verdicts add`` checks a file and copies it into the run store's ``verdicts/`` folder; every run
reads all of them, so a verdict keeps applying.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipelines.townships.workqueue import filled_rows, is_work_queue, verdict_rows
from pipelines.verdicts import Verdict, VerdictError, check_row, in_force, read_csv


def read_verdict_file(path: Path) -> list[Verdict]:
    """Verdicts of a file in the contract's columns (CSV, JSONL), or of a filled work queue (XLSX, or CSV
    with its Chinese headers; see ``pipelines.townships.workqueue``)."""
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
        check_row({k: "" if v is None else str(v) for k, v in r.items()}, f"{path.name} row {number}")
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
    """All verdicts in force in a run store's verdict folder."""
    if not verdicts_dir.is_dir():
        return []
    return in_force(
        verdict
        for path in sorted(verdicts_dir.iterdir())
        if path.suffix in (".csv", ".jsonl", ".xlsx")
        for verdict in read_verdict_file(path)
    )
