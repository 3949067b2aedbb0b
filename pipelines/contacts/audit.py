"""The audit log of reveals: one JSON line per act, each chained to the one before.

``prev`` is the SHA-256 of the previous line as written (64 zeros for the first), ``hash`` the SHA-256 of the
line's own canonical JSON without ``hash``. Editing, removing or reordering a line breaks the chain at that
line, and ``verify`` names it. The log is appended to under a lock and never rewritten; it holds who, why,
what and how many, never a clear value.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sealed_line(record: dict[str, Any], prev: str) -> str:
    """The line of a record chained after a line whose SHA-256 is ``prev``."""
    body = {**record, "prev": prev}
    return canonical({**body, "hash": _sha256(canonical(body))})


def append(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one act to the log (created if need be) and return it as written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            lines = handle.read().splitlines()
            prev = _sha256(lines[-1]) if lines else GENESIS
            line = sealed_line(record, prev)
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return json.loads(line)


def verify(lines: list[str]) -> tuple[int, str] | None:
    """``(line number, what is wrong)`` of the first line that breaks the chain, or None if all hold."""
    prev = GENESIS
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            return number, "not a JSON line"
        if not isinstance(record, dict) or "hash" not in record:
            return number, "no hash"
        claimed = record.pop("hash")
        if record.get("prev") != prev:
            return number, "prev is not the SHA-256 of the line before (a line was edited, removed or moved)"
        if claimed != _sha256(canonical(record)):
            return number, "hash does not match the line's content (the line was edited)"
        prev = _sha256(line)
    return None


def verify_file(path: Path) -> tuple[int, str] | None:
    if not path.is_file():
        return None
    return verify(path.read_text(encoding="utf-8").splitlines())
