"""Alerts inside Airflow: channels as Airflow connections in the standard forms, sent by the SMTP and HTTP
providers, and the failure notifier of every task and DAG run (a run stopped by its timeout too).

- ``unitfusion_smtp`` (conn type ``smtp``): host, port, login, password and the provider's own extras
  (``from_email``, ``disable_ssl``, ``disable_tls``, ``timeout``...), sent by ``SmtpHook``; recipients in
  the extra ``to``, else the Variable ``unitfusion_alert_to`` (the UI's SMTP form hides the extra).
- ``unitfusion_webhook`` (conn type ``http``): the webhook URL as Host, sent by ``HttpHook``; the extra
  ``shape`` (``json``, ``wecom``, ``dingtalk``) picks the body (``delivery.Message.webhook_body``); for a
  DingTalk robot secured by signing, its secret as Password (no Login: no basic auth).

The message is ``alerts.compose``'s, and failures go into the same ledger as the pipeline's alerts,
``alerts/<dag>.<run>.jsonl``. Imported at DAG parse time: only ``airflow.sdk`` and light project modules at
the top; the providers load when an alert is sent.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from pipelines.ops.alerts import (
    Alert,
    AlertChannels,
    Origin,
    Send,
    alert_for_blocked,
    deliver,
    send_alerts,
)
from pipelines.ops.delivery import Message, check_reply, dingtalk_signature, mask_personal
from pipelines.ops.settings import _store, run_key

SMTP_CONNECTION_ID = "unitfusion_smtp"
WEBHOOK_CONNECTION_ID = "unitfusion_webhook"
RECIPIENTS_VARIABLE = "unitfusion_alert_to"
WEBHOOK_TIMEOUT_S = 15  # unless the connection's extra sets ``timeout``: a callback must not hang
log = logging.getLogger(__name__)


# -- channels through the providers ------------------------------------------------------------------------


def _connection(conn_id: str):  # type: ignore[no-untyped-def]
    """The connection, or None when it is not defined (that channel is off)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def _recipients(extra: dict[str, Any]) -> list[str]:
    from airflow.sdk import Variable

    to = extra.get("to") or Variable.get(RECIPIENTS_VARIABLE, default=None) or []
    if isinstance(to, str):
        to = [address for address in re.split(r"[,;\s]+", to) if address]
    if not to:
        raise ValueError(
            f"no recipients: set the extra 'to' of the connection {SMTP_CONNECTION_ID} "
            f"or the Variable {RECIPIENTS_VARIABLE}"
        )
    return list(to)


def _send_email(message: Message) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=SMTP_CONNECTION_ID) as hook:
        recipients = _recipients(hook.conn.extra_dejson)
        hook.send_email_smtp(to=recipients, subject=message.title, html_content=message.html)


def _post_webhook(
    message: Message, host: str | None, shape: str, secret: str | None, extra_options: dict[str, Any]
) -> None:
    """POST the message in ``shape`` (a wrong shape or a missing host fail here: recorded in the ledger)."""
    from airflow.providers.http.hooks.http import HttpHook

    if not host:
        raise ValueError(
            f"the connection {WEBHOOK_CONNECTION_ID} has no host: put the webhook URL in Host (conn type "
            'http; the message shape in the extra, e.g. {"shape": "wecom"})'
        )
    body = message.webhook_body(shape)
    signature = dingtalk_signature(secret) if secret and shape == "dingtalk" else None
    response = HttpHook(method="POST", http_conn_id=WEBHOOK_CONNECTION_ID).run(
        json=body, params=signature, extra_options=extra_options
    )
    check_reply(response.text)


def airflow_channels(origin: Origin) -> AlertChannels:
    """The channels defined as Airflow connections, each sent by its provider's hook; none defined: alerts
    are logged (and recorded) only."""
    senders: dict[str, Send] = {}
    webhook = _connection(WEBHOOK_CONNECTION_ID)
    if webhook is not None:
        extra = webhook.extra_dejson or {}
        options = {} if "timeout" in extra else {"timeout": WEBHOOK_TIMEOUT_S}
        shape = str(extra.get("shape", "json"))
        secret = None if webhook.login else webhook.password
        senders["webhook"] = partial(
            _post_webhook, host=webhook.host, shape=shape, secret=secret, extra_options=options
        )
    if _connection(SMTP_CONNECTION_ID) is not None:
        senders["email"] = _send_email
    return AlertChannels(origin=origin, senders=senders)


# -- failures of tasks and DAG runs ------------------------------------------------------------------------


def run_url(dag_id: str | None, run_id: str | None) -> str | None:
    """The DAG run's page in the Airflow UI (``[api] base_url``)."""
    if not (dag_id and run_id):
        return None
    from airflow.sdk import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def origin_of(context: dict[str, Any]) -> Origin:
    """The DAG run an Airflow context is about (a task's, a DAG callback's)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag_id = (
        getattr(context.get("dag"), "dag_id", None)
        or getattr(ti, "dag_id", None)
        or getattr(dag_run, "dag_id", None)
    )
    run_id = context.get("run_id") or getattr(dag_run, "run_id", None)
    return Origin(dag_id=dag_id, dag_run=run_id, url=run_url(dag_id, run_id))


def _feeds(context: dict[str, Any]) -> str | None:
    feeds = (context.get("params") or {}).get("feeds")
    return ",".join(feeds) if isinstance(feeds, list) and feeds else None


def _store_of(context: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The run store (param, Variable or environment ``out``), or None: the alert still goes, unrecorded."""

    try:
        return _store(context.get("params") or {})
    except ValueError:
        return None


def _blocked_report(store) -> str | None:  # type: ignore[no-untyped-def]
    """The data-quality report of the run a blocking expectation stopped (not committed: the next number)."""
    if store is None:
        return None
    path = store.quality_dir(store.next_run_id()) / "report.html"
    return str(path.resolve()) if path.is_file() else None


def task_failed(context: dict[str, Any], store=None) -> Alert:  # type: ignore[no-untyped-def]
    """A task failed after its retries (blocking data quality gets its own, more telling alert)."""
    ti = context.get("ti") or context.get("task_instance")
    origin = origin_of(context)
    error = context.get("exception")
    if error is not None and type(error).__name__ == "BlockingQualityError":
        return alert_for_blocked(error, origin.dag_run, _blocked_report(store))
    tries, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    return Alert(
        kind="run_failed",
        severity="critical",
        run_id=origin.dag_run,
        feed=_feeds(context),
        title=f"{origin.dag_id}.{getattr(ti, 'task_id', None)} failed (try {tries})",
        details={
            "task": getattr(ti, "task_id", None),
            "tries": f"{tries} of {max_tries + 1}" if tries and max_tries is not None else tries,
            "error_type": type(error).__name__ if error else None,
            "error": mask_personal(str(error))[:2000] if error else None,
        },
        report=getattr(ti, "log_url", None),
    )


def dag_failed(context: dict[str, Any]) -> Alert:
    """A DAG run failed: ``reason`` is ``timed_out`` when ``dagrun_timeout`` stopped it (the only alert such
    a run gets: its unfinished tasks are skipped, no task fails), else ``task_failure``."""
    origin = origin_of(context)
    reason = str(context.get("reason") or "failed")
    timeout = getattr(context.get("dag"), "dagrun_timeout", None)
    ti = context.get("ti") or context.get("task_instance")
    started = getattr(context.get("dag_run"), "start_date", None)
    if reason == "timed_out":
        title = f"{origin.dag_id} run {origin.dag_run} stopped by its dagrun_timeout ({timeout})"
    else:
        title = f"{origin.dag_id} run {origin.dag_run} failed ({reason})"
    return Alert(
        kind="dag_failed",
        severity="critical",
        run_id=origin.dag_run,
        feed=_feeds(context),
        title=title,
        details={
            "reason": reason,
            "dagrun_timeout": str(timeout) if timeout else None,
            "started": started.isoformat() if started else None,
            # the task that failed, or (a timeout) the last one started, now skipped with the others
            "failed task" if reason == "task_failure" else "last task": getattr(ti, "task_id", None),
        },
    )


def notify_failure(context: dict[str, Any]) -> dict[str, Any]:
    """Alert a failed task or DAG run (a DAG callback's context has a ``reason``) through the connections,
    recorded in the DAG run's ledger when the run store is known."""

    origin = origin_of(context)
    store = _store_of(context)
    alert = dag_failed(context) if "reason" in context else task_failed(context, store)
    log.error("unitfusion alert: %s", alert.title)
    channels = airflow_channels(origin)
    key = run_key(str(origin.dag_id), str(origin.dag_run))
    if store is None:
        log.warning("no run store configured: the alert is sent but not recorded in alerts/")
        return {"delivery": deliver([alert], key, channels)}
    return send_alerts(store, key, [alert], channels)


class FailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every task (called after its last retry) and, through
    ``dag_run_failed`` of the DAG files, of every DAG run."""

    def notify(self, context: dict[str, Any]) -> None:
        log.info("failure alert: %s", notify_failure(context))
