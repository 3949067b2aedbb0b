"""Alerts to ops: each source fires on a constructed history and stays quiet on a normal one; delivery reaches
a real SMTP server and a real HTTP receiver on 127.0.0.1, once per run, with no personal data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from pipelines.kafka import free_port
from pipelines.ops.alerts import (
    Alert,
    AlertChannels,
    SmtpTarget,
    alerts_for_ingest,
    feed_due_alerts,
    late_alerts,
    send_alerts,
)
from pipelines.store import RunStore
from tests.staging import commit_rows

ID_NUMBER, MOBILE = "11010519491231002X", "13812345678"


def _commit(store: RunStore, staged: dict[str, int], quarantined: dict[str, int], failures=()) -> str:
    run_id = store.next_run_id()
    store.commit(
        {
            "run_id": run_id,
            "sequence": int(run_id.split("-")[1]),
            "offsets": [],
            "feeds": {
                feed: {
                    "planned": n + quarantined.get(feed, 0),
                    "staged": n,
                    "quarantined": quarantined.get(feed, 0),
                    "files": [],
                }
                for feed, n in staged.items()
            },
            "quarantine": {"by_reason": {}, "files": []},
            "quality": {"report": f"runs/{run_id}/dq/report.html", "failures": list(failures)},
        }
    )
    return run_id


def test_a_normal_history_raises_nothing(tmp_path):
    store = RunStore(tmp_path)
    for _ in range(4):
        run = _commit(store, {"tax": 1000, "utility": 800}, {"tax": 3, "utility": 2})
    assert alerts_for_ingest(store, run) == []
    assert late_alerts(store, timedelta(hours=36)) == []


def test_quality_failures_quarantine_spikes_and_volume_drops_are_found(tmp_path):
    store = RunStore(tmp_path)
    for _ in range(3):
        _commit(store, {"tax": 1000, "utility": 800}, {"tax": 3})
    failure = {"feed": "utility", "expectation_type": "expect_column_values_to_match_regex", "column": "period",
               "message": f"bad period near {MOBILE}", "unexpected_count": 4}  # fmt: skip
    run = _commit(store, {"tax": 900, "utility": 300}, {"tax": 200}, [failure])
    found = {(a.kind, a.feed) for a in alerts_for_ingest(store, run)}
    assert found == {("dq_warning", "utility"), ("quarantine_spike", "tax"), ("volume_drop", "utility")}
    assert MOBILE not in json.dumps([a.to_dict() for a in alerts_for_ingest(store, run)])


def test_late_runs_and_overdue_departments(tmp_path):
    store = RunStore(tmp_path)
    commit_rows(store, {"tax": [{"record_id": "T1", "period": "2026-10", "tax_paid": 1.0}]})
    later = datetime.now(UTC) + timedelta(hours=40)
    assert [a.kind for a in late_alerts(store, timedelta(hours=36), now=later)] == ["run_late"]
    assert late_alerts(store, timedelta(hours=36)) == []
    due = date(2026, 11, 6)
    overdue = feed_due_alerts(store, "2026-10", ["tax", "utility"], due, today=date(2026, 11, 9))
    assert [(a.kind, a.feed) for a in overdue] == [("feed_due", "utility")]
    assert feed_due_alerts(store, "2026-10", ["tax", "utility"], due, today=due) == []  # not due yet


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[int, list]]:
    received: list = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    controller = Controller(Inbox(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, received
    finally:
        controller.stop()


def test_alerts_reach_smtp_and_webhook_once_per_run_without_personal_data(tmp_path, smtp_inbox, webhook):
    port, mails = smtp_inbox
    url, posts = webhook
    channels = AlertChannels(
        smtp=SmtpTarget(host="127.0.0.1", port=port, sender="unitfusion@bureau.test", recipients=("ops@bureau.test",)),
        webhook_url=url,
    )  # fmt: skip
    alerts = [
        Alert("quarantine_spike", "error", "run-000004", "tax", f"tax: 20% quarantined, e.g. {ID_NUMBER}",
              {"sample": f"call {MOBILE}"}),
        Alert("feed_due", "error", None, "utility", "utility: 2026-10 not delivered (due 2026-11-06)"),
    ]  # fmt: skip
    store = RunStore(tmp_path)
    first = send_alerts(store, "run-000004", alerts, channels)
    assert first["delivery"] == {"webhook": "sent", "email": "sent"} and first["new"] == 2
    again = send_alerts(store, "run-000004", alerts, channels)  # a rerun of the same run
    assert again["new"] == 0 and len(posts) == 1 and len(mails) == 1

    [post] = posts
    assert [a["kind"] for a in post["alerts"]] == ["quarantine_spike", "feed_due"]
    mail = message_from_bytes(mails[0].content, policy=policy.default)
    assert mails[0].rcpt_tos == ["ops@bureau.test"] and "2 alert(s)" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert "utility: 2026-10 not delivered" in text
    everything = (
        json.dumps(posts) + mails[0].content.decode() + (store.alerts_dir / "run-000004.jsonl").read_text()
    )
    assert ID_NUMBER not in everything and MOBILE not in everything and "***" in everything


def test_a_failing_channel_is_reported_and_retried_on_the_next_send(tmp_path, webhook):
    url, posts = webhook
    alert = Alert("volume_drop", "error", "run-000002", "tax", "tax: 10 records staged, usually 1000")
    store = RunStore(tmp_path)
    broken = AlertChannels(webhook_url=f"http://127.0.0.1:{free_port()}/nobody")
    assert send_alerts(store, "run-000002", [alert], broken)["delivery"]["webhook"].startswith("failed")
    assert send_alerts(store, "run-000002", [alert], AlertChannels(webhook_url=url))["new"] == 1
    assert len(posts) == 1
