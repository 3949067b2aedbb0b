"""A real pass (`unitfusion run` on the embedded broker) over sample feeds with personal data planted where no
contract expects it: not one of the clear values appears in any file the run writes, nor in its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest

from pipelines.config import default_topics
from pipelines.contracts import load_contracts
from pipelines.generate import generate
from pipelines.kafka import jsonl_messages, produce_messages
from pipelines.pii import HMAC_KEY_ENV
from pipelines.store import RunStore

pytestmark = pytest.mark.integration
UNITFUSION = str(Path(sys.executable).with_name("unitfusion"))

ID_IN_WORK_UNIT = "330106198807154323"
MOBILE_WITH_DOTS = "139.8765.4321"
ID_AS_RECORD_ID = "440106199001011235"
NAME_IN_MALFORMED = "诸葛青云"
PRIVATE_SENDER = "司马相如"
# Each planted value as written and as its digits or characters alone (a leak may have normalised it).
CLEAR = [
    ID_IN_WORK_UNIT,
    MOBILE_WITH_DOTS,
    MOBILE_WITH_DOTS.replace(".", ""),
    ID_AS_RECORD_ID,
    NAME_IN_MALFORMED,
    PRIVATE_SENDER,
]


def _json(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


PLANTED = {
    "nucleic_contact": [
        (
            b"PLANT-N1",
            _json(
                {
                    "record_id": "PLANT-N1",
                    "work_unit": f"城西五金厂 {ID_IN_WORK_UNIT}",
                    "address": f"西湖区文三路1号 {MOBILE_WITH_DOTS}",
                    "sampled_at": "2026-01-05T09:00:00+08:00",
                }
            ),
        ),
        (  # cut off: not JSON, quarantined with its raw payload
            b"PLANT-N2",
            f'{{"record_id": "PLANT-N2", "person_name": "{NAME_IN_MALFORMED}", "id_number": "{ID_IN_WORK_UNIT}'.encode(),
        ),
    ],
    "tax": [
        (
            ID_AS_RECORD_ID.encode(),
            _json(
                {
                    "record_id": ID_AS_RECORD_ID,
                    "taxpayer_name": "城西五金厂",
                    "period": "2026-01",
                    "tax_paid": 12.5,
                }
            ),
        )
    ],
    "waybill": [
        (
            b"PLANT-W1",
            _json(
                {
                    "record_id": "PLANT-W1",
                    "sender_name": PRIVATE_SENDER,
                    "sender_company": None,
                    "sender_address": "杭州市西湖区文三路2号",
                    "shipped_at": "2026-01-06T10:00:00+08:00",
                    "parcel_count": 1,
                }
            ),
        )
    ],
}


def _texts(path: Path) -> list[str]:
    """What a file holds, as text a person (or a grep) would read: decoded Parquet values, spreadsheet
    cells, and the raw bytes of everything."""
    data = path.read_bytes()
    texts = [data.decode("utf-8", "replace"), data.decode("gb18030", "replace")]
    if path.suffix == ".parquet":

        def readable(value: object) -> str:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

        texts.append(json.dumps(pq.read_table(path).to_pylist(), default=readable, ensure_ascii=False))
    elif path.suffix == ".xlsx":
        workbook = openpyxl.load_workbook(path, read_only=True)
        texts += [
            str(cell) for sheet in workbook for row in sheet.iter_rows(values_only=True) for cell in row
        ]
    return texts


def test_no_planted_clear_value_reaches_any_output(broker, topic_prefix, tmp_path):
    sample = tmp_path / "sample"
    generate(units=60, seed=23, out_dir=sample)
    for path in sample.glob("*.jsonl"):  # a finding below must come from the planted messages
        assert not any(value in path.read_text(encoding="utf-8") for value in CLEAR)
    topics = default_topics(topic_prefix)
    for feed in load_contracts():
        produce_messages(
            broker.bootstrap,
            topics[feed],
            [*jsonl_messages(sample / f"{feed}.jsonl"), *PLANTED.get(feed, [])],
        )

    out = tmp_path / "out"
    env = os.environ | {"UNITFUSION_TOPIC_PREFIX": topic_prefix, HMAC_KEY_ENV: os.environ[HMAC_KEY_ENV]}
    done = subprocess.run(
        [UNITFUSION, "--verbose", "run", "--bootstrap", broker.bootstrap, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    store = RunStore(out)
    staged = {
        feed: [row for f in store.committed_files(feed) for row in pq.read_table(f).to_pylist()]
        for feed in PLANTED
    }
    nucleic = {row["record_id"]: row for row in staged["nucleic_contact"]}
    assert nucleic["PLANT-N1"]["work_unit"].startswith("城西五金厂 t1_")  # the planted rows did land
    assert any(row["record_id"].startswith("t1_") for row in staged["tax"])
    assert any(row["sender_name"] and row["sender_name"].startswith("t1_") for row in staged["waybill"])
    quarantined = [
        row for f in store.committed_files(kind="quarantine") for row in pq.read_table(f).to_pylist()
    ]
    assert any(b"PLANT-N2" in row["raw_payload"] for row in quarantined)

    outputs = [path for path in out.rglob("*") if path.is_file()]
    suffixes = {path.suffix for path in outputs}
    assert {".parquet", ".json", ".xlsx", ".csv", ".html"} <= suffixes, suffixes  # every kind was written
    leaks = {
        (str(path.relative_to(out)), value)
        for path in outputs
        for text in _texts(path)
        for value in CLEAR
        if value in text
    }
    leaks |= {("run output", value) for value in CLEAR if value in done.stdout + done.stderr}
    assert not leaks
