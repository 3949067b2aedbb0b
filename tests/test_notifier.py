"""The failure notifier sends through the Airflow connections (SMTP and HTTP providers) to a real SMTP server
and HTTP receiver on 127.0.0.1, records the failure in the DAG run's ledger, and masks personal data. Real
Airflow runs (a task failing after its retries, a DAG run failing, a run stopped by its timeout):
``tests/test_alert_providers.py``."""

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

from pipelines.ops.delivery import mask_personal
from pipelines.ops.notifier import FailureNotifier
from pipelines.store import RunStore
from tests.test_alerts import mail_text, smtp_inbox  # noqa: F401  (a fixture)


def test_masks_id_numbers_and_mobiles_but_not_other_numbers():
    text = "row 12 of run-000003: 11010519491231002X called +86 138-1234-5678 about 0571-88889999"
    assert mask_personal(text) == "row 12 of run-000003: *** called *** about 0571-88889999"


@pytest.fixture
def connections(monkeypatch, webhook, smtp_inbox, tmp_path):  # noqa: F811
    """The two channels as Airflow connections in their standard forms (here from the environment, as
    ``AIRFLOW_CONN_*`` JSON), and the run store as the environment gives it."""
    url, posts = webhook
    port, mails = smtp_inbox
    monkeypatch.setenv("AIRFLOW_CONN_UNITFUSION_WEBHOOK", json.dumps({"conn_type": "http", "host": url}))
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {
            "from_email": "uf@bureau.test",
            "to": "ops@bureau.test",
            "disable_ssl": True,
            "disable_tls": True,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_UNITFUSION_SMTP", json.dumps(smtp))
    monkeypatch.setenv("UNITFUSION_OUT", str(tmp_path / "out"))
    for name in ("UNITFUSION_ALERT_WEBHOOK", "UNITFUSION_ALERT_SMTP"):
        monkeypatch.delenv(name, raising=False)
    return posts, mails, RunStore(tmp_path / "out")


def test_a_failed_task_goes_by_webhook_and_email_and_into_the_ledger(connections):
    posts, mails, store = connections
    context = {
        "dag": SimpleNamespace(dag_id="unitfusion_ingest"),
        "ti": SimpleNamespace(
            dag_id="unitfusion_ingest",
            task_id="ingest",
            try_number=3,
            max_tries=2,
            log_url="http://af.test/log",
        ),
        "run_id": "scheduled__2026-11-01",
        "exception": RuntimeError("bad record for 11010519491231002X"),
    }
    FailureNotifier().notify(context)

    [post] = posts
    [alert] = post["alerts"]
    assert (alert["kind"], alert["dag_id"], alert["run_id"], alert["dag_run"]) == (
        "run_failed", "unitfusion_ingest", "scheduled__2026-11-01", "scheduled__2026-11-01",
    )  # fmt: skip
    assert alert["details"] == {
        "task": "ingest",
        "tries": "3 of 3",
        "error_type": "RuntimeError",
        "error": "bad record for ***",
    }
    assert alert["report"] == "http://af.test/log"
    [mail] = mails
    assert mail.rcpt_tos == ["ops@bureau.test"]
    for fact in ("DAG: unitfusion_ingest", "task: ingest", "tries: 3 of 3", "error: bad record for ***"):
        assert fact in mail_text(mail)
    ledger = store.alert_log("unitfusion_ingest.scheduled__2026-11-01").read_text()
    assert '"run_failed"' in ledger and '{"webhook": "sent"}' in ledger and '{"email": "sent"}' in ledger
    assert "11010519491231002X" not in ledger + json.dumps(posts) + mail.content.decode()


def test_a_dag_run_stopped_by_its_timeout_is_alerted_from_the_processors_context(connections):
    """The DAG processor's context for a timed-out run without a task to name: ``dag``, ``run_id`` and
    ``reason`` only."""
    posts, mails, store = connections
    dag = SimpleNamespace(dag_id="unitfusion_daily", dagrun_timeout=timedelta(hours=6))
    context = {"dag": dag, "run_id": "scheduled__2026-11-08", "reason": "timed_out"}
    FailureNotifier().notify(context)
    FailureNotifier().notify(context)  # a callback run twice sends once

    [post] = posts
    [alert] = post["alerts"]
    assert alert["kind"] == "dag_failed" and "stopped by its dagrun_timeout (6:00:00)" in alert["title"]
    assert alert["report"].endswith("/dags/unitfusion_daily/runs/scheduled__2026-11-08")
    assert len(mails) == 1 and "stopped by its dagrun_timeout" in mail_text(mails[0])
    assert "dag_failed" in store.alert_log("unitfusion_daily.scheduled__2026-11-08").read_text()
