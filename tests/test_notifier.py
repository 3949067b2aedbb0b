"""Failure alerts reach a real HTTP receiver on 127.0.0.1, with personal data masked."""

from types import SimpleNamespace

from pipelines.ops.delivery import mask_personal
from pipelines.ops.notifier import FailureNotifier


def test_masks_id_numbers_and_mobiles_but_not_other_numbers():
    text = "row 12 of run-000003: 11010519491231002X called +86 138-1234-5678 about 0571-88889999"
    assert mask_personal(text) == "row 12 of run-000003: *** called *** about 0571-88889999"


def test_failure_alert_is_posted_as_json(webhook):
    url, received = webhook
    context = {
        "dag": SimpleNamespace(dag_id="unitfusion_ingest"),
        "ti": SimpleNamespace(dag_id="unitfusion_ingest", task_id="ingest", try_number=3),
        "run_id": "scheduled__2026-11-01",
        "exception": RuntimeError("bad record for 11010519491231002X"),
    }
    FailureNotifier(webhook_url=url).notify(context)
    assert received == [
        {
            "kind": "run_failed",
            "dag_id": "unitfusion_ingest",
            "task_id": "ingest",
            "run_id": "scheduled__2026-11-01",
            "try_number": 3,
            "error_type": "RuntimeError",
            "error": "bad record for ***",
        }
    ]
