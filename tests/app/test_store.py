import json

from app.store import RunStore


def record(run_id="r1", status="done", created_at=1.0):
    return {"id": run_id, "experiment": "perceptron", "status": status,
            "created_at": created_at, "finished_at": created_at + 1, "figures": {}}


def test_saved_runs_survive_a_new_store_on_the_same_file(tmp_path):
    RunStore(tmp_path / "runs.db").save(record(), json.dumps(record()))
    assert RunStore(tmp_path / "runs.db").load("r1") == record()
    assert RunStore(tmp_path / "runs.db").load("nope") is None


def test_recent_lists_newest_first(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    for i in range(3):
        store.save(record(f"r{i}", created_at=float(i)), json.dumps(record(f"r{i}")))
    assert [r["id"] for r in store.recent(2)] == ["r2", "r1"]


def test_an_unusable_file_is_reported_not_raised(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    (tmp_path / "runs.db").write_bytes(b"this is not a database" * 100)
    assert store.save(record(), "{}") is False
    assert store.load("r1") is None
    assert store.recent() == []
