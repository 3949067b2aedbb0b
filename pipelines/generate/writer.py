"""JSONL output of the feeds and their ground truth, streamed in shuffled chunks.

Records are generated family by family; written in that order, neighbouring lines (and record ids) would give
the answer away. Each feed is buffered in chunks that are shuffled before their records are numbered and
written, so memory stays bounded and ids say nothing about units.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pipelines.contracts import FeedContract

_encode = json.JSONEncoder(ensure_ascii=False).encode


class FeedFiles:
    """One ``<feed>.jsonl`` per contract given and their ground truth (``truth_name``); use as a context
    manager."""

    def __init__(
        self,
        out_dir: Path,
        contracts: dict[str, FeedContract],
        prefixes: dict[str, str],
        rng: random.Random,
        chunk: int = 8192,
        truth_name: str = "truth.jsonl",
    ) -> None:
        self.rng = rng
        self.chunk = chunk
        self.prefixes = prefixes
        self.fields = {feed: c.field_names for feed, c in contracts.items()}
        self.paths = {feed: out_dir / f"{feed}.jsonl" for feed in contracts}
        self.truth_path = out_dir / truth_name
        self.counts = dict.fromkeys(contracts, 0)
        self._buffers: dict[str, list[tuple[dict[str, Any], str | None]]] = {feed: [] for feed in contracts}
        self._handles: dict[str, IO[str]] = {}
        self._truth: IO[str] | None = None

    def __enter__(self) -> FeedFiles:
        self._handles = {f: p.open("w", encoding="utf-8", newline="\n") for f, p in self.paths.items()}
        self._truth = self.truth_path.open("w", encoding="utf-8", newline="\n")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                for feed in self._buffers:
                    self._flush(feed)
        finally:
            for handle in [*self._handles.values(), self._truth]:
                if handle:
                    handle.close()

    def emit(self, feed: str, record: dict[str, Any], unit_id: str | None) -> None:
        buffer = self._buffers[feed]
        buffer.append((record, unit_id))
        if len(buffer) >= self.chunk:
            self._flush(feed)

    def _flush(self, feed: str) -> None:
        buffer = self._buffers[feed]
        if not buffer:
            return
        assert self._truth is not None
        self.rng.shuffle(buffer)
        names, prefix = self.fields[feed], self.prefixes[feed]
        lines, truth = [], []
        for record, unit_id in buffer:
            self.counts[feed] += 1
            record_id = f"{prefix}{self.counts[feed]:06d}"
            ordered = {"record_id": record_id, **{k: record[k] for k in names if k in record}}
            if len(ordered) != len(record) + 1:
                unknown = sorted(set(record) - set(names))
                raise ValueError(f"{feed}: fields not in the contract: {unknown}")
            lines.append(_encode(ordered))
            truth.append(_encode({"feed": feed, "record_id": record_id, "unit_id": unit_id}))
        self._handles[feed].write("\n".join(lines) + "\n")
        self._truth.write("\n".join(truth) + "\n")
        buffer.clear()


def write_jsonl_line(handle: IO[str], obj: dict[str, Any]) -> None:
    handle.write(_encode(obj) + "\n")
