"""The tokenisation key is resolved once where a run starts (a command, an Airflow task, the Beam program) and
passed down as a value: nothing writes it, or anything else, into the process environment, and nothing below
an entry point needs it there."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.cli import main
from pipelines.contracts import load_contracts
from pipelines.ingest.transforms import ParseAndDesensitise
from pipelines.kafka import RawMessage
from pipelines.ops.tasks import hmac_key
from pipelines.pii import HMAC_KEY_ENV, MissingKeyError, Tokeniser
from pipelines.store import RunStore

REPO = Path(__file__).resolve().parents[1]
UNITFUSION = str(Path(sys.executable).with_name("unitfusion"))
WRITERS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or a bare ``environ`` (``from os import environ``)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def environment_writes(source: str) -> list[int]:
    """Lines of ``source`` that change the process environment: an item of ``os.environ`` assigned or
    deleted, a mutating method of it called, or ``putenv``/``unsetenv``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Subscript) and _is_environ(t.value) for t in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("putenv", "unsetenv") or (
                isinstance(func, ast.Attribute) and name in WRITERS and _is_environ(func.value)
            ):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_check_finds_each_way_of_writing_the_environment():
    written = """
import os
from os import environ
os.environ["A"] = key
environ["B"] += "x"
os.environ.update(A="1")
os.environ.setdefault("A", "1")
del os.environ["A"]
os.putenv("A", "1")
value = os.environ.get("A")  # reading is fine
"""
    assert environment_writes(written) == [4, 5, 6, 7, 8, 9]


def test_no_module_under_pipelines_or_dags_writes_the_environment():
    files = sorted([*(REPO / "pipelines").rglob("*.py"), *(REPO / "dags").glob("*.py")])
    assert len(files) > 20  # the scan sees the code
    writes = {
        str(path.relative_to(REPO)): lines
        for path in files
        if (lines := environment_writes(path.read_text(encoding="utf-8")))
    }
    assert writes == {}


def _demo_key(out: Path) -> Tokeniser:
    return Tokeniser((out / ".demo_hmac_key").read_text().strip().encode())


def test_the_demo_runs_on_its_own_key_and_leaves_the_environment_as_it_found_it(tmp_path, monkeypatch):
    """With no key configured the demo makes one; ingest and resolve get it passed down, so a whole pass
    runs without it in the environment, and the environment is unchanged afterwards."""
    monkeypatch.delenv(HMAC_KEY_ENV)
    before = dict(os.environ)
    out = tmp_path / "demo"
    main.main(["demo", "--out", str(out), "--units", "40", "--seed", "3"], standalone_mode=False)
    assert dict(os.environ) == before
    tokens = _demo_key(out)
    nucleic = [
        json.loads(line) for line in (out / "sample" / "nucleic_contact.jsonl").read_text().splitlines()
    ]
    id_numbers = {row["id_number"] for row in nucleic if row.get("id_number")}
    assert id_numbers
    store = RunStore(out)
    staged = pq.read_table(store.root / store.latest_manifest()["feeds"]["nucleic_contact"]["files"][0])
    staged_ids = set(staged["id_number"].to_pylist())
    # tokenised with the demo's key file, not any other
    assert staged_ids & {tokens.token("id_number", value) for value in id_numbers}
    assert not staged_ids & id_numbers
    assert store.register_latest() is not None


def test_the_parse_stage_carries_its_key_to_the_runner(monkeypatch):
    """Nothing in the worker's environment: the DoFn's constructor argument, pickled with it, tokenises."""
    monkeypatch.delenv(HMAC_KEY_ENV)
    key = b"carried-key-0123456789"
    row = {"record_id": "N1", "person_name": "司马相如", "id_number": "110105194912310021"}
    message = RawMessage(
        "nucleic_contact", "feeds.nucleic_contact", 0, 0, None, b"N1", json.dumps(row).encode()
    )
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        outputs = (
            pipeline | beam.Create([[message]]) | ParseAndDesensitise(load_contracts(), "run-000001", key)
        )
        ids = outputs["nucleic_contact"] | beam.FlatMap(lambda table: table["id_number"].to_pylist())
        assert_that(ids, equal_to([Tokeniser(key).token("id_number", row["id_number"])]))


def test_a_task_takes_the_key_from_the_airflow_connection_without_exporting_it(monkeypatch, tmp_path):
    monkeypatch.delenv(HMAC_KEY_ENV)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    connection = {"conn_type": "generic", "password": "connection-key-0123456789"}
    monkeypatch.setenv("AIRFLOW_CONN_UNITFUSION_HMAC", json.dumps(connection))
    before = dict(os.environ)
    assert hmac_key() == b"connection-key-0123456789"
    assert dict(os.environ) == before


def test_a_task_with_no_key_anywhere_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.delenv(HMAC_KEY_ENV)
    monkeypatch.delenv("AIRFLOW_CONN_UNITFUSION_HMAC", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    with pytest.raises(MissingKeyError, match=f"{HMAC_KEY_ENV} is not set"):
        hmac_key()


@pytest.mark.parametrize("command", ["run", "rebuild", "train"])
def test_a_command_without_a_key_refuses_to_start_in_one_line(broker, tmp_path, command):
    out = tmp_path / "store"
    out.mkdir()
    args = ["--bootstrap", broker.bootstrap] if command == "run" else []
    env = {k: v for k, v in os.environ.items() if k != HMAC_KEY_ENV}
    done = subprocess.run(
        [UNITFUSION, command, *args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"Error: {HMAC_KEY_ENV} is not set (or shorter than 16 bytes): refusing to import")
    assert sorted(p.name for p in out.iterdir()) == ["logs"]  # nothing else touched
