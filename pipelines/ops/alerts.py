"""Alerts to ops: what a run found that someone should look at, by e-mail (SMTP) and webhook (JSON POST).

Sources: data-quality failures of an ingest run, quarantine spikes and volume drops per feed against the
feed's own history, a pipeline that has not committed for too long, and a department whose month is overdue.
Every text passes through ``mask_personal`` before it leaves the process. ``send_alerts`` delivers through an
outbox per run (``alerts/<run_key>.jsonl``): queued first, marked sent per channel after each send, so a
rerun sends what is missing and nothing twice.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import smtplib
import statistics
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from pipelines.ops.delivery import WEBHOOK_ENV, failure_alert, mask_personal, post_json
from pipelines.store import RunStore, utc_now

SMTP_ENV = "UNITFUSION_ALERT_SMTP"  # smtp://user:password@host:port?from=a@x&to=b@y,c@z&starttls=1
SMTP_CONNECTION_ID = "unitfusion_smtp"
WEBHOOK_CONNECTION_ID = "unitfusion_webhook"
log = logging.getLogger(__name__)


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
    kind: str  # dq_warning, dq_blocked, quarantine_spike, volume_drop, run_late, feed_due, run_failed
    severity: str  # critical, error, warning
    run_id: str | None
    feed: str | None
    title: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", mask_personal(self.title))
        object.__setattr__(self, "details", _masked(self.details))

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


def alerts_for_ingest(store: RunStore, run_id: str, thresholds: Thresholds = Thresholds()) -> list[Alert]:
    """Data-quality failures, quarantine spikes and volume drops of a committed ingest run."""
    manifest, earlier = _split_history(store, run_id)
    earlier = earlier[-thresholds.history_runs :]
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
                "report": manifest["quality"].get("report"),
            },
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
                )
            )
    return found


def alert_for_blocked(error: Exception, run_id: str | None) -> Alert:
    """A blocking expectation stopped the run: which feeds and expectations (the error message names them)."""
    failures = getattr(error, "failures", [])
    feeds = sorted({f.feed for f in failures})
    return Alert(
        kind="dq_blocked",
        severity="critical",
        run_id=run_id,
        feed=",".join(feeds) or None,
        title=f"data quality blocked the run ({', '.join(feeds)}); nothing was committed",
        details={
            "error": str(error)[:4000],
            "expectations": [f"{f.feed}: {f.expectation_type} {f.column or ''}".strip() for f in failures],
        },
    )


def alert_for_failure(context: dict[str, Any]) -> Alert:
    """A failed Airflow task (blocking data quality gets its own, more telling alert)."""

    error = context.get("exception")
    if error is not None and type(error).__name__ == "BlockingQualityError":
        return alert_for_blocked(error, context.get("run_id"))
    payload = failure_alert(context)
    return Alert(
        kind="run_failed",
        severity="critical",
        run_id=payload["run_id"],
        feed=None,
        title=f"{payload['dag_id']}.{payload['task_id']} failed (try {payload['try_number']})",
        details=payload,
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
        )
    ]


_PERIOD_SQL = {  # how a feed's records say which month they are about
    "tax": "period",
    "utility": "period",
    "registration": "strftime(updated_at, '%Y-%m')",
    "waybill": "strftime(shipped_at, '%Y-%m')",
    "nucleic_contact": "strftime(sampled_at, '%Y-%m')",
}


def _delivered(store: RunStore, feed: str, period: str) -> int:
    import duckdb

    files = [str(f) for f in store.committed_files(feed)]
    if not files:
        return 0
    query = f"SELECT count(*) FROM read_parquet($files, union_by_name = true) WHERE {_PERIOD_SQL[feed]} = $p"
    return duckdb.connect().execute(query, {"files": files, "p": period}).fetchone()[0]


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


# -- delivery --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    login: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            sender=query.get("from", "unitfusion@localhost"),
            recipients=tuple(r for r in query.get("to", "").split(",") if r),
            login=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            starttls=query.get("starttls", "0") in ("1", "true", "yes"),
            ssl=parts.scheme == "smtps",
        )


@dataclass(frozen=True)
class AlertChannels:
    smtp: SmtpTarget | None = None
    webhook_url: str | None = None

    @classmethod
    def from_environment(cls) -> AlertChannels:
        """The environment first, then (inside an Airflow task) the connections ``unitfusion_smtp`` and
        ``unitfusion_webhook``."""
        smtp = SmtpTarget.from_url(os.environ[SMTP_ENV]) if os.environ.get(SMTP_ENV) else None
        webhook = os.environ.get(WEBHOOK_ENV) or None
        if smtp is None:
            smtp = _smtp_connection()
        if webhook is None:
            webhook = _webhook_connection()
        return cls(smtp=smtp, webhook_url=webhook)


def _connection(conn_id: str):  # type: ignore[no-untyped-def]
    if not (os.environ.get("AIRFLOW_CTX_DAG_ID") or os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")):
        return None  # not in Airflow: do not reach for its metadata
    try:
        from airflow.sdk import Connection

        return Connection.get(conn_id)
    except Exception:  # not configured
        return None


def _smtp_connection() -> SmtpTarget | None:
    conn = _connection(SMTP_CONNECTION_ID)
    if conn is None or not conn.host:
        return None
    extra = conn.extra_dejson or {}
    recipients = extra.get("to", [])
    return SmtpTarget(
        host=conn.host,
        port=int(conn.port or 25),
        sender=extra.get("from", "unitfusion@localhost"),
        recipients=tuple([recipients] if isinstance(recipients, str) else recipients),
        login=conn.login or None,
        password=conn.password or None,
        starttls=bool(extra.get("starttls", False)),
        ssl=bool(extra.get("ssl", False)),
    )


def _webhook_connection() -> str | None:
    conn = _connection(WEBHOOK_CONNECTION_ID)
    if conn is None:
        return None
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    if conn.host and conn.host.startswith(("http://", "https://")):
        return conn.host
    if conn.host:
        scheme = conn.schema or "https"
        return f"{scheme}://{conn.host}{f':{conn.port}' if conn.port else ''}"
    return None


def _post(url: str, run_key: str, alerts: list[Alert]) -> None:
    post_json(url, {"run": run_key, "alerts": [a.to_dict() for a in alerts]})


def _email(target: SmtpTarget, run_key: str, alerts: list[Alert]) -> None:
    message = EmailMessage()
    worst = min(alerts, key=lambda a: ("critical", "error", "warning").index(a.severity))
    message["Subject"] = f"[unitfusion] {len(alerts)} alert(s) for {run_key}: {worst.title}"[:250]
    message["From"], message["To"] = target.sender, ", ".join(target.recipients)
    message.set_content("\n".join(f"[{a.severity}] {a.kind} {a.feed or ''}: {a.title}" for a in alerts))
    rows = "".join(
        f"<tr><td>{html.escape(a.severity)}</td><td>{html.escape(a.kind)}</td>"
        f"<td>{html.escape(a.feed or '')}</td><td>{html.escape(a.title)}</td></tr>"
        for a in alerts
    )
    message.add_alternative(
        f"<table border=1><tr><th>severity</th><th>kind</th><th>feed</th><th>what</th></tr>{rows}</table>",
        subtype="html",
    )
    client = smtplib.SMTP_SSL if target.ssl else smtplib.SMTP
    with client(target.host, target.port, timeout=15) as smtp:
        if target.starttls:
            smtp.starttls()
        if target.login:
            smtp.login(target.login, target.password or "")
        smtp.send_message(message)


def _senders(channels: AlertChannels) -> dict[str, Any]:
    """The configured channels, each a function sending one batch of alerts of a run."""
    senders: dict[str, Any] = {}
    if channels.webhook_url:
        senders["webhook"] = lambda key, batch: _post(channels.webhook_url, key, batch)
    if channels.smtp:
        senders["email"] = lambda key, batch: _email(channels.smtp, key, batch)
    return senders


def _send(channel: str, send: Any, run_key: str, batch: list[Alert]) -> str:
    """Send one batch by one channel: ``sent``, or why it failed (reported and in the log, never hidden)."""
    try:
        send(run_key, batch)
        return "sent"
    except Exception as error:
        log.error("alert delivery by %s failed: %s", channel, error)
        return f"failed: {type(error).__name__}: {mask_personal(str(error))[:300]}"


def deliver(alerts: list[Alert], run_key: str, channels: AlertChannels) -> dict[str, str]:
    """Send one batch per channel, without a record (the failure notifier); a channel that fails is
    logged and reported, the others still go."""
    for alert in alerts:
        log.info("unitfusion alert %s: %s", run_key, json.dumps(alert.to_dict(), ensure_ascii=False))
    if not alerts:
        return {}
    senders = _senders(channels)
    outcome = {channel: _send(channel, send, run_key, alerts) for channel, send in senders.items()}
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
    _append_log(store, run_key, [{"queued_at": now, **a.to_dict(), "delivery": {}} for a in fresh])
    for alert in pending:
        log.info("unitfusion alert %s: %s", run_key, json.dumps(alert.to_dict(), ensure_ascii=False))
    outcome: dict[str, str] = {}
    if pending and not senders:
        outcome["log"] = "no channel configured; logged only"
        _append_log(
            store, run_key, [{"dedup_key": a.dedup_key, "at": now, "delivery": outcome} for a in pending]
        )
    for channel, send in senders.items():
        batch = [a for a in pending if channel not in done[a.dedup_key]]
        if not batch:
            continue
        outcome[channel] = _send(channel, send, run_key, batch)
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
