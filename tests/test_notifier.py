"""Failure alerts reach a real HTTP receiver on 127.0.0.1, with personal data masked."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

from pipelines.ops.notifier import FailureNotifier, mask_personal


def test_masks_id_numbers_and_mobiles_but_not_other_numbers():
    text = "row 12 of run-000003: 11010519491231002X called +86 138-1234-5678 about 0571-88889999"
    assert mask_personal(text) == "row 12 of run-000003: *** called *** about 0571-88889999"


def test_failure_alert_is_posted_as_json():
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    context = {
        "dag": SimpleNamespace(dag_id="unitfusion_ingest"),
        "ti": SimpleNamespace(dag_id="unitfusion_ingest", task_id="ingest", try_number=3),
        "run_id": "scheduled__2026-11-01",
        "exception": RuntimeError("bad record for 11010519491231002X"),
    }
    FailureNotifier(webhook_url=f"http://127.0.0.1:{server.server_port}/hook").notify(context)
    thread.join(timeout=10)
    server.server_close()
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
