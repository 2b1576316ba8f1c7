"""Shared fixtures: an in-process app (TestClient) and real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.servers import PLUGIN, Server


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """In-process runs get one torch thread, as the server's workers do (app/workers.py): the
    experiments' small tensor ops gain nothing from more, and on a busy 2-core machine two
    threads waiting on each other make them ~10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def client(tmp_path_factory) -> Iterator[TestClient]:
    """One app for the in-process API tests: two workers, the ticker plug-in, a temp database."""
    settings = Settings(db_path=tmp_path_factory.mktemp("db") / "runs.db", workers=2,
                        extra_experiments=[PLUGIN], unwatched_grace_s=30)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def make_server(tmp_path) -> Iterator[Callable[..., Server]]:
    """Start real servers with chosen settings (``PLAYGROUND_*`` names, lower-case ok)."""
    servers: list[Server] = []

    def start(db_path: Path | None = None, **settings) -> Server:
        env = {f"PLAYGROUND_{k.upper()}": str(v) for k, v in settings.items()}
        server = Server(env, db_path or tmp_path / "runs.db").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[str]:
    """One real server for the browser tests; yields its base URL."""
    server = Server({"PLAYGROUND_WORKERS": "1"}, tmp_path_factory.mktemp("live") / "runs.db")
    server.start()
    yield server.url
    server.stop()
