"""The Dockerfile, built and run for real with podman: health, a run streamed to its end,
a non-root server, and run history that survives a container restart."""

import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from app.client import iter_events
from tests.container import podman as pm
from tests.servers import free_port

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/playground:test"


@pytest.fixture(scope="module")
def image() -> str:
    if not pm.available():
        if os.environ.get("CI"):
            pytest.fail("podman is not installed (.ci/run installs it with apt)")
        pytest.skip("podman is not installed (apt-get install podman runc debootstrap)")
    pm.ensure_base_image()
    built = pm.build(ROOT, IMAGE)
    assert built.returncode == 0, built.stderr[-4000:]
    return IMAGE


def wait_healthy(name: str, timeout: float = 180) -> float:
    """Seconds until the image's own HEALTHCHECK passes (podman runs it on request)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if pm.podman("healthcheck", "run", name, check=False).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{name} not healthy after {timeout} s")


@pytest.fixture
def container(image):
    name, volume, port = f"playground-{uuid.uuid4().hex[:8]}", f"pgdata-{uuid.uuid4().hex[:8]}", \
        free_port()
    pm.podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000",
              "-v", f"{volume}:/data", "-e", "PLAYGROUND_WORKERS=1", image)
    try:
        yield name, f"http://127.0.0.1:{port}"
    except BaseException:
        print(pm.podman("logs", name, check=False).stdout[-8000:])
        raise
    finally:
        pm.podman("rm", "-f", name, check=False)
        pm.podman("volume", "rm", "-f", volume, check=False)


def test_image_serves_runs_as_non_root_and_keeps_history_across_restart(container):
    name, url = container
    print(f"healthy after {wait_healthy(name):.1f} s")

    uid = pm.podman("exec", name, "id", "-u").stdout.strip()
    assert uid != "0"
    health = json.loads(pm.podman("inspect", name, "--format", "{{json .Config.Healthcheck}}")
                        .stdout)
    assert "api/health" in " ".join(health["Test"])

    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/api/health").json()["device"] == "cpu"
        assert "Perceptron" in http.get("/").text
        assert http.get("/vendor/plotly.min.js").status_code == 200
        run = http.post("/api/runs", json={"experiment": "perceptron", "params": {"seed": 1}})
        assert run.status_code == 201, run.text
        run = run.json()
        events = list(iter_events(http, run["urls"]["events"]))
        assert events[-1].type == "done"
        assert all(check["passed"] for check in events[-1].data["checks"])
        before = http.get(f"/api/runs/{run['id']}").json()

    pm.podman("restart", name, timeout=120)
    wait_healthy(name)
    with httpx.Client(base_url=url, timeout=60) as http:
        after = http.get(f"/api/runs/{run['id']}").json()
    assert after["status"] == "done" and after["checks"] == before["checks"]
