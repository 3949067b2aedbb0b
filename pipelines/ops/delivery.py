"""Getting an alert out of the process: masking, and the JSON POST every webhook alert uses.

Light on purpose (standard library only): the failure notifier imports it at DAG parse time, and the CLI
sends alerts without Airflow installed.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

WEBHOOK_ENV = "UNITFUSION_ALERT_WEBHOOK"
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
