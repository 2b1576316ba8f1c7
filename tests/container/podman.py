"""Podman set up for this kind of machine (see shared CONTAINERS.md): no Docker engine, no
reachable registry, hybrid cgroups. Podman gets its own storage and config in a scratch
folder, and the Debian base image is made locally with debootstrap when it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRATCH = Path(os.environ.get("PLAYGROUND_PODMAN_DIR", "/var/tmp/playground-podman"))
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
LOCAL_WHEELS = Path("/opt/wheels")  # where this machine keeps the CPU torch wheel

_STORAGE = """[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""
_CONTAINERS = """[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def available() -> bool:
    return shutil.which("podman") is not None


def environment() -> dict[str, str]:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    storage, containers = SCRATCH / "storage.conf", SCRATCH / "containers.conf"
    storage.write_text(_STORAGE.format(root=SCRATCH))
    containers.write_text(_CONTAINERS)
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage),
            "CONTAINERS_CONF": str(containers)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=environment(), capture_output=True, text=True,
                          timeout=timeout, check=check)


def ensure_base_image() -> None:
    """Make ``debian:bookworm-slim`` from debootstrap when no registry can provide it."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    rootfs = SCRATCH / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs),
                    "http://deb.debian.org/debian"], check=True, capture_output=True, timeout=900)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    # Outgoing HTTPS here passes a proxy with its own CA: pip inside the build needs it.
    certs = rootfs / "etc/ssl/certs"
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", certs / "ca-certificates.crt")
    local = rootfs / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(crt, local / crt.name)
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        subprocess.run(["podman", "import", "-", "localhost/debian:bookworm-slim"],
                       stdin=tar.stdout, env=environment(), check=True, capture_output=True,
                       timeout=600)
        tar.stdout.close()
    podman("tag", "localhost/debian:bookworm-slim", BASE_IMAGE)
    shutil.rmtree(rootfs, ignore_errors=True)


def build(context: Path, tag: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """``podman build`` in Docker format (which keeps HEALTHCHECK), with the local CPU wheel."""
    args = ["build", "--pull=never", "--format", "docker", "-t", tag]
    if any(LOCAL_WHEELS.glob("torch-*.whl")):
        args += ["-v", f"{LOCAL_WHEELS}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels"]
    built = podman(*args, str(context), timeout=timeout)
    podman("image", "prune", "-f", check=False)  # the replaced image and the build stage
    return built
