"""The run store: only manifests make output visible, and they appear whole."""

import json

import pytest

from pipelines.store import RunStore, StoreLockedError


def _fake_run(store: RunStore, run_id: str, end: int) -> dict:
    files = store.staging_prefix(run_id, "tax").parent
    files.mkdir(parents=True)
    (files / "part-00000-of-00001.parquet").write_bytes(b"PAR1")
    return {
        "run_id": run_id,
        "sequence": int(run_id.split("-")[1]),
        "offsets": [{"feed": "tax", "topic": "feeds.tax", "partition": 0, "start": 0, "end": end}],
        "feeds": {
            "tax": {
                "staged": 1,
                "quarantined": 0,
                "files": [f"runs/{run_id}/staging/tax/part-00000-of-00001.parquet"],
            }
        },
        "quarantine": {"by_reason": {}, "files": []},
    }


def test_uncommitted_runs_are_invisible_and_discarded(tmp_path):
    store = RunStore(tmp_path)
    manifest = _fake_run(store, "run-000001", end=10)
    assert store.manifests() == [] and store.committed_offsets() == {} and store.committed_files("tax") == []
    store.commit(manifest)
    assert store.committed_offsets() == {("feeds.tax", 0): 10}
    assert store.committed_files("tax") == [tmp_path / manifest["feeds"]["tax"]["files"][0]]
    assert (tmp_path / "LATEST").read_text().strip() == "run-000001"
    assert store.next_run_id() == "run-000002"

    _fake_run(store, "run-000002", end=20)  # written but never committed: a crash
    (store.quality_dir("run-000002")).mkdir()
    (store.quality_dir("run-000002") / "results.json").write_text("{}")
    assert store.committed_offsets() == {("feeds.tax", 0): 10}
    assert store.discard_uncommitted() == ["run-000002"]
    assert not store.run_dir("run-000002").exists()
    assert store.run_dir("run-000001").exists()
    kept = list(store.rejected_dir.glob("run-000002-*/results.json"))
    assert len(kept) == 1  # the data-quality report of a rejected run stays for people to read


def test_a_run_commits_once(tmp_path):
    store = RunStore(tmp_path)
    manifest = _fake_run(store, "run-000001", end=5)
    store.commit(manifest)
    with pytest.raises(FileExistsError):
        store.commit(manifest)
    saved = json.loads((store.manifests_dir / "run-000001.json").read_text())
    assert saved["offsets"] == manifest["offsets"] and "committed_at" in saved
    assert [p.name for p in store.manifests_dir.iterdir()] == ["run-000001.json"]  # no temp file left


def test_one_writer_at_a_time(tmp_path):
    store = RunStore(tmp_path)
    with store.lock(), pytest.raises(StoreLockedError), RunStore(tmp_path).lock():
        pass
