"""Failure notification for the DAGs: tell ops which run failed and why, without personal data.

Imported at DAG parse time, so it stays light: only the standard library and ``airflow.sdk``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from typing import Any

from airflow.sdk import BaseNotifier

WEBHOOK_ENV = "UNITFUSION_ALERT_WEBHOOK"
log = logging.getLogger(__name__)

# Anything that looks like an ID number or a mobile phone is masked before an alert leaves the process.
_PERSONAL_RE = re.compile(r"(?<!\d)(?:[1-9]\d{16}[\dXx]|(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2})(?!\d)")


def mask_personal(text: str) -> str:
    return _PERSONAL_RE.sub("***", text)


def post_json(url: str, payload: Any) -> int:
    """POST ``payload`` as UTF-8 JSON (how every alert reaches a webhook); the HTTP status."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def failure_alert(context: dict[str, Any]) -> dict[str, Any]:
    """The alert payload for a failed task: where it failed and the error, masked."""
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    return {
        "kind": "run_failed",
        "dag_id": getattr(context.get("dag"), "dag_id", None) or getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "error_type": type(error).__name__ if error else None,
        "error": mask_personal(str(error))[:2000] if error else None,
    }


class FailureNotifier(BaseNotifier):
    """Logs the alert and, when a webhook URL is configured, POSTs it as JSON."""

    template_fields = ("webhook_url",)

    def __init__(self, webhook_url: str | None = None) -> None:
        super().__init__()
        self.webhook_url = webhook_url

    def notify(self, context: dict[str, Any]) -> None:
        alert = failure_alert(context)
        log.error("unitfusion alert: %s", json.dumps(alert, ensure_ascii=False))
        self._email(context)
        url = self.webhook_url or os.environ.get(WEBHOOK_ENV)
        if not url:
            return
        log.info("alert delivered to webhook (HTTP %s)", post_json(url, alert))

    @staticmethod
    def _email(context: dict[str, Any]) -> None:
        """The same failure by e-mail when SMTP is configured (env or the ``unitfusion_smtp`` connection)."""
        from pipelines.ops.alerts import AlertChannels, alert_for_failure, deliver

        channels = AlertChannels.from_environment()
        if channels.smtp is not None:
            outcome = deliver(
                [alert_for_failure(context)], str(context.get("run_id")), AlertChannels(channels.smtp)
            )
            log.info("failure alert by e-mail: %s", outcome)
