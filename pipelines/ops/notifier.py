"""Failure notification for the DAGs: tell ops which run failed and why, without personal data.

Imported at DAG parse time, so it stays light: the standard library, ``airflow.sdk`` and the alert
delivery it shares with the CLI.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

from pipelines.ops.alerts import AlertChannels, alert_for_failure, deliver
from pipelines.ops.delivery import WEBHOOK_ENV, failure_alert, post_json

log = logging.getLogger(__name__)


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
        channels = AlertChannels.from_environment()
        if channels.smtp is not None:
            outcome = deliver(
                [alert_for_failure(context)], str(context.get("run_id")), AlertChannels(channels.smtp)
            )
            log.info("failure alert by e-mail: %s", outcome)
