"""A small Python client for the playground's REST + SSE API (scripts, notebooks, tests).

    >>> from app.client import iter_events
    >>> import httpx
    >>> with httpx.Client(base_url="http://127.0.0.1:8000") as http:
    ...     run = http.post("/api/runs", json={"experiment": "perceptron", "params": {}}).json()
    ...     for event in iter_events(http, run["urls"]["events"]):
    ...         print(event.type, event.data)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL = ("done", "error")


@dataclass(frozen=True)
class ServerEvent:
    type: str
    id: str | None
    data: Any


def parse_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Parse ``text/event-stream`` lines (per the HTML spec) into events; comments are skipped."""
    event_type, event_id, data = "message", None, []
    for line in lines:
        if line == "":
            if data:
                yield ServerEvent(event_type, event_id, json.loads("\n".join(data)))
            event_type, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event_type = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


def iter_events(http: httpx.Client, url: str, last_event_id: str | None = None,
                timeout: float = 120.0) -> Iterator[ServerEvent]:
    """Stream one run's events until ``done`` or ``error`` (or the server closes the stream)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    with http.stream("GET", url, headers=headers, timeout=timeout) as response:
        response.raise_for_status()
        for event in parse_sse(response.iter_lines()):
            yield event
            if event.type in TERMINAL:
                return
