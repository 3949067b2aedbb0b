"""Alerts to ops: each source fires on a constructed history and stays quiet on a normal one; delivery reaches
a real SMTP server and a real HTTP receiver on 127.0.0.1, once per run, with no personal data; e-mail and
webhook (plain JSON, WeCom and DingTalk robot markdown) carry the same facts, with an absolute report path.
The same through Airflow's providers: ``tests/test_alert_providers.py``."""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller

from pipelines.kafka import free_port
from pipelines.ops.alerts import (
    Alert,
    AlertChannels,
    Origin,
    SmtpTarget,
    alert_for_blocked,
    alerts_for_ingest,
    compose,
    feed_due_alerts,
    late_alerts,
    send_alerts,
)
from pipelines.ops.delivery import dingtalk_signature
from pipelines.quality.outcomes import BlockingQualityError, ExpectationOutcome
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


def test_with_no_channel_logged_alerts_complete_the_run_at_once(tmp_path):
    """No channel configured: the log is the channel, so the run's alerts are done in this pass (the CLI said
    "not all sent, the next run retries" and the run's marker waited a pass)."""
    alert = Alert("volume_drop", "error", "run-000002", "tax", "tax: 10 records staged, usually 1000")
    store = RunStore(tmp_path)
    first = send_alerts(store, "run-000002", [alert], AlertChannels())
    assert first["complete"] and first["new"] == 1
    assert send_alerts(store, "run-000002", [alert], AlertChannels())["new"] == 0


# --- one message, every shape -----------------------------------------------------------------------------


@pytest.fixture
def robot() -> Iterator[tuple[str, list[dict], dict]]:
    """A chat robot on 127.0.0.1: keeps each POST (path, headers, JSON body) and answers like WeCom and
    DingTalk do, HTTP 200 with ``reply`` (``{"errcode": 0}`` unless a test changes it)."""
    received: list[dict] = []
    reply: dict = {"errcode": 0, "errmsg": "ok"}

    class Robot(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            answer = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Robot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/cgi-bin/webhook/send?key=k1", received, reply
    finally:
        server.shutdown()
        server.server_close()


def mail_text(envelope) -> str:  # type: ignore[no-untyped-def]
    """What a reader sees in an e-mail's HTML part, tags dropped, one line per list item."""
    mail = message_from_bytes(envelope.content, policy=policy.default)
    page = mail.get_body(("html",)).get_content()
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"</(li|h3|h4)>", "\n", page)))


def signed_by(path: str, secret: str) -> bool:
    """A DingTalk robot's check: ``sign`` is the HMAC of ``timestamp`` with the secret (and the key stays)."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
    return (
        query["key"] == "k1" and dingtalk_signature(secret, int(query["timestamp"]))["sign"] == query["sign"]
    )


def fact_lines(markdown: str) -> list[str]:
    """The facts of a chat message: its ``- label: value`` lines, without the dash."""
    return [line[2:] for line in markdown.splitlines() if line.startswith("- ")]


BLOCKED = BlockingQualityError(
    [
        ExpectationOutcome(
            feed="tax", expectation_type="expect_column_values_to_not_be_null", column="taxpayer_id",
            severity="block", success=False, why="null ids", message=f"taxpayer_id null near {MOBILE}",
            unexpected_count=12, unexpected_percent=24.0,
        )
    ]
)  # fmt: skip


def test_ingest_alerts_name_the_report_by_absolute_path(tmp_path, monkeypatch):
    """A relative ``--out`` (``unitfusion run --out out``) still gives alerts an absolute report path."""
    monkeypatch.chdir(tmp_path)
    store = RunStore(Path("out"))
    for _ in range(3):
        _commit(store, {"tax": 1000}, {"tax": 3})
    run = _commit(store, {"tax": 1000}, {"tax": 300})
    [spike] = alerts_for_ingest(store, run)
    assert spike.report == str((tmp_path / "out" / "runs" / run / "dq" / "report.html").resolve())


def test_email_and_webhook_say_the_same_dag_run_feed_counts_and_report(tmp_path, smtp_inbox, robot):
    port, mails = smtp_inbox
    url, posts, _ = robot
    origin = Origin(
        "unitfusion_daily", "manual__2026-11-09", "http://airflow.test/dags/unitfusion_daily/runs/m"
    )
    channels = AlertChannels(
        smtp=SmtpTarget(host="127.0.0.1", port=port, sender="uf@bureau.test", recipients=("ops@bureau.test",)),
        webhook_url=url, webhook_shape="wecom", origin=origin,
    )  # fmt: skip
    report = str(tmp_path / "runs" / "run-000004" / "dq" / "report.html")
    alerts = [
        Alert("quarantine_spike", "error", "run-000004", "tax", "tax: 20.0% of messages quarantined",
              {"quarantined": 200, "read": 1000}, report=report),
        alert_for_blocked(BLOCKED, "manual__2026-11-09", report),
    ]  # fmt: skip
    assert send_alerts(RunStore(tmp_path), "unitfusion_daily.m", alerts, channels)["complete"]

    [post], [mail] = posts, mails
    assert post["path"] == "/cgi-bin/webhook/send?key=k1" and post["body"]["msgtype"] == "markdown"
    markdown = post["body"]["markdown"]["content"]
    facts = fact_lines(markdown)
    for fact in (
        "DAG: unitfusion_daily",
        "DAG run: manual__2026-11-09",
        "feed: tax",
        "ingest run: run-000004",
        "quarantined: 200",
        "read: 1000",
        f"report: {report}",
        "expectations: tax: expect_column_values_to_not_be_null on taxpayer_id: 12 unexpected (24.0%)",
    ):
        assert fact in facts  # fmt: skip
    assert all(fact in mail_text(mail) for fact in facts)  # the e-mail says the same
    subject = message_from_bytes(mail.content, policy=policy.default)["Subject"]
    assert "2 alert(s) for unitfusion_daily.m (DAG unitfusion_daily, run manual__2026-11-09)" in subject
    assert MOBILE not in json.dumps(posts, ensure_ascii=False) + mail.content.decode(errors="replace")


def test_webhook_shapes_plain_wecom_and_dingtalk():
    alert = Alert("volume_drop", "error", "run-000002", "tax", "tax: 10 records staged, usually 1000",
                  {"staged": 10, "median_before": 1000}, report="/srv/out/manifests/run-000002.json")  # fmt: skip
    message = compose([alert], "run-000002", Origin("unitfusion_daily", "scheduled__x"))
    plain = message.webhook_body("json")
    assert plain["run"] == "run-000002" and plain["dag_id"] == "unitfusion_daily"
    [sent] = plain["alerts"]
    assert (sent["kind"], sent["feed"], sent["dag_run"], sent["report"]) == (
        "volume_drop", "tax", "scheduled__x", "/srv/out/manifests/run-000002.json",
    )  # fmt: skip
    wecom = message.webhook_body("wecom")
    assert wecom == {"msgtype": "markdown", "markdown": {"content": message.markdown}}
    dingtalk = message.webhook_body("dingtalk")
    assert dingtalk["msgtype"] == "markdown" and dingtalk["markdown"]["text"] == message.markdown
    assert dingtalk["markdown"]["title"].startswith("[unitfusion] 1 alert(s)")
    with pytest.raises(ValueError, match="wecom"):
        message.webhook_body("slack")


def test_a_long_batch_is_cut_for_the_robot_but_not_for_the_email():
    alerts = [Alert("dq_warning", "warning", "run-000009", "tax", f"tax: expectation {i} failed 中文", {"n": i})
              for i in range(200)]  # fmt: skip
    message = compose(alerts, "run-000009", Origin())
    content = message.webhook_body("wecom")["markdown"]["content"]
    assert len(content.encode()) <= 4000 and "cut" in content
    assert "expectation 199 failed" in message.html


def test_a_robot_that_refuses_the_message_is_a_failed_delivery(tmp_path, robot):
    url, posts, reply = robot
    reply.update(errcode=93000, errmsg="invalid webhook url")
    alert = Alert("run_late", "error", None, None, "no ingest run committed for more than 1 day")
    channels = AlertChannels(webhook_url=url, webhook_shape="dingtalk")
    outcome = send_alerts(RunStore(tmp_path), "k", [alert], channels)
    assert outcome["delivery"]["webhook"].startswith("failed") and "93000" in outcome["delivery"]["webhook"]
    assert not outcome["complete"] and len(posts) == 1
    reply.update(errcode=0, errmsg="ok")
    assert send_alerts(RunStore(tmp_path), "k", [alert], channels)["complete"]


def test_the_webhook_shape_comes_from_the_environment_outside_airflow(monkeypatch):
    monkeypatch.setenv("UNITFUSION_ALERT_WEBHOOK", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("UNITFUSION_ALERT_WEBHOOK_SHAPE", "dingtalk")
    assert AlertChannels.from_environment().webhook_shape == "dingtalk"
    monkeypatch.setenv("UNITFUSION_ALERT_WEBHOOK_SHAPE", "dingding")
    with pytest.raises(ValueError, match="dingtalk"):
        AlertChannels.from_environment()


def test_a_dingtalk_robot_secured_by_signing_gets_a_signed_url(tmp_path, robot):
    url, posts, _ = robot
    alert = Alert("feed_due", "error", None, "utility", "utility: 2026-10 not delivered (due 2026-11-06)")
    channels = AlertChannels(webhook_url=url, webhook_shape="dingtalk", webhook_secret="SEC0123")
    assert send_alerts(RunStore(tmp_path), "k", [alert], channels)["complete"]
    [post] = posts
    assert signed_by(post["path"], "SEC0123") and post["body"]["msgtype"] == "markdown"


def test_a_blocked_batch_alert_takes_the_batches_counts_and_report(tmp_path):
    """The error a pass ends with when a feed is held back (``BlockingQualityError.from_batches``)."""
    report = str(tmp_path / "runs" / "run-000007" / "dq" / "report.html")
    failure = {**BLOCKED.failures[0].to_dict()}
    error = BlockingQualityError.from_batches(
        {"tax": {"failures": [failure], "rows": 50, "report": "runs/run-000007/dq/report.html",
                 "report_path": report}},
        run_id="run-000007", landed=["utility"],
    )  # fmt: skip
    alert = alert_for_blocked(error, "scheduled__x")
    assert (alert.run_id, alert.feed, alert.report) == ("run-000007", "tax", report)
    assert alert.details["batches"] == {"tax": {"rows": 50}} and alert.details["landed"] == "utility"
    assert alert.details["expectations"] == [
        "tax: expect_column_values_to_not_be_null on taxpayer_id: 12 unexpected (24.0%)"
    ]
