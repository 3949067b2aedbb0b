"""The ``unitfusion`` command: sample data, the embedded broker, loading feeds, and pipeline runs."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import threading
import traceback
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pipelines.config import DEFAULT_RUNNER, IngestSettings, default_topics
from pipelines.contacts.vault import VAULT_KEY_ENV, load_vault_key
from pipelines.contracts import contract, feed_names, load_contracts
from pipelines.generate import DIFFICULTIES
from pipelines.generate import generate as generate_feeds
from pipelines.generate.feeds import DEPARTMENT_VOCABULARIES
from pipelines.pii import HMAC_KEY_ENV, load_key

console = Console()
DEMO_MARKER = ".unitfusion-demo"


LOG_DIR_ENV = "UNITFUSION_LOG_DIR"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LIBRARIES = ("kafka", "apache_beam", "great_expectations")


class BootstrapServers(click.ParamType):
    """``HOST:PORT[,HOST:PORT...]``, checked before anything connects (kafka-python would take a missing port
    as 9092 and an invalid one as a ValueError half a minute later)."""

    name = "HOST:PORT[,HOST:PORT]"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        from pipelines.kafka.client import parse_bootstrap

        try:
            return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in parse_bootstrap(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


BOOTSTRAP = BootstrapServers()


def log_dir(out: Path | None) -> Path:
    """Where a command logs: ``<out>/logs`` of its run store, else $UNITFUSION_LOG_DIR, else
    ``$XDG_STATE_HOME/unitfusion/logs`` (``~/.local/state/unitfusion/logs``)."""
    if out is not None and (out.is_dir() or not out.exists()):
        return out / "logs"
    if os.environ.get(LOG_DIR_ENV):
        return Path(os.environ[LOG_DIR_ENV])
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "unitfusion" / "logs"


class _LogFile(logging.FileHandler):
    """A command's log file, made (with its folder) only when something is written to it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def _open(self):  # type: ignore[no-untyped-def]
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


class _OnTerminal(logging.Filter):
    """Without -v the terminal shows unitfusion's own warnings; the libraries' go to the log file only.
    kafka-python logs at ERROR the connection trouble it retries itself; what it cannot recover from reaches
    us as an exception, and is reported as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(LIBRARIES)


class _NotBeamApitools(logging.Filter):
    """Beam's GCP module warns on import that apitools is missing; BigQuery is not used: drop exactly that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and str(record.msg).startswith("apitools not found"))


def _one_line(error: click.UsageError) -> click.UsageError:
    """Click prints usage, a hint and the error on three lines; an operator needs the error."""
    if error.ctx is None:
        return error
    return click.UsageError(f"{error.format_message()} (see '{error.ctx.command_path} --help')")


class _Failed(click.ClickException):
    """A command failed: one line on the terminal, the traceback in the log file."""


def _failure(error: Exception, log_file: Path) -> _Failed:
    text = " ".join(str(error).split()) or type(error).__name__
    if not type(error).__module__.startswith("pipelines"):  # our errors say what they are; others need a name
        text = f"{type(error).__name__}: {text}"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as log:
            log.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} failed: {text}\n")
            traceback.print_exception(error, file=log)
    except OSError:
        return _Failed(f"{text} (could not write the log file {log_file})")
    return _Failed(f"{text} (details in {log_file})")


class _Command(click.Command):
    """Every command logs to a file (see ``log_dir``) and turns any failure into one line on stderr."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log_file = log_dir(ctx.params.get("out")) / f"unitfusion-{stamp}-{os.getpid()}.log"
        handler = _LogFile(log_file)
        logging.getLogger().addHandler(handler)
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            failed = _failure(error, log_file)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
        # Raised outside the handler: the failure's traceback (frames of the whole run) is not kept alive
        # until exit, where native extensions would report it as leaked objects on stderr.
        raise failed


class _Group(click.Group):
    """One place for how every command fails: usage errors exit 2 in one line, failures exit 1 in one line
    naming the log file that holds the traceback."""

    command_class = _Command
    group_class = type  # subgroups fail the same way

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _one_line(error) from None


# the run store of a command that reads one (it must exist already)
existing_store = click.option(
    "--out",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="The run store.",
)


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log progress of the pipeline's parts.")
def main(verbose: bool) -> None:
    """unitfusion: fuse departmental feeds into a deduplicated register of business units."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addFilter(_NotBeamApitools())
    for handler in [h for h in root.handlers if getattr(h, "unitfusion_terminal", False)]:
        root.removeHandler(handler)  # main() called again in one process (tests)
    terminal = logging.StreamHandler()
    terminal.unitfusion_terminal = True  # type: ignore[attr-defined]
    terminal.setFormatter(logging.Formatter(LOG_FORMAT))
    terminal.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        terminal.addFilter(_OnTerminal())
        for library in LIBRARIES:
            logging.getLogger(library).setLevel(logging.WARNING)
    root.addHandler(terminal)


@main.command()
@click.option("--units", default=2000, show_default=True, help="Number of true business units.")
@click.option("--seed", default=1, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option(
    "--vocabulary",
    type=click.Choice(sorted(DEPARTMENT_VOCABULARIES)),
    default="default",
    show_default=True,
    help="How departments spell their codes (variant: industry codes without the section letter, "
    "another power company's tariff names).",
)
@click.option(
    "--difficulty",
    type=click.Choice(sorted(DIFFICULTIES)),
    default="default",
    show_default=True,
    help="Proportions of the hard cases (hard: most test records without a work unit, senders giving "
    "the owner's name, power accounts in a landlord's name, more respellings and blanks).",
)
def generate(units: int, seed: int, out_dir: Path, vocabulary: str, difficulty: str) -> None:
    """Write sample feeds (one JSONL per feed) and their ground truth."""
    summary = generate_feeds(
        units=units, seed=seed, out_dir=out_dir, vocabulary=vocabulary, difficulty=difficulty
    )
    for feed, count in summary.counts.items():
        console.print(f"{feed:>16}: {count:>8} records")
    console.print(f"written to {out_dir}")


@main.command()
@click.option(
    "--port", default=9092, show_default=True, type=click.IntRange(0, 65535), help="0: any free port."
)
def broker(port: int) -> None:
    """Run the embedded Kafka-protocol broker on 127.0.0.1 in the foreground (Ctrl-C stops it)."""
    from pipelines.kafka import EmbeddedBroker

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(port=port) as running:
        console.print(f"broker ready on {running.bootstrap} (pid {running.pid}); in-memory, Ctrl-C stops it")
        stop.wait()
        console.print("stopping broker")


def _produce_file(
    bootstrap: str, topic: str, path: Path, extra: list[tuple[bytes | None, bytes]] = ()
) -> int:
    from pipelines.kafka import jsonl_messages, produce_messages

    with path.open("rb") as handle:
        total = sum(1 for line in handle if line.strip()) + len(extra)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{path.name} → {topic}", total=total)
        messages = [*jsonl_messages(path), *extra] if extra else jsonl_messages(path)
        return produce_messages(bootstrap, topic, messages, on_sent=lambda n: progress.advance(task, n))


@main.command()
@click.option("--bootstrap", type=BOOTSTRAP, required=True, help="HOST:PORT of the Kafka cluster.")
@click.option("--feed", type=click.Choice(list(feed_names())), required=True)
@click.option("--topic", help="Topic to write to (default: the feed's topic).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def produce(bootstrap: str, feed: str, topic: str | None, file: Path) -> None:
    """Load a JSONL file into a feed's topic (key = record_id)."""
    sent = _produce_file(bootstrap, topic or default_topics()[feed], file)
    console.print(f"sent {sent} messages")


def _ranges(offsets: list[dict]) -> str:
    return ", ".join(f"{o['topic']}[{o['partition']}] {o['start']}-{o['end']}" for o in offsets)


def _print_blocked(result, out: Path) -> None:  # type: ignore[no-untyped-def]
    """A blocked feed: what was held back, which block expectation failed, and how to decide about it."""
    for feed, batch in sorted(result.blocked.items()):
        held = f"{batch['planned']} messages held back ({_ranges(batch['offsets'])})"
        console.print(f"BLOCKED {feed}: {held}; read again next run", markup=False, soft_wrap=True)
        for failure in batch["failures"]:
            if failure["severity"] == "block":
                console.print(f"  - {failure['message']}", markup=False, soft_wrap=True)
        report = out / batch["report"] if batch["report"] else "-"
        console.print(f"  data-quality report: {report}", markup=False, soft_wrap=True)
    console.print(
        f"decide: unitfusion batches accept|set-aside --out {out} --feed FEED --reason TEXT --by NAME "
        "(docs/runbook.md)",
        markup=False,
        soft_wrap=True,
    )


def _print_ingest(result) -> None:  # type: ignore[no-untyped-def]
    if result.run_id is None or not result.committed:
        if not result.blocked:
            console.print("nothing new since the last committed run: no-op")
        return
    table = Table(title=f"ingest {result.run_id} ({result.seconds:.1f} s)")
    for column in ("feed", "read", "staged", "quarantined"):
        table.add_column(column, justify="left" if column == "feed" else "right")
    for feed, stats in sorted(result.feeds.items()):
        table.add_row(feed, str(stats.read), str(stats.staged), str(stats.quarantined))
    console.print(table)
    if result.quarantine_by_reason:
        console.print(
            "quarantined by reason: "
            + ", ".join(f"{reason} {count}" for reason, count in result.quarantine_by_reason.items())
        )
    console.print(f"data-quality failures (warn): {len(result.quality_failures)}")
    for failure in result.quality_failures:
        console.print(f"  - {failure['message']}", markup=False)  # "[warn]" is not markup
    if result.quality_report:
        console.print(f"data-quality report: {result.quality_report}")
    sealed = result.contacts
    if sealed.get("key_id"):
        console.print(f"contact vault: {sealed['sealed']} rows sealed under key {sealed['key_id']}")
    elif sealed:
        console.print(f"contact vault: {sealed['note']} (set {VAULT_KEY_ENV} to seal persons' contacts)")
    for feed, decision in sorted(result.decisions.items()):
        console.print(
            f"{feed}: the batch blocked in {decision['blocked_in']} was "
            f"{'accepted' if decision['action'] == 'accept' else 'set aside'} "
            f"by {decision['by']} ({decision['reason']})",
            markup=False,
            soft_wrap=True,
        )


def _print_register(landed) -> None:  # type: ignore[no-untyped-def]
    if landed is None:
        console.print("register: inputs unchanged, nothing to resolve")
        return
    tables = landed.result.tables
    register = tables["register"].to_pandas()
    links = tables["links"].to_pandas()
    console.print(
        f"register {landed.result.run_id} ({landed.meta['mode']}, {landed.seconds:.1f} s, "
        f"model {landed.meta['model_version']}): "
        f"{len(register)} units, {len(links)} links, {tables['review'].num_rows} review items, "
        f"{tables['lineage'].num_rows} lineage events"
    )
    stats = landed.meta["stats"]
    console.print(
        f"records changed {stats['records_changed']} of {stats['records_in']} read; "
        f"entities standardised again "
        f"{stats['entities_rescored']}, reclustered {stats['entities_reclustered']}; units touched "
        f"{stats['units_touched']}, rows recomputed {stats['rows_recomputed']}"
    )
    console.print(
        "links by method: " + ", ".join(f"{k} {v}" for k, v in links["matched_by"].value_counts().items())
    )
    flags = ("unregistered", "multi_licence", "multi_meter", "ecommerce_candidate", "zombie_candidate")
    console.print("flags: " + ", ".join(f"{flag} {int(register[flag].sum())}" for flag in flags))
    if "warnings" in tables:
        by_rule = tables["warnings"].to_pandas()["rule"].value_counts()
        console.print(
            f"warnings: {tables['warnings'].num_rows} ("
            + ", ".join(f"{rule} {count}" for rule, count in by_rule.items())
            + ")"
        )
    console.print(f"register: {landed.path.parent.parent / 'latest'}")
    marts = landed.meta.get("marts") or {}
    if marts:
        tiers = register["tier"].value_counts().sort_index() if "tier" in register else {}
        console.print(
            f"marts ({landed.meta['timings_s'].get('marts', 0):.1f} s): "
            + ", ".join(f"{name} {rows}" for name, rows in marts.items())
            + "; tiers "
            + ", ".join(f"{tier} {count}" for tier, count in tiers.items())
        )
        root = landed.path.parents[2]  # <out>/register/runs/<run>
        console.print(f"BI: {root / 'analysis.duckdb'} (views), {root / 'marts'}/<table>/")


def _operate(store, landed, ingest_run: str | None) -> None:  # type: ignore[no-untyped-def]
    """After a pass, as the DAG does: what any run still lacks, finished once (work queues and run report of
    every published register run, alerts to ops about every committed ingest run; ``ops.outputs``)."""
    from pipelines.ops.outputs import complete_outputs

    completed = complete_outputs(store)
    for run, done in completed.done["work_queues"].items():
        console.print(f"work queues: {done['files']} files in {store.queues_dir(run)}")
    for done in completed.done["report"].values():
        console.print(f"run report: {store.root / done['report']}")
    for run, done in completed.done["alerts"].items():
        console.print(f"alerts to ops about {run}: {done['new']}; delivery: {done['delivery'] or 'none'}")
    for (_, run), left in completed.unfinished.items():
        console.print(f"alerts to ops about {run} not all sent, the next run retries: {left['delivery']}")


def _run_pass(bootstrap: str, out: Path, runner: str, key: bytes, vault_key: bytes | None = None) -> None:
    """Ingest, resolve and land, then finish the outputs; ``key`` is the tokenisation key the command
    resolved, ``vault_key`` the contact vault's (None: contacts are tokenised only)."""
    from pipelines.kafka.client import check_bootstrap

    check_bootstrap(bootstrap)  # before the heavy imports: an unreachable broker fails in seconds
    from pipelines.ingest.job import run_ingest
    from pipelines.landing import resolve_and_land
    from pipelines.quality import stop_shared_worker
    from pipelines.store import RunStore

    result = run_ingest(IngestSettings(bootstrap=bootstrap, out=out, runner=runner), key, vault_key)
    stop_shared_worker()  # the validation process holds Great Expectations: not needed to resolve
    _print_ingest(result)
    if result.blocked:
        _print_blocked(result, out)
    if result.committed:
        console.print(f"staging: {out.resolve()} (latest run in {out / 'LATEST'})")
    store = RunStore(out)
    landed = resolve_and_land(store, key=key)
    _print_register(landed)
    _operate(store, landed, result.run_id if result.committed else None)
    result.raise_if_blocked()  # the other feeds landed and were resolved; the pass still fails (exit 1)


@main.command()
@click.option("--bootstrap", type=BOOTSTRAP, required=True, help="HOST:PORT of the Kafka cluster.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Output directory (the run store).",
)
@click.option("--runner", default=DEFAULT_RUNNER, show_default=True, help="Beam runner.")
def run(bootstrap: str, out: Path, runner: str) -> None:
    """Run one pass over what the topics hold since the last run recorded in OUT. With UNITFUSION_VAULT_KEY
    set, persons' contacts are also sealed into the contact vault."""
    _run_pass(bootstrap, out, runner, load_key(os.environ), load_vault_key(os.environ))


@main.command()
@existing_store
def rebuild(out: Path) -> None:
    """Resolve everything again from all staged records (unit ids carry over), then write the township work
    queues and the run report. Passes rebuild by themselves when the model or the resolver's settings
    change."""
    from pipelines.landing import resolve_and_land
    from pipelines.store import RunStore

    key = load_key(os.environ)
    store = RunStore(out)
    landed = resolve_and_land(store, rebuild=True, key=key)
    _print_register(landed)
    _operate(store, landed, None)


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="A run store with staging.",
)
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Where to write the model JSON.")
@click.option("--max-pairs", default=5e6, show_default=True, help="Random pairs for u estimation.")
@click.option(
    "--verdicts/--no-verdicts",
    default=True,
    show_default=True,
    help="Estimate m from the township verdicts in force too, as labelled pairs placed by the latest "
    "register (when they give enough matches); --no-verdicts: EM only.",
)
def train(out: Path, model: Path | None, max_pairs: float, verdicts: bool) -> None:
    """Estimate the linkage model from a run store's staging: u by random sampling, m by EM, and m from the
    verdicts' labelled matches (Splink takes the median of the estimates)."""
    from pipelines.pii import Tokeniser
    from pipelines.resolve import DuckDBEngine, entity_table
    from pipelines.resolve.labels import label_counts
    from pipelines.resolve.model import MIN_LABELLED_MATCHES, MODEL_PATH, blocking_pair_counts, model_version
    from pipelines.resolve.model import train as train_model
    from pipelines.staging import all_latest_records
    from pipelines.store import RunStore

    tokens = Tokeniser(load_key(os.environ))
    engine = DuckDBEngine()
    store = RunStore(out)
    entities = entity_table(engine, all_latest_records(store), tokens)
    console.print(f"{entities.num_rows} entities; comparisons per blocking rule:")
    for rule, count in blocking_pair_counts(engine, entities).items():
        console.print(f"  {count:>10}  {rule}")
    labels = _training_labels(store, engine) if verdicts else None
    if labels is not None:
        counts = label_counts(labels)
        enough = counts["matches"] >= MIN_LABELLED_MATCHES
        how = "m from them too" if enough else f"fewer than {MIN_LABELLED_MATCHES} matches: m by EM only"
        console.print(
            f"verdicts: {counts['pairs']} labelled pairs, {counts['matches']} of them matches; {how}"
        )
    path = train_model(engine, entities, model or MODEL_PATH, max_pairs=max_pairs, labels=labels)
    console.print(f"model written to {path} ({model_version(path)})")


def _training_labels(store, engine):  # type: ignore[no-untyped-def]
    """The verdicts in force as labelled entity pairs, placed by the latest register's state; None (said
    why) when there are no verdicts or no register state to place them with."""
    from pipelines.resolve.labels import labels_from_kept_state
    from pipelines.townships.verdict_files import load_verdicts

    in_force = load_verdicts(store.verdicts_dir).in_force
    latest = store.register_latest()
    kept = store.register_state(latest) if latest else None
    if not in_force or kept is None:
        console.print("verdicts: " + ("none in force" if not in_force else "no register state to place them"))
        return None
    return labels_from_kept_state(engine, in_force, kept)


@main.group()
def batches() -> None:
    """Batches held back by a failed block expectation: list them, accept one or set it aside
    (docs/runbook.md). A decision applies to exactly the offsets that blocked, at the next run."""


_STORE = click.option(
    "--out",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="The run store.",
)


@batches.command("list")
@_STORE
def batches_list(out: Path) -> None:
    """Blocked batches, decisions waiting for the next run, and the decisions runs applied."""
    from pipelines.ingest import batches as held
    from pipelines.store import RunStore

    store = RunStore(out)
    blocked, pending = held.blocked_batches(store), held.pending_decisions(store)
    if not blocked:
        console.print("no blocked batch")
    for feed, batch in sorted(blocked.items()):
        console.print(
            f"BLOCKED {feed} since {batch['run_id']} ({batch['blocked_at']}): {batch['planned']} messages, "
            f"{batch['staged']} rows staged, {batch['quarantined']} quarantined; "
            f"offsets {_ranges(batch['offsets'])}",
            markup=False,
            soft_wrap=True,
        )
        for failure in batch["failures"]:
            if failure["severity"] == "block":
                console.print(f"  - {failure['message']}", markup=False, soft_wrap=True)
        report = out / batch["report"] if batch["report"] else "-"
        console.print(f"  data-quality report: {report}", markup=False, soft_wrap=True)
        if feed in pending:
            decision = pending[feed]
            console.print(
                f"  decided: {decision['action']} by {decision['by']} at {decision['decided_at']} "
                f"({decision['reason']}); the next run applies it",
                markup=False,
                soft_wrap=True,
            )
    for decision in held.decisions_taken(store)[:10]:
        console.print(
            f"applied in {decision['applied_in']}: {decision['feed']} {decision['action']} "
            f"by {decision['by']} "
            f"at {decision['decided_at']} ({decision['reason']}), batch blocked in {decision['blocked_in']}",
            markup=False,
            soft_wrap=True,
        )


def _decide(out: Path, feed: str, action: str, reason: str, by: str | None) -> None:
    from pipelines.ingest.batches import BatchDecisionError, decide
    from pipelines.store import RunStore

    try:
        decision = decide(RunStore(out), feed, action, reason, by)
    except BatchDecisionError as error:
        raise click.ClickException(str(error)) from None
    console.print(
        f"{feed}: the batch blocked in {decision['blocked_in']} ({_ranges(decision['offsets'])}) will be "
        f"{'accepted' if action == 'accept' else 'set aside'} by the next run (decided by {decision['by']})",
        markup=False,
        soft_wrap=True,
    )


_DECISION = [
    click.option("--feed", type=click.Choice(list(feed_names())), required=True),
    click.option("--reason", required=True, help="Why (kept in the manifest and the run report)."),
    click.option("--by", help="Who decides (default: your user name)."),
]


def _decision_options(command):  # type: ignore[no-untyped-def]
    for option in reversed(_DECISION):
        command = option(command)
    return _STORE(command)


@batches.command("accept")
@_decision_options
def batches_accept(out: Path, feed: str, reason: str, by: str | None) -> None:
    """Let the feed's blocked batch land as it is, at the next run."""
    _decide(out, feed, "accept", reason, by)


@batches.command("set-aside")
@_decision_options
def batches_set_aside(out: Path, feed: str, reason: str, by: str | None) -> None:
    """Quarantine the feed's blocked batch (reason set_aside) and move its offsets on, at the next run."""
    _decide(out, feed, "set_aside", reason, by)


@main.group()
def contacts() -> None:
    """The contact vault: reveal sealed phones and ID numbers, or export a township's call list, for a named
    person with a purpose within the scopes file (schemas/contacts/scopes.toml); every act is audited in
    <out>/contacts/audit.jsonl. Needs UNITFUSION_VAULT_KEY."""


_SCOPES = click.option(
    "--scopes",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The scopes file (default: schemas/contacts/scopes.toml).",
)
_REQUESTER = [
    click.option("--who", required=True, help="The person asking (a name in the scopes file)."),
    click.option("--purpose", required=True, help="Why (kept in the audit log)."),
]


def _requester(command):  # type: ignore[no-untyped-def]
    for option in reversed([_STORE, *_REQUESTER, _SCOPES]):
        command = option(command)
    return command


def _vault_and_scopes(scopes: Path | None):  # type: ignore[no-untyped-def]
    """The vault key (required to reveal) and the scopes file, resolved here and passed down."""
    from pipelines import resources
    from pipelines.contacts.reveal import load_scopes
    from pipelines.contacts.vault import Vault

    key = load_vault_key(os.environ)
    if key is None:
        raise click.ClickException(
            f"{VAULT_KEY_ENV} is not set: nothing can be revealed without the vault key"
        )
    return Vault(key), load_scopes(scopes or resources.CONTACT_SCOPES)


@contacts.command("reveal")
@_requester
@click.option("--token", "tokens", multiple=True, required=True, help="A token t1_… to reveal (repeatable).")
def contacts_reveal(out: Path, who: str, purpose: str, scopes: Path | None, tokens: tuple[str, ...]) -> None:
    """Print the clear values of tokens (token, kind, masked, value), tab-separated, to stdout only."""
    from pipelines.contacts.reveal import ContactsError, Request, reveal
    from pipelines.store import RunStore

    vault, grants = _vault_and_scopes(scopes)
    try:
        found = reveal(RunStore(out), vault, grants, Request(who, purpose), list(tokens))
    except ContactsError as error:
        raise click.ClickException(str(error)) from None
    for row in found:
        click.echo(
            "\t".join([row["token"], row["kind"], row["masked"], row["value"] or "(not in the vault)"])
        )


@contacts.command("export")
@_requester
@click.option("--township", required=True, help="Township name, division code (prefix) or DIVISION/TOWNSHIP.")
@click.option(
    "--to", "to", type=click.Path(path_type=Path, dir_okay=False), help="CSV file (default: stdout)."
)
def contacts_export(
    out: Path, who: str, purpose: str, scopes: Path | None, township: str, to: Path | None
) -> None:
    """A township's call list from the latest register: unit id, name, masked and clear phone (CSV)."""
    import io

    import pyarrow.csv as pacsv

    from pipelines.contacts.reveal import ContactsError, Request, export
    from pipelines.store import RunStore

    vault, grants = _vault_and_scopes(scopes)
    try:
        table = export(RunStore(out), vault, grants, Request(who, purpose), township, str(to or "stdout"))
    except ContactsError as error:
        raise click.ClickException(str(error)) from None
    if to is None:
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        click.echo(buffer.getvalue().decode("utf-8"), nl=False)
        return
    fd = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a call list is for its requester only
    with os.fdopen(fd, "wb") as handle:
        pacsv.write_csv(table, handle)
    with_phone = table["phone"].null_count
    console.print(f"{table.num_rows} units, {table.num_rows - with_phone} with a phone, written to {to}")


@contacts.command("verify-audit")
@_STORE
def contacts_verify_audit(out: Path) -> None:
    """Check the audit log's hash chain; exit 1 naming the first line that breaks it."""
    from pipelines.contacts import audit
    from pipelines.store import RunStore

    path = RunStore(out).audit_log
    broken = audit.verify_file(path)
    if broken is not None:
        number, what = broken
        raise click.ClickException(f"{path}: line {number} breaks the chain: {what}")
    lines = len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0
    console.print(f"{path}: {lines} lines, the chain holds")


@main.group()
def verdicts() -> None:
    """Township verdicts (schemas/verdict.json)."""


@verdicts.command("add")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="The run store.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verdicts_add(out: Path, file: Path) -> None:
    """Check a verdict file and keep it in the run store; the next run applies it, and every run after."""
    from pipelines.store import RunStore
    from pipelines.townships.verdict_files import add_verdict_file
    from pipelines.verdicts import VerdictError

    store = RunStore(out)
    if not store.manifests_dir.is_dir():  # a typo would keep verdicts where no run reads them
        raise click.BadParameter(
            f"{out} is not a run store (no manifests/ folder); give the --out of `unitfusion run`",
            param_hint="'--out'",
        )
    try:
        # checked against the latest published register: a verdict its codes would override is refused
        kept = add_verdict_file(file, store.verdicts_dir, register=store.register_latest())
    except VerdictError as error:
        raise click.ClickException(str(error)) from None
    if kept.new:
        console.print(
            f"{kept.count} verdicts from {file.name} kept; they apply from the next run", markup=False
        )
    else:
        console.print(f"{file.name} was kept before (as {kept.path.name}); nothing to add", markup=False)


@main.command()
@existing_store
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser.")
@click.argument("run", required=False)
def report(out: Path, run: str | None, open_page: bool) -> None:
    """Write the HTML report of register run RUN (default: the latest published one)."""
    import webbrowser

    from pipelines.ops.report import write_report
    from pipelines.store import RunStore

    try:
        path = write_report(RunStore(out), run)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"report: {path}")  # one line, whatever the terminal width
    if open_page:
        webbrowser.open(path.resolve().as_uri())


@main.command()
@existing_store
@click.option("--run", "run", help="Register run (default: the latest published one).")
@click.argument("unit_id")
def unit(out: Path, run: str | None, unit_id: str) -> None:
    """Print a summary of unit UNIT_ID and write its profile (一户一档) as one offline HTML page."""
    from pipelines.marts.pages import UnknownUnitError, write_profile
    from pipelines.store import RunStore
    from pipelines.townships.verdict_files import load_verdicts

    store = RunStore(out)
    try:
        path, profile = write_profile(store, unit_id, run, load_verdicts(store.verdicts_dir).in_force)
    except (FileNotFoundError, UnknownUnitError) as error:
        raise click.ClickException(str(error)) from None
    records = "，".join(f"{department} {count}" for department, count in profile["record_counts"])
    warnings = "，".join(f"{row[1]} {row[2]}" for row in profile["warnings"].rows)
    click.echo(f"{unit_id} {profile['name']}（名录批次 {profile['register_run']}）")
    click.echo(f"活跃度等级: {profile['tier']}")
    click.echo(f"关联记录: {records or '无'}")
    click.echo(f"当前预警: {len(profile['warnings'].rows)}{'（' + warnings + '）' if warnings else ''}")
    click.echo(f"profile: {path}")


def _demo_key(out: Path) -> bytes:
    """The configured tokenisation key, else the demo's own (made once, kept beside its output): read here and
    passed down, never exported to the environment."""
    if os.environ.get(HMAC_KEY_ENV):
        return load_key(os.environ)
    key_file = out / ".demo_hmac_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return load_key({HMAC_KEY_ENV: key_file.read_text().strip()})


def _demo_vault_key(out: Path) -> bytes | None:
    """The configured vault key, else the demo's own (beside its output, like its tokenisation key), so the
    demo seals contacts: ``UNITFUSION_VAULT_KEY=$(cat OUT/.demo_vault_key) unitfusion contacts …``."""
    if os.environ.get(VAULT_KEY_ENV):
        return load_vault_key(os.environ)
    key_file = out / ".demo_vault_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return load_vault_key({VAULT_KEY_ENV: key_file.read_text().strip()})


def _fresh_demo_dir(out: Path) -> None:
    """The embedded broker forgets everything when it stops, so each demo starts from an empty store."""
    if out.exists() and any(out.iterdir()):
        if not (out / DEMO_MARKER).exists():
            raise click.ClickException(f"{out} is not empty and not a demo directory; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("created by `unitfusion demo`; removed by the next demo run\n")


@main.command()
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), default=Path("out/demo"), show_default=True
)
@click.option("--units", default=2000, show_default=True, help="Business units in the sample feeds.")
@click.option("--seed", default=7, show_default=True)
def demo(out: Path, units: int, seed: int) -> None:
    """Start the embedded broker, load sample feeds (with some malformed messages), and run a full pass."""
    from pipelines.generate import generate as generate_feeds
    from pipelines.kafka import EmbeddedBroker
    from pipelines.malformed import malformed_messages

    _fresh_demo_dir(out)
    key = _demo_key(out)
    sample_dir = out / "sample"
    console.print(f"generating {units} units (seed {seed}) into {sample_dir}")
    generate_feeds(units=units, seed=seed, out_dir=sample_dir)
    with EmbeddedBroker() as running:
        console.print(f"embedded broker on {running.bootstrap}")
        topics = default_topics()
        for feed in load_contracts():
            bad = [(key, value) for key, value, _ in malformed_messages(contract(feed), tag="demo")]
            _produce_file(running.bootstrap, topics[feed], sample_dir / f"{feed}.jsonl", bad)
        _run_pass(running.bootstrap, out, DEFAULT_RUNNER, key, _demo_vault_key(out))


if __name__ == "__main__":
    main()
