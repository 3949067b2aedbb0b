"""Alerts to ops: what a run found that someone should look at, by e-mail and webhook.

Sources: data-quality failures of an ingest run, quarantine spikes and volume drops per feed against the
feed's own history, a pipeline that has not committed for too long, a department whose month is overdue, and
(from ``pipelines.ops.notifier``) failed tasks and DAG runs. Every alert names the DAG run that sends it, the
feed and run it is about, what failed with its counts, and an absolute path or link to the report; every text
passes through ``mask_personal`` before it leaves the process.

``compose`` builds the one message a batch becomes (e-mail and webhook say the same); ``send_alerts``
delivers it through an outbox per run (``alerts/<run_key>.jsonl``): queued first, marked sent per channel
after each send, so a rerun sends what is missing and nothing twice. The channels are Airflow's SMTP and HTTP
providers inside Airflow (``pipelines.ops.notifier.airflow_channels``), the standard library outside
(``AlertChannels.from_environment``).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipelines.ops.delivery import (
    SMTP_ENV,
    WEBHOOK_ENV,
    WEBHOOK_SECRET_ENV,
    WEBHOOK_SHAPE_ENV,
    Message,
    SmtpTarget,
    check_shape,
    dingtalk_signature,
    mask_personal,
    post_json,
    send_email,
    signed_url,
)
from pipelines.store import RunStore, utc_now

log = logging.getLogger(__name__)
SEVERITIES = ("critical", "error", "warning")


@dataclass(frozen=True)
class Thresholds:
    """When a feed's figures are worth an alert."""

    quarantine_floor: float = 0.05  # a quarantine share below this never alerts
    quarantine_factor: float = 3.0  # ... above it, alert when this many times the feed's usual share
    volume_drop: float = 0.5  # alert when staged rows fall below this share of the feed's median
    history_runs: int = 6  # earlier runs that make a feed's history


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_personal(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


@dataclass(frozen=True)
class Alert:
    # dq_warning, dq_blocked, quarantine_spike, volume_drop, run_late, feed_due, run_failed, dag_failed
    kind: str
    severity: str  # critical, error, warning
    run_id: str | None  # the ingest run (run-000004) or the DAG run it is about
    feed: str | None
    title: str
    details: dict[str, Any] = field(default_factory=dict)  # the counts and what failed
    report: str | None = None  # absolute path or URL; without one, the message links the DAG run

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", mask_personal(self.title))
        object.__setattr__(self, "details", _masked(self.details))
        object.__setattr__(self, "report", _masked(self.report))

    @property
    def dedup_key(self) -> str:
        """The same finding about the same run and feed is one alert, however often it is computed."""
        text = json.dumps([self.kind, self.run_id, self.feed, self.title], ensure_ascii=False)
        return f"{self.kind}:{hashlib.sha1(text.encode()).hexdigest()[:12]}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dedup_key": self.dedup_key}


# -- sources ---------------------------------------------------------------------------------------------


def _split_history(store: RunStore, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifests = store.manifests()
    for position, manifest in enumerate(manifests):
        if manifest["run_id"] == run_id:
            return manifest, manifests[:position]
    raise FileNotFoundError(f"no committed ingest run {run_id} in {store.root}")


def _report_of(store: RunStore, manifest: dict[str, Any]) -> str:
    """The run's data-quality report (else its manifest, which lists the quarantine files), as an absolute
    path: whoever reads the alert is not in the store's folder."""
    relative = manifest.get("quality", {}).get("report")
    path = store.root / relative if relative else store.manifests_dir / f"{manifest['run_id']}.json"
    return str(path.resolve())


def alerts_for_ingest(store: RunStore, run_id: str, thresholds: Thresholds = Thresholds()) -> list[Alert]:
    """Data-quality failures, quarantine spikes and volume drops of a committed ingest run."""
    manifest, earlier = _split_history(store, run_id)
    earlier = earlier[-thresholds.history_runs :]
    report = _report_of(store, manifest)
    found = [
        Alert(
            kind="dq_warning",
            severity="warning",
            run_id=run_id,
            feed=failure.get("feed"),
            title=f"{failure.get('feed')}: {failure.get('expectation_type')} failed"
            + (f" on {failure['column']}" if failure.get("column") else ""),
            details={
                "message": failure.get("message"),
                "unexpected_count": failure.get("unexpected_count"),
                "unexpected_percent": failure.get("unexpected_percent"),
            },
            report=report,
        )
        for failure in manifest.get("quality", {}).get("failures", [])
    ]
    for feed, stats in sorted(manifest["feeds"].items()):
        read = stats["staged"] + stats["quarantined"]
        if not read:
            continue
        share = stats["quarantined"] / read
        usual = [
            m["feeds"][feed]["quarantined"] / (m["feeds"][feed]["staged"] + m["feeds"][feed]["quarantined"])
            for m in earlier
            if feed in m["feeds"] and m["feeds"][feed]["staged"] + m["feeds"][feed]["quarantined"]
        ]
        usual_share = statistics.median(usual) if usual else 0.0
        if share >= thresholds.quarantine_floor and share > thresholds.quarantine_factor * usual_share:
            found.append(
                Alert(
                    kind="quarantine_spike",
                    severity="error",
                    run_id=run_id,
                    feed=feed,
                    title=f"{feed}: {share:.1%} of messages quarantined (usually {usual_share:.1%})",
                    details={"quarantined": stats["quarantined"], "read": read, "usual_share": usual_share},
                    report=report,
                )
            )
        volumes = [m["feeds"][feed]["staged"] for m in earlier if m["feeds"].get(feed, {}).get("staged")]
        if volumes and stats["staged"] < thresholds.volume_drop * statistics.median(volumes):
            found.append(
                Alert(
                    kind="volume_drop",
                    severity="error",
                    run_id=run_id,
                    feed=feed,
                    title=f"{feed}: {stats['staged']} records staged, usually {statistics.median(volumes):g}",
                    details={"staged": stats["staged"], "median_before": statistics.median(volumes)},
                    report=report,
                )
            )
    return found


def _expectation(failure: Any) -> str:
    """One failed expectation with its counts, e.g. ``tax: expect_column_values_to_not_be_null on
    taxpayer_id: 12 unexpected (24.0%)``."""
    text = f"{failure.feed}: {failure.expectation_type}" + (f" on {failure.column}" if failure.column else "")
    if failure.unexpected_count is not None:
        text += f": {failure.unexpected_count} unexpected"
        if failure.unexpected_percent is not None:
            text += f" ({failure.unexpected_percent:.1f}%)"
    elif failure.observed_value is not None:
        text += f": observed {failure.observed_value}"
    return text


def alert_for_blocked(error: Exception, run_id: str | None, report: str | None = None) -> Alert:
    """A blocking expectation held a feed's batch back: which feeds and expectations, with their counts, and
    the data-quality report (the error's own, else ``report``)."""
    failures = getattr(error, "failures", [])
    feeds = sorted({f.feed for f in failures})
    batches = getattr(error, "batches", None) or {}
    reports = [b["report_path"] for b in batches.values() if isinstance(b, dict) and b.get("report_path")]
    landed = getattr(error, "landed", None)
    return Alert(
        kind="dq_blocked",
        severity="critical",
        run_id=getattr(error, "run_id", None) or run_id,
        feed=",".join(feeds) or None,
        title=f"data quality blocked {', '.join(feeds) or 'the run'}: "
        f"{len(failures)} blocking expectation(s) failed",
        details={
            "expectations": [_expectation(f) for f in failures],
            "batches": {
                feed: {k: v for k, v in batch.items() if isinstance(v, int) and not isinstance(v, bool)}
                for feed, batch in batches.items()
                if isinstance(batch, dict)
            },
            "landed": ", ".join(landed) if landed else None,
            "error": str(error)[:2000],
        },
        report=reports[0] if reports else report,
    )


def late_alerts(store: RunStore, max_age: timedelta, now: datetime | None = None) -> list[Alert]:
    """The pipeline has committed no ingest run for longer than ``max_age``."""
    now = now or datetime.now(UTC)
    latest = store.latest_manifest()
    committed = datetime.fromisoformat(latest["committed_at"]) if latest else None
    if committed and now - committed <= max_age:
        return []
    since = committed.isoformat() if committed else "never"
    return [
        Alert(
            kind="run_late",
            severity="error",
            run_id=latest["run_id"] if latest else None,
            feed=None,
            title=f"no ingest run committed for more than {max_age} (last: {since})",
            details={"last_committed_at": since, "max_age_hours": max_age.total_seconds() / 3600},
            report=_report_of(store, latest) if latest else None,
        )
    ]


def _delivered(store: RunStore, feed: str, period: str) -> int:
    """Staged records of ``feed`` about ``period`` (by the contract's rule, as the monthly packs count)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from pipelines.contracts import contract

    files = [str(f) for f in store.committed_files(feed)]
    if not files:
        return 0
    about = contract(feed)
    table = ds.dataset(files, format="parquet").to_table(columns=[about.period_field])
    return pc.sum(pc.equal(about.record_periods(table), period)).as_py() or 0


def feed_due_alerts(store: RunStore, period: str, feeds: list[str], due: date, today: date) -> list[Alert]:
    """Departments whose month ``period`` has not arrived by its due date (no staged record of that month)."""
    if today <= due:
        return []
    return [
        Alert(
            kind="feed_due",
            severity="error",
            run_id=None,
            feed=feed,
            title=f"{feed}: {period} not delivered (due {due.isoformat()})",
            details={"period": period, "due": due.isoformat(), "today": today.isoformat()},
        )
        for feed in sorted(feeds)
        if not _delivered(store, feed, period)
    ]


# -- one message per batch ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Who sends: a DAG run (with its link in the Airflow UI) or the CLI. Every message names it."""

    dag_id: str | None = None
    dag_run: str | None = None
    url: str | None = None

    @property
    def label(self) -> str:
        return f"DAG {self.dag_id}, run {self.dag_run}" if self.dag_id else "unitfusion CLI"


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return " ".join(str(value).split())[:600]  # one line; the JSON body and the ledger keep it whole


def _facts(alert: Alert, origin: Origin) -> list[tuple[str, str]]:
    """What a reader needs, in order: which DAG run, feed and run, what failed with its counts, the report."""
    facts = [("DAG", origin.dag_id or "none (unitfusion CLI)"), ("DAG run", origin.dag_run or "none")]
    if alert.feed:
        facts.append(("feed", alert.feed))
    if alert.run_id and alert.run_id != origin.dag_run:
        facts.append(("ingest run" if alert.run_id.startswith("run-") else "run", alert.run_id))
    facts += [(key, _value(v)) for key, v in alert.details.items() if v not in (None, "", [], {})]
    facts.append(("report", alert.report or origin.url or "none"))
    return facts


def compose(alerts: list[Alert], run_key: str, origin: Origin) -> Message:
    """The one message a batch of alerts becomes: subject, chat markdown, e-mail HTML (the same facts) and
    the plain JSON body."""
    worst = min(alerts, key=lambda a: SEVERITIES.index(a.severity))
    heading = f"unitfusion: {len(alerts)} alert(s), {origin.label}"
    markdown = [f"### {heading}"]
    page = [f"<h3>{html.escape(heading)}</h3>"]
    for alert in alerts:
        facts = _facts(alert, origin)
        head = f"[{alert.severity}] {alert.kind}"
        markdown += ["", f"**{head}**: {alert.title}"]
        markdown += [f"- {label}: {value}" for label, value in facts]
        page.append(f"<h4>{html.escape(head)}: {html.escape(alert.title)}</h4>")
        page.append(
            "<ul>"
            + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in facts)
            + "</ul>"
        )
    where = {"dag_id": origin.dag_id, "dag_run": origin.dag_run}
    data = {
        "run": run_key,
        **where,
        "alerts": [{**a.to_dict(), **where, "report": a.report or origin.url} for a in alerts],
    }
    return Message(
        title=mask_personal(
            f"[unitfusion] {len(alerts)} alert(s) for {run_key} ({origin.label}): {worst.title}"
        )[:250],
        markdown=mask_personal("\n".join(markdown)),
        html=mask_personal("\n".join(page)),
        data=_masked(data),
    )


# -- channels --------------------------------------------------------------------------------------------

Send = Callable[[Message], None]


@dataclass(frozen=True)
class AlertChannels:
    """Where alerts go and on whose behalf (``origin``).

    Two transports: ready-made ``senders`` by channel name (inside Airflow, the SMTP and HTTP providers'
    hooks on the standard connections: ``pipelines.ops.notifier.airflow_channels``), else the plain ones,
    ``smtp`` and ``webhook_url`` (outside Airflow, from the environment). The channel names, ``webhook`` and
    ``email``, are what the ledger records, whichever transport sent."""

    smtp: SmtpTarget | None = None
    webhook_url: str | None = None
    webhook_shape: str = "json"
    webhook_secret: str | None = None  # a DingTalk robot's signing secret
    origin: Origin = Origin()
    senders: Mapping[str, Send] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, origin: Origin = Origin()) -> AlertChannels:
        """The plain transports: ``UNITFUSION_ALERT_SMTP``, ``UNITFUSION_ALERT_WEBHOOK`` with its
        ``..._SHAPE`` and ``..._SECRET`` (how ``unitfusion run`` sends, Airflow installed or not)."""
        smtp = SmtpTarget.from_url(os.environ[SMTP_ENV]) if os.environ.get(SMTP_ENV) else None
        return cls(
            smtp=smtp,
            webhook_url=os.environ.get(WEBHOOK_ENV) or None,
            webhook_shape=check_shape(os.environ.get(WEBHOOK_SHAPE_ENV) or "json"),
            webhook_secret=os.environ.get(WEBHOOK_SECRET_ENV) or None,
            origin=origin,
        )


_email = send_email  # looked up at each send: the crash tests replace it to die between two channels


def _senders(channels: AlertChannels) -> dict[str, Send]:
    """The configured channels, webhook first, each a function sending one message."""
    if channels.senders:
        return {name: channels.senders[name] for name in ("webhook", "email") if name in channels.senders}
    senders: dict[str, Send] = {}
    if channels.webhook_url:
        url, shape, secret = channels.webhook_url, channels.webhook_shape, channels.webhook_secret

        def post(message: Message) -> None:
            signed = signed_url(url, dingtalk_signature(secret)) if secret and shape == "dingtalk" else url
            post_json(signed, message.webhook_body(shape))

        senders["webhook"] = post
    if channels.smtp:
        senders["email"] = lambda message: _email(channels.smtp, message)
    return senders


def _send(channel: str, send: Send, message: Message) -> str:
    """Send one message by one channel: ``sent``, or why it failed (reported and in the log, never hidden)."""
    try:
        send(message)
        return "sent"
    except Exception as error:
        log.error("alert delivery by %s failed: %s", channel, mask_personal(str(error))[:300])
        return f"failed: {type(error).__name__}: {mask_personal(str(error))[:300]}"


def deliver(alerts: list[Alert], run_key: str, channels: AlertChannels) -> dict[str, str]:
    """Send one message per channel, without a record (when no run store is known); a channel that fails is
    logged and reported, the others still go."""
    for alert in alerts:
        log.info("unitfusion alert %s: %s", run_key, json.dumps(alert.to_dict(), ensure_ascii=False))
    if not alerts:
        return {}
    message = compose(alerts, run_key, channels.origin)
    outcome = {channel: _send(channel, send, message) for channel, send in _senders(channels).items()}
    return outcome or {"log": "no channel configured; logged only"}


def _read_log(store: RunStore, run_key: str) -> list[dict[str, Any]]:
    path = store.alert_log(run_key)
    if not path.exists():
        return []
    # a line cut short by a crash (the last one) is skipped: what it recorded is done again
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: skipping a cut-short line", path)
    return entries


def _append_log(store: RunStore, run_key: str, entries: list[dict[str, Any]]) -> None:
    """Append and flush to disk before anything else happens: the log is what the next attempt trusts."""
    if not entries:
        return
    path = store.alert_log(run_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = path.exists() and not path.read_bytes().endswith(b"\n") and path.stat().st_size > 0
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n" * cut + "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
        handle.flush()
        os.fsync(handle.fileno())


def send_alerts(
    store: RunStore, run_key: str, alerts: list[Alert], channels: AlertChannels | None = None
) -> dict[str, Any]:
    """Deliver the alerts of ``run_key`` through its outbox, ``alerts/<run_key>.jsonl``.

    Alerts not in the outbox yet are queued there first. Then each channel sends, in one batch, the alerts
    it has not sent, and each successful send is recorded before the next channel goes: a crash never
    loses an alert, and a rerun sends by each channel only what that channel has not sent (an alert goes
    twice only if the process dies between a send and its record). With no channel configured, alerts are
    logged and count as delivered.
    """
    channels = channels or AlertChannels.from_environment()
    unique = {a.dedup_key: a for a in alerts}
    entries = _read_log(store, run_key)
    queued = {e["dedup_key"] for e in entries if "dedup_key" in e}
    done: dict[str, set[str]] = {key: set() for key in unique}
    for entry in entries:
        for channel, outcome in entry.get("delivery", {}).items():
            if entry.get("dedup_key") in done and (outcome == "sent" or channel == "log"):
                done[entry["dedup_key"]].add(channel)
    senders = _senders(channels)

    def complete(key: str) -> bool:
        return "log" in done[key] or (bool(done[key]) and set(senders) <= done[key])

    pending = [a for key, a in unique.items() if not complete(key)]
    now = utc_now()
    fresh = [a for a in pending if a.dedup_key not in queued]
    origin = {"dag_id": channels.origin.dag_id, "dag_run": channels.origin.dag_run}
    _append_log(store, run_key, [{"queued_at": now, **a.to_dict(), **origin, "delivery": {}} for a in fresh])
    for alert in pending:
        log.info("unitfusion alert %s: %s", run_key, json.dumps(alert.to_dict(), ensure_ascii=False))
    outcome: dict[str, str] = {}
    if pending and not senders:
        outcome["log"] = "no channel configured; logged only"
        _append_log(
            store, run_key, [{"dedup_key": a.dedup_key, "at": now, "delivery": outcome} for a in pending]
        )
        for alert in pending:  # logged is delivered: the run is complete now, not one pass later
            done[alert.dedup_key].add("log")
    for channel, send in senders.items():
        batch = [a for a in pending if channel not in done[a.dedup_key]]
        if not batch:
            continue
        outcome[channel] = _send(channel, send, compose(batch, run_key, channels.origin))
        record = {channel: outcome[channel]}
        _append_log(
            store, run_key, [{"dedup_key": a.dedup_key, "at": utc_now(), "delivery": record} for a in batch]
        )
        if outcome[channel] == "sent":
            for alert in batch:
                done[alert.dedup_key].add(channel)
    return {
        "new": len(pending),
        "already_sent": len(unique) - len(pending),
        "delivery": outcome,
        "complete": all(complete(key) for key in unique),
    }
