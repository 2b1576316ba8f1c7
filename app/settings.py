"""Every knob of the server, read once from ``PLAYGROUND_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings. Each field is the environment variable ``PLAYGROUND_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="PLAYGROUND_", extra="ignore")

    db_path: Path = Field(
        Path("playground.db"), description="SQLite file that keeps finished runs."
    )
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")
    workers: int | None = Field(
        None, ge=1, le=64,
        description="Runs executing at once; default one per GPU, else one per spare CPU core.",
    )
    queue_size: int = Field(16, ge=0, le=10_000, description="Runs that may wait; then 429.")
    run_time_limit_s: float = Field(120.0, gt=0, description="Wall-time limit of one run.")
    stop_grace_s: float = Field(
        2.0, gt=0,
        description="How long a cancelled run may take to stop before its worker is killed.",
    )
    unwatched_grace_s: float = Field(
        30.0, gt=0,
        description="A run nobody subscribed to or polled for this long is cancelled.",
    )
    subscriber_buffer_bytes: int = Field(
        2 << 20, ge=1024,
        description="Event bytes buffered per SSE subscriber before its backlog is coalesced.",
    )
    event_log_bytes: int = Field(
        8 << 20, ge=1024, description="Recent event bytes kept per run for Last-Event-ID resume."
    )
    finished_in_memory: int = Field(
        32, ge=1, description="Finished runs kept in memory (the rest are read from SQLite)."
    )
    retry_after_s: int = Field(
        5, ge=1, description="Retry-After sent with 429 when the queue is full."
    )
    upload_max_bytes: int = Field(
        8 << 20, ge=1024, description="Largest accepted image upload, in bytes (then 413)."
    )
    upload_max_pixels: int = Field(
        25_000_000, ge=1, description="Largest accepted width × height of an upload (then 413); "
        "checked from the header, before any pixel is decoded.",
    )
    upload_max_side: int = Field(
        512, ge=16, le=4096, description="Uploads are shrunk to at most this many pixels a side."
    )
    uploads_kept: int = Field(
        256, ge=1, description="Uploaded pictures kept (the oldest are dropped first)."
    )
    extra_experiments: list[str] = Field(
        default_factory=list,
        description="Extra experiments to register, as 'package.module:attribute' import paths.",
    )
    api_token: SecretStr | None = Field(
        None, description="When set, every POST/DELETE under /api (starting, querying or "
        "cancelling runs, uploads) needs 'Authorization: Bearer <token>'; pages and GETs stay "
        "open. The browser asks for it once per tab.",
    )
    rate_limit_per_minute: float = Field(
        0.0, ge=0, description="Runs, queries and uploads one client address may start per "
        "minute (0: no limit). Behind a reverse proxy, run uvicorn with --forwarded-allow-ips "
        "so the address is the visitor's, not the proxy's.",
    )
    rate_limit_burst: int = Field(
        10, ge=1, description="Starts a client may make at once before the per-minute rate bites."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Other sites' origins allowed to call the API from a "
        "browser, e.g. ['https://notebooks.example']; none by default (CORS off).",
    )
    max_body_bytes: int = Field(
        64 << 10, ge=1024, description="Largest JSON request body (then 413); uploads have "
        "upload_max_bytes.",
    )

    def worker_count(self) -> int:
        """One worker per GPU when there is one, else one per core but one left to the server."""
        if self.workers is not None:
            return self.workers
        if self.device != "cpu":
            import torch  # only to count GPUs; torch.cuda.device_count() does not init CUDA

            if torch.cuda.is_available():
                return torch.cuda.device_count()
        return max(1, (os.cpu_count() or 2) - 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
