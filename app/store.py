"""Run history in one SQLite file, so a finished run's URL still opens after a restart.

One short-lived connection per call keeps the store safe to use from the run manager's
threads; WAL lets readers go on while a run is being written.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id           TEXT PRIMARY KEY,
    experiment   TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    finished_at  REAL,
    record       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id       TEXT PRIMARY KEY REFERENCES runs(id),
    data         BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    id           TEXT PRIMARY KEY,
    created_at   REAL NOT NULL,
    height       INTEGER NOT NULL,
    width        INTEGER NOT NULL,
    pixels       BLOB NOT NULL
)
"""


class RunStore:
    """Finished runs as JSON records (the same dict ``GET /api/runs/{id}`` returns)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False
        if (error := self._prepare()) is not None:
            log.error("run history unavailable, finished runs are kept in memory only until "
                      "%s can be written: %s", self.path, error)

    def _prepare(self) -> Exception | None:
        """Create the file and its tables; the error when that can't be done now (a read-only
        or locked file, a bad path): the server goes on, and every later call tries again."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=5.0)) as db, db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            return exc
        self._ready = True
        return None

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:  # if it still fails, the call's own error handling reports it
            self._prepare()
        return sqlite3.connect(self.path, timeout=5.0)

    def save(self, record: dict[str, Any], record_json: str) -> bool:
        """Insert or replace a run; False (logged, not raised) when the file can't be written."""
        try:
            with closing(self._connect()) as db, db:
                db.execute(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                    (record["id"], record["experiment"], record["status"],
                     record["created_at"], record["finished_at"], record_json),
                )
            return True
        except sqlite3.Error as exc:
            log.error("could not save run %s to %s: %s", record["id"], self.path, exc)
            return False

    def save_artifact(self, run_id: str, data: bytes) -> bool:
        """Keep what queries on a finished run need (e.g. its trained weights)."""
        try:
            with closing(self._connect()) as db, db:
                db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?)", (run_id, data))
            return True
        except sqlite3.Error as exc:
            log.error("could not save the artifact of run %s to %s: %s", run_id, self.path, exc)
            return False

    def load_artifact(self, run_id: str) -> bytes | None:
        try:
            with closing(self._connect()) as db:
                row = db.execute("SELECT data FROM artifacts WHERE run_id = ?",
                                 (run_id,)).fetchone()
        except sqlite3.Error as exc:
            log.error("could not read the artifact of run %s from %s: %s", run_id, self.path, exc)
            return None
        return bytes(row[0]) if row else None

    def save_upload(self, upload_id: str, pixels: np.ndarray, keep: int) -> bool:
        """Keep an uploaded picture (8-bit gray), and only the newest ``keep`` of them."""
        height, width = pixels.shape
        try:
            with closing(self._connect()) as db, db:
                db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?)",
                           (upload_id, time.time(), height, width,
                            np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()))
                db.execute("DELETE FROM uploads WHERE id NOT IN (SELECT id FROM uploads "
                           "ORDER BY created_at DESC LIMIT ?)", (keep,))
            return True
        except sqlite3.Error as exc:
            log.error("could not save upload %s to %s: %s", upload_id, self.path, exc)
            return False

    def load_upload(self, upload_id: str) -> np.ndarray | None:
        try:
            with closing(self._connect()) as db:
                row = db.execute("SELECT height, width, pixels FROM uploads WHERE id = ?",
                                 (upload_id,)).fetchone()
        except sqlite3.Error as exc:
            log.error("could not read upload %s from %s: %s", upload_id, self.path, exc)
            return None
        if row is None:
            return None
        height, width, pixels = row
        return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width)

    def load(self, run_id: str) -> dict[str, Any] | None:
        try:
            with closing(self._connect()) as db:
                row = db.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
        except sqlite3.Error as exc:
            log.error("could not read run %s from %s: %s", run_id, self.path, exc)
            return None
        return json.loads(row[0]) if row else None

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: id, experiment, status and times (no figures)."""
        try:
            with closing(self._connect()) as db:
                rows = db.execute(
                    "SELECT id, experiment, status, created_at, finished_at FROM runs "
                    "ORDER BY created_at DESC LIMIT ?", (limit,),
                ).fetchall()
        except sqlite3.Error as exc:
            log.error("could not list runs from %s: %s", self.path, exc)
            return []
        keys = ("id", "experiment", "status", "created_at", "finished_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]
