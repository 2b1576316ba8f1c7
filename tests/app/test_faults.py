"""Faults against real uvicorn processes on 127.0.0.1, beyond those in test_server.py (killed
workers, time limits, disconnects, restarts): running out of memory, a read-only, locked or
unusable SQLite file, path traversal, huge query strings and malformed resume ids.
"""

import socket
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from app.client import iter_events
from tests.servers import Server

pytestmark = pytest.mark.server


def start(http, **params):
    response = http.post("/api/runs", json={"experiment": "ticker", "params": params})
    assert response.status_code == 201, response.text
    return response.json()


def last_event(http, run):
    return list(iter_events(http, run["urls"]["events"]))[-1]


def wait_for_log(server, text, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the server log:\n{server.log.read_text()[-3000:]}")


def stored_ids(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM runs")}


def wait_stored(db: Path, run_id: str, timeout: float = 10.0) -> None:
    """``done`` is sent before the record is written; wait for the write."""
    deadline = time.monotonic() + timeout
    while run_id not in stored_ids(db):
        assert time.monotonic() < deadline, f"run {run_id} was not stored"
        time.sleep(0.1)


# ----- memory ---------------------------------------------------------------------------

def test_running_out_of_memory_fails_that_run_only(make_server):
    server = make_server(workers=1)
    with httpx.Client(base_url=server.url) as http:
        pid = http.get("/api/health").json()["workers"][0]["pid"]
        # A tensor of 1 PiB on the run's device (CPU here; torch.OutOfMemoryError on CUDA),
        # then a plain Python allocation as large: both really fail to allocate.
        for failure, message in (("oom", "allocate"), ("memory", "out of memory (MemoryError)")):
            run = start(http, steps=10, failure=failure)
            last = last_event(http, run)
            assert last.type == "error" and message in last.data["message"], last
            assert http.get(f"/api/runs/{run['id']}").json()["status"] == "error"
        assert last_event(http, start(http, steps=3)).type == "done"
        worker = http.get("/api/health").json()["workers"][0]
        assert worker == {"pid": pid, "alive": True}  # the same worker went on


# ----- the SQLite file ------------------------------------------------------------------

def mark_read_only(db: Path, read_only: bool = True) -> None:
    """Make SQLite see ``db`` as read-only. chmod does not stop root (CI runs as root), so
    this sets the header's write version (byte 18) to 3, which SQLite reads as "open this
    file read-only" (sqlite.org/fileformat.html, file format version numbers)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so page 1 is read from the file
    with db.open("r+b") as file:
        file.seek(18)
        file.write(bytes([3 if read_only else 2]))


def test_a_read_only_database_is_reported_and_runs_are_served_from_memory(make_server):
    server = make_server(workers=1)
    with httpx.Client(base_url=server.url) as http:
        before = start(http, steps=3)
        assert last_event(http, before).type == "done"
        wait_stored(server.db_path, before["id"])

        mark_read_only(server.db_path)
        run = start(http, steps=5, points=10)
        assert last_event(http, run).type == "done"
        record = http.get(f"/api/runs/{run['id']}").json()
        assert record["status"] == "done" and all(c["passed"] for c in record["checks"])
        assert http.get(f"/runs/{run['id']}").status_code == 200
        assert http.get(f"/api/runs/{before['id']}").json()["status"] == "done"  # still read
        log = wait_for_log(server, f"could not save run {run['id']}")
        assert "attempt to write a readonly database" in log

        mark_read_only(server.db_path, False)
        after = start(http, steps=3)
        assert last_event(http, after).type == "done"
        wait_stored(server.db_path, after["id"])
        assert run["id"] not in stored_ids(server.db_path)  # it lived in memory only


def test_a_locked_database_is_reported_and_runs_go_on(make_server):
    server = make_server(workers=1)
    with httpx.Client(base_url=server.url) as http:
        first = start(http, steps=2)
        assert last_event(http, first).type == "done"
        wait_stored(server.db_path, first["id"])
        lock = sqlite3.connect(server.db_path, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            run = start(http, steps=5)
            started = time.monotonic()
            assert last_event(http, run).type == "done"
            assert time.monotonic() - started < 4  # done is sent before the (blocked) save
            assert http.get(f"/api/runs/{run['id']}").json()["status"] == "done"
            wait_for_log(server, f"could not save run {run['id']}")
            assert "database is locked" in server.log.read_text()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        after = start(http, steps=3)
        assert last_event(http, after).type == "done"
        wait_stored(server.db_path, after["id"])
        assert http.get(f"/api/runs/{run['id']}").json()["status"] == "done"


def test_an_unusable_database_path_is_reported_and_the_server_still_serves(make_server,
                                                                          tmp_path):
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("")
    server = make_server(workers=1, DB_PATH=not_a_directory / "runs.db")
    with httpx.Client(base_url=server.url) as http:
        wait_for_log(server, "run history unavailable, finished runs are kept in memory only")
        run = start(http, steps=4)
        assert last_event(http, run).type == "done"
        assert http.get(f"/api/runs/{run['id']}").json()["status"] == "done"
        assert http.get("/api/runs").json() == []
        assert http.get("/api/runs/nope").status_code == 404
        assert http.get("/").status_code == 200


# ----- hostile requests -----------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server({"PLAYGROUND_WORKERS": "1"}, tmp_path_factory.mktemp("faults") / "runs.db")
    server.start()
    yield server
    server.stop()


def raw_get(server, target: bytes, headers: bytes = b"") -> bytes:
    """Send the request line exactly as given (httpx would normalise ``..`` away)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        try:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n" + headers + b"\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        except (ConnectionResetError, BrokenPipeError):  # refused before it was all sent
            return b""
    return response


SECRETS = (b"[build-system]", b"root:x:0:0", b"class Settings", b"BEGIN PRIVATE")


@pytest.mark.parametrize("target", [
    b"/static/../pyproject.toml", b"/static/..%2fpyproject.toml",
    b"/static/%2e%2e/%2e%2e/etc/passwd", b"/static/..%5c..%5cpyproject.toml",
    b"/static//etc/passwd", b"/static/%2fetc%2fpasswd", b"/static/api.js/../../pyproject.toml",
    b"/static/a%00.js", b"/vendor/../app/settings.py", b"/../../etc/passwd",
    b"/runs/..%2f..%2fetc%2fpasswd", b"/e/..%2f..%2fpyproject.toml",
    b"/api/runs/..%2f..%2fetc%2fpasswd", b"/api/runs/../../etc/passwd/events",
    b"/api/runs/%2e%2e/images/x.png", b"/api/experiments/..%2f..%2fapp%2fsettings.py",
])
def test_path_traversal_reaches_no_file(server, target):
    response = raw_get(server, target)
    status = int(response.split(b" ", 2)[1])
    assert status in (400, 404), response[:300]
    assert not any(secret in response for secret in SECRETS)


def test_huge_query_strings_are_ignored_or_refused_and_the_server_goes_on(server):
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/e/perceptron", params={"junk": "x" * 8000}).status_code == 200
        too_long = http.get("/api/runs", params={"limit": "9" * 5000})  # past int's 4300 digits
        assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == [
            "query", "limit"]
        many = http.get("/mathml", params=[("latex", "x")] * 500)
        assert many.status_code == 422 and "at most" in many.json()["detail"]
    # A megabyte of request line: refused (400, or the connection dropped mid-send).
    response = raw_get(server, b"/e/perceptron?" + b"a=b&" * 250_000)
    assert response == b"" or response.startswith(b"HTTP/1.1 4"), response[:200]
    assert httpx.get(f"{server.url}/api/health").json()["status"] == "ok"


@pytest.fixture(scope="module")
def runs(server):
    """A finished run and one that keeps running while the resume tests connect to it."""
    with httpx.Client(base_url=server.url) as http:
        finished = start(http, steps=6)
        assert last_event(http, finished).type == "done"
        running = start(http, steps=100_000, delay_s=0.01)
        yield {"finished": finished, "running": running}
        http.delete(f"/api/runs/{running['id']}")


@pytest.mark.parametrize("last_event_id", ["", "-1", "1e3", "0x10", "3.5", "NaN", "9" * 5000,
                                           "999999999", "1,2", "null"])
@pytest.mark.parametrize("which", ["finished", "running"])
def test_a_malformed_resume_id_gets_a_snapshot(server, runs, which, last_event_id):
    run = runs[which]
    with httpx.Client(base_url=server.url) as http:
        events = iter_events(http, run["urls"]["events"], last_event_id=last_event_id,
                             timeout=30)
        first, second = next(events), next(events)
        assert first.type == "status"
        assert second.type == "frame" and second.data["op"] == "react"
        if which == "finished":
            assert list(events)[-1].type == "done"
        else:  # the snapshot, then the live run goes on
            live = next(e for e in events if e.type == "frame" and e.data["op"] == "extend")
            assert int(live.id) > 0
            events.close()
