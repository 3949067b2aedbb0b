"""The register pass: when to resolve, what to read, and landing the result. The IO around ``resolve``.

Inputs of a register: the committed ingest runs, the township verdicts, the model and the resolver's
settings. A register run records a fingerprint of them; a pass with nothing new lands nothing. A pass is
incremental: it reads only what was staged since the last register and the state that register kept. It
rebuilds everything from all staged records when asked (``unitfusion rebuild``), when there is no state to
start from, or when the model, the settings or the state's format changed since. Either way unit ids carry
over from the last register, and the run writes everything into a hidden folder that becomes visible at once.
"""

from __future__ import annotations

import hashlib
import logging
import resource
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contacts.best import vault_masks
from pipelines.contracts import CHINA, output_schema, resolver_schema
from pipelines.mappings import mapping
from pipelines.marts.analysis import write_analysis_database
from pipelines.marts.build import PARTITIONED, MartInputs, build_marts
from pipelines.pii import Tokeniser
from pipelines.resolve import (
    MODEL_PATH,
    DuckDBEngine,
    History,
    Resolution,
    ResolutionState,
    ResolveInputs,
    ResolveSettings,
    model_version,
    resolve,
)
from pipelines.resolve.labels import verdict_labels
from pipelines.resolve.model import label_accuracy
from pipelines.resolve.state import ISSUED_SCHEMA, STATE_VERSION
from pipelines.rules.warnings import Facts, Figures, compute_warnings, family_feeds
from pipelines.staging import all_latest_records
from pipelines.store import MARTS_DIR, RunStore, utc_now
from pipelines.townships.verdict_files import load_verdicts
from pipelines.verdicts import Verdict

log = logging.getLogger(__name__)
PUBLISHED = ("register", "links", "review", "warnings")
# what a run's marts start from: the last run's (name cores, months and links carried over, quality appended)
CARRIED_MARTS = ["units", "unit_month", "links", "register_quality"]


@dataclass
class Landed:
    result: Resolution
    path: Path
    seconds: float
    meta: dict[str, Any]


@dataclass
class Prepared:
    """A register run written but not yet published."""

    run_id: str
    resolution: Resolution
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tables(self) -> dict[str, pa.Table]:
        return self.resolution.tables


def inputs_fingerprint(
    store: RunStore, model_path: Path = MODEL_PATH, settings: ResolveSettings | None = None
) -> dict[str, Any]:
    latest = store.latest_manifest()
    digest = hashlib.sha256()
    if store.verdicts_dir.is_dir():
        for path in sorted(store.verdicts_dir.iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "ingest_run": latest["run_id"] if latest else None,
        "verdicts": digest.hexdigest()[:16],
        "model_version": model_version(model_path),
        "settings": (settings or ResolveSettings()).fingerprint(),
        "state_version": STATE_VERSION,
    }


def next_register_run_id(store: RunStore) -> str:
    runs = store.register_dir / "runs"
    done = [p for p in runs.iterdir() if p.name.startswith("reg-")] if runs.is_dir() else []
    return f"reg-{len(done) + 1:06d}"


def _why_rebuild(previous: dict[str, Any] | None, fingerprint: dict[str, Any], has_state: bool) -> str | None:
    """Why this pass must resolve everything again, or None if it can carry on from the last register."""
    if previous is None:
        return "first register"
    if not has_state:
        return "the last register kept no state"
    before = previous.get("inputs", {})
    for name in ("model_version", "settings", "state_version"):
        if before.get(name) != fingerprint[name]:
            return f"{name.replace('_', ' ')} changed"
    return None


def _linked_periods(records: pa.Table, links: pa.Table, feed: str) -> list[str]:
    """The periods of the records of ``feed`` that are in a unit (the figures warnings are about)."""
    linked = links.filter(pc.equal(links["feed"], feed))["record_id"]
    return _periods(records.filter(pc.is_in(records["record_id"], linked)), feed)


def _periods(records: pa.Table, feed: str) -> list[str]:
    """The periods records of ``feed`` have figures for (the field its mapping's ``period`` role names)."""
    return sorted(p for p in pc.unique(records[mapping(feed).roles["period"]]).to_pylist() if p)


def prepare_register(
    store: RunStore,
    settings: ResolveSettings | None = None,
    model_path: Path = MODEL_PATH,
    force: bool = False,
    rebuild: bool = False,
    *,
    key: bytes,
) -> Prepared | None:
    """Resolve and write a new register, unpublished, if its inputs changed (or ``force``/``rebuild``).
    ``key``: the tokenisation key the entry point resolved; it tokenises the phones and legal representatives'
    names resolution reads in clear, the same way import did."""
    settings = settings or ResolveSettings()
    with store.lock():
        store.finish_publishing()
        fingerprint = inputs_fingerprint(store, model_path, settings)
        if fingerprint["ingest_run"] is None:
            return None
        latest = store.register_latest()
        previous = store.register_meta(latest) if latest else None
        if not (force or rebuild) and previous and previous.get("inputs") == fingerprint:
            return None
        for stale in store.pending_registers():  # an earlier attempt that never published
            shutil.rmtree(store.partial_register_dir(stale))
        run_id = next_register_run_id(store)
        begun = time.monotonic()
        stored = load_verdicts(store.verdicts_dir)
        inputs, reason = _inputs(
            store, previous, fingerprint, run_id, settings, model_path, rebuild, stored.in_force, key
        )
        read_s = time.monotonic() - begun
        warnings_before = inputs.history.warnings
        resolution = resolve(inputs)
        del inputs  # what this run did not keep of the last register's tables is freed before it writes
        begun = time.monotonic()
        records = resolution.state.records
        # more of them: every unit's warnings change
        tax_periods = sorted({p for feed in family_feeds("tax") for p in _periods(records[feed], feed)})
        everything = resolution.reference_changed or tax_periods != (previous or {}).get("state", {}).get(
            "tax_periods"
        )
        resolution.tables["warnings"] = _warnings(
            resolution, None if everything or reason else resolution.touched_units, warnings_before, run_id
        )
        timings = {
            "read": round(read_s, 3),
            **resolution.timings,
            "warnings": round(time.monotonic() - begun, 3),
        }
        begun = time.monotonic()
        created_at = utc_now()
        marts = build_marts(
            MartInputs(
                tables=resolution.tables,
                records=resolution.state.records,
                reference=resolution.state.reference,
                run_id=run_id,
                created_at=created_at,
                today=_china_date(created_at),
                touched=None if reason else resolution.touched_units,
                previous=store.register_marts(latest, CARRIED_MARTS) if latest and not reason else {},
            )
        )
        resolution.tables["register"] = marts.register
        timings["marts"] = round(time.monotonic() - begun, 3)
        begun = time.monotonic()
        labelled = _labelled_accuracy(resolution, stored.in_force, settings, model_path)
        timings["accuracy"] = round(time.monotonic() - begun, 3)
        meta = {
            "run_id": run_id,
            "mode": "rebuild" if reason else "incremental",
            "rebuild_reason": reason,
            "inputs": fingerprint,
            "model_version": fingerprint["model_version"],
            "created_at": created_at,
            "counts": {name: table.num_rows for name, table in resolution.tables.items()},
            "stats": resolution.stats,
            "verdicts": {  # in force; and those that could not apply, named with why
                "in_force": len(stored.in_force),
                "unapplied": stored.set_aside + resolution.unknown_verdicts,
            },
            "timings_s": timings,
            "state": {"reference": resolution.state.reference, "tax_periods": tax_periods},
            "quality": marts.quality,
            "marts": {name: table.num_rows for name, table in marts.tables.items()},
            "accuracy": {"labelled": labelled},  # the model on the verdicts' pairs (pairs 0: no verdicts)
        }
        begun = time.monotonic()
        state_tables = {
            **resolution.state.tables(),
            "issued": resolution.history.issued,
            "constraints": resolution.history.constraints,
        }
        store.write_register(run_id, resolution.tables, meta, state_tables, marts.tables, PARTITIONED)
        meta["timings_s"]["write"] = round(time.monotonic() - begun, 3)
        meta["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        store.rewrite_register_meta(run_id, meta)
        return Prepared(run_id, resolution, meta)


def _labelled_accuracy(
    resolution: Resolution, verdicts: list[Verdict], settings: ResolveSettings, model_path: Path
) -> dict[str, Any]:
    """The model's precision and recall at the link threshold on the pairs the verdicts in force label,
    scored with the run's frozen term frequencies (``pipelines.resolve.labels``)."""
    engine, state = DuckDBEngine(), resolution.state
    constraints = resolution.history.constraints
    labels = verdict_labels(engine, verdicts, state.records, state.members, state.edges, constraints)
    return label_accuracy(
        engine, state.entities, labels, model_path, state.term_frequencies, settings.link_threshold
    )


def _china_date(moment: str) -> date:
    """The day in China of an ISO UTC time: what the departments and townships call today."""
    return datetime.fromisoformat(moment).astimezone(CHINA).date()


def _inputs(
    store: RunStore,
    previous: dict[str, Any] | None,
    fingerprint: dict[str, Any],
    run_id: str,
    settings: ResolveSettings,
    model_path: Path,
    rebuild: bool,
    verdicts: list[Verdict],
    key: bytes,
) -> tuple[ResolveInputs, str | None]:
    """What ``resolve`` needs, read from the store; and why this run rebuilds (None: it carries on from the
    last register)."""
    latest = store.register_latest()
    kept = store.register_state(latest) if latest else None
    published = store.register_tables(latest, list(PUBLISHED)) if latest else None
    reason = "asked to" if rebuild else _why_rebuild(previous, fingerprint, kept is not None)
    if reason is None:
        assert previous is not None and kept is not None
        state = ResolutionState.from_tables(kept, previous["state"]["reference"])
        batch = all_latest_records(store, after_run=previous["inputs"]["ingest_run"])
    else:
        log.info("%s: rebuilding the register (%s)", run_id, reason)
        state = ResolutionState.empty()
        batch = all_latest_records(store)
    inputs = ResolveInputs(
        batch=batch,
        state=state,
        history=_history(kept, published),
        verdicts=verdicts,
        tokens=Tokeniser(key),
        run_id=run_id,
        engine=DuckDBEngine(),
        settings=settings,
        model_path=model_path,
        contact_masks=vault_masks(store.vault_masked()),
    )
    return inputs, reason


def _history(kept: dict[str, pa.Table] | None, published: dict[str, pa.Table] | None) -> History:
    """What the last register said: its tables, the ids it issued, the verdicts as first applied."""
    if not published:
        return History.empty()
    kept = kept or {}
    # without the marts' tier columns; a register from before the best contacts gets them null (computed then)
    register = in_todays_shape(published["register"], resolver_schema("register"))
    return History(
        issued=kept.get("issued", _issued_from(register)),
        register=register,
        links=published["links"],
        review=in_todays_shape(published["review"], output_schema("review")),
        constraints=kept.get("constraints", History.empty().constraints),
        warnings=published.get("warnings"),
    )


def in_todays_shape(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table an older version published, in today's schema: columns added since then are null (a register
    published before review items carried their explanation is continued, not refused)."""
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _issued_from(register: pa.Table) -> pa.Table:
    """A register kept without its id registry (older format): at least its own ids are taken."""
    ids = register["unit_id"]
    return pa.table(
        {"unit_id": ids, "issued_run": register["run_id"], "retired_run": pa.nulls(len(ids), pa.string())},
        schema=ISSUED_SCHEMA,
    )


def _warnings(
    resolution: Resolution, units: pa.Array | None, previous: pa.Table | None, run_id: str
) -> pa.Table:
    """Warnings of the new register: computed again for ``units`` (all when None), carried over for the
    rest; a warning raised again keeps when it was first raised."""
    tables, records = resolution.tables, resolution.state.records
    if units is None or previous is None:
        figures = Figures.from_links(tables["register"], tables["links"], records)
        return compute_warnings(figures, run_id, previous=previous)
    # only the touched units' records are read; what the rules must know about all figures comes apart
    periods = {
        family: [
            p for feed in family_feeds(family) for p in _linked_periods(records[feed], tables["links"], feed)
        ]
        for family in ("tax", "power")
    }
    facts = Facts.of(tables["register"], periods["tax"], periods["power"])
    scoped = [tables[name].filter(pc.is_in(tables[name]["unit_id"], units)) for name in ("register", "links")]
    figures = Figures.from_links(*scoped, records, facts=facts)
    fresh = compute_warnings(figures, run_id, previous=previous)
    current = tables["register"]["unit_id"]
    kept = previous.filter(
        pc.and_(pc.invert(pc.is_in(previous["unit_id"], units)), pc.is_in(previous["unit_id"], current))
    )
    raised_now = pa.array([run_id] * kept.num_rows, pa.string())
    kept = kept.set_column(kept.schema.get_field_index("run_id"), "run_id", raised_now)
    merged = pa.concat_tables([kept, fresh.cast(kept.schema)])  # every warning in force is raised by this run
    order = pc.sort_indices(
        pa.table(
            {
                "priority": merged["priority"],
                "division": pc.fill_null(merged["division_code"], ""),
                "township": pc.fill_null(merged["township"], ""),
                "warning_id": merged["warning_id"],
            }
        ),
        [
            ("priority", "ascending"),
            ("division", "ascending"),
            ("township", "ascending"),
            ("warning_id", "ascending"),
        ],
    )
    return merged.take(order)


def publish_pending(store: RunStore) -> Path | None:
    """Publish the newest written register (the last step of a pass), and drop the state of older runs."""
    with store.lock():
        pending = store.pending_registers()
        published = store.publish_register(pending[-1]) if pending else store.finish_publishing()
        store.prune_state()
        _point_bi_at_latest(store)
        return published


def _point_bi_at_latest(store: RunStore) -> None:
    """The stable paths BI tools use: ``<out>/marts`` and the views of ``<out>/analysis.duckdb``."""
    latest = store.register_latest()
    if latest is None or not (latest / MARTS_DIR).is_dir():
        return
    if not store.marts_link.is_symlink():
        store.marts_link.symlink_to(Path("register") / "latest" / MARTS_DIR, target_is_directory=True)
    names = sorted(p.name for p in (latest / MARTS_DIR).iterdir() if p.is_dir())
    # the link itself, not where it points now: the views follow each new run without being rewritten
    write_analysis_database(
        store.analysis_database, store.register_latest_link.absolute(), names, PARTITIONED
    )


def resolve_and_land(
    store: RunStore,
    settings: ResolveSettings | None = None,
    model_path: Path = MODEL_PATH,
    force: bool = False,
    rebuild: bool = False,
    *,
    key: bytes,
) -> Landed | None:
    """Resolve and publish a new register if its inputs changed (or ``force``/``rebuild``); ``key`` as for
    ``prepare_register``."""
    begun = time.monotonic()
    prepared = prepare_register(store, settings, model_path, force, rebuild, key=key)
    if prepared is None:
        return None
    path = publish_pending(store)
    assert path is not None
    return Landed(prepared.resolution, path, time.monotonic() - begun, prepared.meta)
