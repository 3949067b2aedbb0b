"""Blocked batches and the way out: an operator accepts a batch or sets it aside, and the next run applies it.

A feed's *batch* is the offset ranges one run read of it. When a ``block`` expectation fails, that feed's
batch is held back (its offsets stay, so the same messages are read again) while the other feeds land; the
run store keeps the batch as ``batches/blocked/<feed>.json``. An operator then decides about exactly that
batch: ``accept`` (it lands as is) or ``set_aside`` (its messages go to quarantine with reason ``set_aside``
and the offsets move on). The decision is kept as ``batches/decisions/<feed>.json`` until a run applies it;
the run reads exactly the decided ranges of that feed, records the decision in its manifest and so moves on.
A record is current while its ranges start where the committed offsets of the feed stand; once a commit
moves them, it is spent and the next run clears it. A later, different batch of the feed is checked again.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import replace
from typing import Any

from pipelines.kafka.client import OffsetRange
from pipelines.store import RunStore, utc_now

log = logging.getLogger(__name__)

ACCEPT = "accept"
SET_ASIDE = "set_aside"
ACTIONS = (ACCEPT, SET_ASIDE)
SET_ASIDE_REASON = "set_aside"  # the quarantine reason of a set-aside batch's messages


class BatchDecisionError(ValueError):
    """A decision that cannot be taken: nothing blocked for the feed, no reason, an unknown action."""


def offsets_of(ranges: list[OffsetRange]) -> list[dict[str, Any]]:
    """Ranges as the manifest lists them."""
    return [
        {"feed": r.feed, "topic": r.topic, "partition": r.partition, "start": r.start, "end": r.end}
        for r in ranges
    ]


def is_current(record: dict[str, Any], committed: dict[tuple[str, int], int]) -> bool:
    """Whether a blocked batch or decision is still ahead: every range starts at the committed offset."""
    return all(committed.get((o["topic"], o["partition"]), 0) == o["start"] for o in record["offsets"])


def blocked_batches(store: RunStore) -> dict[str, dict[str, Any]]:
    """Feed → its blocked batch that no run has moved past yet."""
    committed = store.committed_offsets()
    return {f: r for f, r in store.batch_records("blocked").items() if is_current(r, committed)}


def pending_decisions(store: RunStore) -> dict[str, dict[str, Any]]:
    """Feed → the decision the next run applies."""
    committed = store.committed_offsets()
    return {f: r for f, r in store.batch_records("decisions").items() if is_current(r, committed)}


def decide(store: RunStore, feed: str, action: str, reason: str, by: str | None = None) -> dict[str, Any]:
    """Record an operator's decision about the feed's blocked batch (under the store lock: not while a run
    holds it). The next run applies it to exactly the offsets that blocked."""
    if action not in ACTIONS:
        raise BatchDecisionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if not (reason or "").strip():
        raise BatchDecisionError(
            "a decision needs a reason (--reason): it is kept in the manifest and report"
        )
    with store.lock():
        blocked = blocked_batches(store).get(feed)
        if blocked is None:
            known = ", ".join(sorted(blocked_batches(store))) or "none"
            raise BatchDecisionError(f"no blocked batch of {feed!r} in {store.root} (blocked now: {known})")
        decision = {
            "feed": feed,
            "action": action,
            "reason": reason.strip(),
            "by": (by or "").strip() or getpass.getuser(),
            "decided_at": utc_now(),
            "blocked_in": blocked["run_id"],
            "blocked_at": blocked["blocked_at"],
            "offsets": blocked["offsets"],
            "staged": blocked["staged"],
            "quarantined": blocked["quarantined"],
            "failures": blocked["failures"],
            "report": blocked.get("report"),
        }
        store.write_record(store.decision_file(feed), decision)
    return decision


def decided_ranges(ranges: list[OffsetRange], decisions: dict[str, dict[str, Any]]) -> list[OffsetRange]:
    """The plan with each decided feed cut to exactly its decided ranges (what arrived after them is read by
    the run after). A decision whose ranges the topic no longer has is dropped with a warning."""
    for feed, decision in list(decisions.items()):
        planned = {(r.topic, r.partition): r for r in ranges if r.feed == feed}
        if not planned:  # the feed is not read this time (a DAG run's ``feeds``): the decision waits
            continue
        fits = all(
            (o["topic"], o["partition"]) in planned and planned[o["topic"], o["partition"]].end >= o["end"]
            for o in decision["offsets"]
        )
        if not fits:
            log.warning("%s: the decided batch is not on the topic any more; decision ignored", feed)
            del decisions[feed]
    cut = []
    for r in ranges:
        decision = decisions.get(r.feed)
        if decision is None:
            cut.append(r)
            continue
        ends = {(o["topic"], o["partition"]): o["end"] for o in decision["offsets"]}
        cut.append(replace(r, end=ends.get((r.topic, r.partition), r.start)))
    return cut


def settle(store: RunStore, blocked: dict[str, dict[str, Any]]) -> None:
    """After a run: keep its blocked batches, clear records a commit has moved past (applied decisions,
    batches that landed). A crash before this leaves records the next run clears or writes again."""
    for feed, record in blocked.items():
        store.write_record(store.blocked_batch_file(feed), record)
    committed = store.committed_offsets()
    for kind, path_of in (("blocked", store.blocked_batch_file), ("decisions", store.decision_file)):
        for feed, record in store.batch_records(kind).items():
            if not is_current(record, committed):
                path_of(feed).unlink(missing_ok=True)


def decisions_taken(store: RunStore) -> list[dict[str, Any]]:
    """Decisions the committed runs applied, newest first (each with ``applied_in``)."""
    return [
        decision
        for manifest in reversed(store.manifests())
        for decision in (manifest.get("decisions") or {}).values()
    ]
