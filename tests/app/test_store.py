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


def test_uploads_round_trip_and_only_the_newest_are_kept(tmp_path):
    import numpy as np

    store = RunStore(tmp_path / "runs.db")
    pictures = {f"upload-{i:032x}": np.full((2 + i, 3), i, dtype=np.uint8) for i in range(3)}
    for upload_id, pixels in pictures.items():
        assert store.save_upload(upload_id, pixels, keep=2)
    assert store.load_upload("upload-" + "0" * 32) is None  # the oldest went
    for upload_id in list(pictures)[1:]:
        np.testing.assert_array_equal(RunStore(tmp_path / "runs.db").load_upload(upload_id),
                                      pictures[upload_id])
