"""What a pass owes after the register, finished for every run that still lacks it.

Three idempotent steps, each keyed on the run it belongs to and marked done in the store when it finished
(``outputs/<run>/<step>.done``): the township work queues and the run report of each published register
run, and the alerts to ops about each committed ingest run. ``complete_outputs`` runs at the end of every
pass (CLI and DAG), so a pass killed after publishing, or out of disk half-way through an export, is
finished by the next one, even when that one finds its inputs unchanged.

The alerts of an ingest run are a pure function of its manifest and the manifests before it, all immutable
once committed: the commit is what owes them. They are queued in the run's outbox (``alerts/<run>.jsonl``)
and marked sent per channel after each send (see ``send_alerts``).

A monthly run also owes the pack of its month (``complete_pack``): keyed on the month, not on a run, so a
run with nothing new writes it too, and a rerun that finds it built from the same register writes nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipelines.ops.alerts import AlertChannels, alerts_for_ingest, send_alerts
from pipelines.store import RunStore
from pipelines.townships.verdict_files import load_verdicts

log = logging.getLogger(__name__)
STEPS = ("work_queues", "report", "alerts")


class OutputsIncomplete(RuntimeError):
    """Some step failed for some run (the others were still done); the next pass tries it again."""

    def __init__(self, completed: Completed) -> None:
        failed = "; ".join(f"{step} of {run}: {why}" for (step, run), why in completed.failed.items())
        super().__init__(f"outputs not finished, the next run tries again: {failed}")
        self.completed = completed


@dataclass
class Completed:
    """What ``complete_outputs`` did: per step, the summary of each run it finished now."""

    done: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {s: {} for s in STEPS})
    unfinished: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # alerts a channel owes
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)


def _work_queues(store: RunStore, run: str, period: str | None) -> dict[str, Any]:
    from pipelines.townships.workqueue import export_work_queues

    if store.queues_dir(run).is_dir():  # an export is renamed into place whole: this one finished
        return {"files": len(list(store.queues_dir(run).iterdir())), "found": True}
    paths = export_work_queues(store, run, period)
    return {"files": len(paths), "workbooks": sum(p.suffix == ".xlsx" for p in paths), "period": period}


def _report(store: RunStore, run: str, period: str | None) -> dict[str, Any]:
    from pipelines.ops.report import write_report

    if store.report_path(run).is_file():  # written atomically: there means complete
        return {"report": store.relative(store.report_path(run)), "found": True}
    return {"report": store.relative(write_report(store, run))}


def pack_key(period: str) -> str:
    """The key of a month's pack among the completion markers: ``outputs/period-<YYYY-MM>/pack.done``."""
    return f"period-{period}"


def complete_pack(store: RunStore, period: str) -> dict[str, Any]:
    """Write the pack of ``period`` from the latest register unless it was built from that register
    already (then nothing is written: a retry or a second backfill of the month changes nothing); a newer
    register (a late delivery, new verdicts) builds it again. No register yet: nothing to pack."""
    from pipelines.townships.workqueue import export_period_pack

    latest = store.register_latest()
    if latest is None:
        return {"period": period, "register_run": None}
    marker = store.output_marker(pack_key(period), "pack")
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("register_run") == latest.name and store.pack_dir(period).is_dir():
            return {**done, "found": True}
    # verdicts in force say which of the month's items townships answered (the pages' feedback rate)
    summary = export_period_pack(store, period, latest.name, load_verdicts(store.verdicts_dir).in_force)
    store.mark_output_done(pack_key(period), "pack", summary)
    return summary


STEP_RUNS: dict[str, Callable[[RunStore], list[str]]] = {
    "work_queues": RunStore.register_runs,
    "report": RunStore.register_runs,
    "alerts": RunStore.committed_runs,
}


def clean_partials(store: RunStore, steps: Iterable[str]) -> list[str]:
    """Drop what interrupted runs of ``steps`` left (a DAG runs the steps as parallel tasks: each task
    cleans only its own)."""
    cleaned = []
    for path in [p for step in steps for p in store.stale_partials(step)]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        cleaned.append(store.relative(path))
    return cleaned


def complete_outputs(
    store: RunStore,
    steps: Iterable[str] = STEPS,
    channels: AlertChannels | None = None,
    period: str | None = None,
) -> Completed:
    """Finish every step of ``steps`` for every run that lacks its marker, oldest run first, once.

    A step that fails for one run does not stop the others; ``OutputsIncomplete`` names what failed, after
    everything else was done. Alerts that a channel could not take stay unmarked (``unfinished``), to be
    sent by the next pass. ``period`` (YYYY-MM) limits the warnings of work queues exported now."""
    steps = list(steps)
    completed = Completed(cleaned=clean_partials(store, steps))
    for step in steps:
        for run in STEP_RUNS[step](store):
            if store.output_done(run, step):
                continue
            try:
                if step == "alerts":
                    channels = channels or AlertChannels.from_environment()
                    summary = send_alerts(store, run, alerts_for_ingest(store, run), channels)
                    if not summary["complete"]:
                        completed.unfinished[(step, run)] = summary
                        continue
                else:
                    summary = (_work_queues if step == "work_queues" else _report)(store, run, period)
            except Exception as error:  # the other runs and steps still go; the next pass retries this one
                log.exception("%s of %s failed", step, run)
                completed.failed[(step, run)] = f"{type(error).__name__}: {error}"
                continue
            store.mark_output_done(run, step, summary)
            completed.done[step][run] = summary
    if completed.failed:
        raise OutputsIncomplete(completed)
    return completed
