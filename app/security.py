"""What a public deployment needs in front of the routes: security headers on every response,
an optional API token for writes, a per-client rate limit on starting runs, a cap on JSON
request bodies and CORS (off unless origins are configured).

It is one pure ASGI middleware rather than FastAPI dependencies, so ``app/api.py`` stays about
runs, and rather than Starlette's ``BaseHTTPMiddleware``, so Server-Sent-Event streams pass
through untouched (nothing buffers them; a client disconnect still reaches the route).

* Headers: a Content-Security-Policy that lets pages load scripts, styles, fonts and data
  from this origin only (see ``PAGE_POLICY`` for the two allowances Plotly.js needs), plus
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy``, ``X-Frame-Options: DENY`` and
  ``frame-ancestors 'none'``. The API docs (Swagger UI, ReDoc) load from a CDN and carry one
  inline script; they get their own policy, hashing exactly the inline scripts they serve.
* Token: with ``api_token`` set, every POST, PUT, PATCH and DELETE under ``/api`` needs
  ``Authorization: Bearer <token>`` (401 otherwise); pages, streams and GETs stay readable.
  The browser asks for the token once and keeps it for the tab (``static/api.js``).
* Rate limit: ``rate_limit_per_minute`` starts (runs, queries, uploads) per client address,
  as a token bucket of ``rate_limit_burst``; past it, 429 with Retry-After. The client is
  ``scope["client"]``: behind a reverse proxy, run uvicorn with ``--forwarded-allow-ips`` so
  that is the visitor, not the proxy. IPv6 clients are bucketed by /64, what one host gets.
* Bodies: JSON routes take at most ``max_body_bytes`` (413) and only as JSON (415), which
  also keeps other sites' pages from posting to the API without a CORS preflight. Routes
  with a raw body and a cap of their own (``RAW_BODY_ROUTES``) are left to that cap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings

# Plotly.js adds <style> elements for its own rules (modebar, hover labels) and sets style
# attributes on the SVG it draws, so styles need 'unsafe-inline' (styles cannot run code);
# heatmaps and images are drawn on a canvas and placed in the SVG as data: URIs, and the
# pages' favicon is an empty data: URI. Nothing else comes from anywhere but this origin.
PAGE_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
# Swagger UI and ReDoc as FastAPI serves them: bundles and styles from jsDelivr, fonts from
# Google, the FastAPI favicon; ReDoc runs a web worker from a blob: URL.
DOCS_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self' https://cdn.jsdelivr.net {hashes}",
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com",
    "font-src https://fonts.gstatic.com",
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
    "worker-src blob:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POSTs that start work on the server: a run, a query on a finished run, an upload.
STARTING = re.compile(r"/api/(runs|runs/[^/]+/queries|uploads)/?")
# Raw (non-JSON) bodies whose routes check their own size and content.
RAW_BODY_ROUTES = ("/api/uploads",)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


class RateLimiter:
    """Token buckets by client: ``burst`` starts at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def take(self, client: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until the next token."""
        now = self.clock()
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_clients:
                self._forget_full(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop clients whose bucket has refilled (they are as new), so memory stays bounded."""
        for client, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate >= self.burst:
                del self._buckets[client]


def client_key(scope: Scope) -> str:
    """The client's address; IPv6 by its /64, the block one host or home usually gets."""
    host = (scope.get("client") or ("unknown", 0))[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def docs_policy(html: bytes) -> str:
    """The docs pages' policy, allowing exactly the inline scripts in ``html`` by hash."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return DOCS_POLICY.format(hashes=hashes).replace("  ", " ")


def _route_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None
                  ) -> None:
    """A JSON error in FastAPI's shape, ``{"detail": ...}``."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """Headers on every response; token, rate limit and body checks before the routes."""

    def __init__(self, app: ASGIApp, settings: Settings, docs_paths: tuple[str, ...] = ()
                 ) -> None:
        self.app = app
        token = settings.api_token
        self.token = token.get_secret_value().encode() if token else None  # "" is no token
        self.limiter = (RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
                        if settings.rate_limit_per_minute > 0 else None)
        self.max_body = settings.max_body_bytes
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = _route_path(scope), scope["method"]
        send = self._docs_sender(send) if path in self.docs_paths else self._page_sender(send)
        headers = Headers(scope=scope)
        if method in WRITE_METHODS and path.startswith("/api/"):
            if (refused := self._unauthorised(headers)) is not None:
                await _answer(send, 401, refused, {"WWW-Authenticate": "Bearer"})
                return
            if self.limiter is not None and method == "POST" and STARTING.fullmatch(path):
                wait = self.limiter.take(client_key(scope))
                if wait > 0:
                    retry = max(1, math.ceil(wait))
                    await _answer(send, 429, "too many runs started from your address; "
                                             f"retry in {retry} s", {"Retry-After": str(retry)})
                    return
        if method in WRITE_METHODS and not path.startswith(RAW_BODY_ROUTES):
            receive = await self._json_body(headers, receive, send)
            if receive is None:
                return
        await self.app(scope, receive, send)

    def _unauthorised(self, headers: Headers) -> str | None:
        """Why a write is refused (a message for the 401), or None when it may go on."""
        if self.token is None:
            return None
        scheme, _, sent = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not sent.strip():
            return ("this server needs an API token to start or cancel runs: "
                    "send the header 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(sent.strip().encode(), self.token):
            return "the API token is not valid for this server"
        return None

    async def _json_body(self, headers: Headers, receive: Receive, send: Send
                         ) -> Receive | None:
        """Read the body up to the cap (the routes would read it whole anyway) and hand it on;
        None when the request was refused with 413 or 415."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await _answer(send, 413, f"the request body is over {self.max_body} bytes")
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return _replay(b"", message, receive)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                await _answer(send, 413, f"the request body is over {self.max_body} bytes")
                return None
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not _is_json(headers.get("content-type", "")):
            await _answer(send, 415, "send the request body as JSON "
                                     "(Content-Type: application/json)")
            return None
        return _replay(body, None, receive)

    def _page_sender(self, send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in {"Content-Security-Policy": PAGE_POLICY, **HEADERS}.items():
                    headers.setdefault(name, value)
            await send(message)
        return send_with_headers

    def _docs_sender(self, send: Send) -> Send:
        """Hold the (small) docs page until its body is known, to hash its inline scripts."""
        start: Message | None = None
        body: list[bytes] = []

        async def send_docs(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            html = b"".join(body)
            headers = MutableHeaders(scope=start)
            for name, value in {"Content-Security-Policy": docs_policy(html), **HEADERS}.items():
                headers.setdefault(name, value)
            await send(start)
            await send({"type": "http.response.body", "body": html})
        return send_docs


def _replay(body: bytes, then: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives the route the body already read, then the client's own."""
    pending: list[Message] = [then or {"type": "http.request", "body": body,
                                       "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()
    return replay


def _document(app: FastAPI, settings: Settings) -> None:
    """Add the middleware's answers to the OpenAPI schema, so clients and fuzzers know them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/api/"):
                continue
            for method, operation in operations.items():
                if method.upper() not in WRITE_METHODS:
                    continue
                responses = operation.setdefault("responses", {})
                if settings.api_token:
                    responses.setdefault("401", {"description": "No valid API token"})
                    operation["security"] = [{"bearer": []}]
                if "requestBody" in operation and not path.startswith(RAW_BODY_ROUTES):
                    responses.setdefault("400", {"description": "The body is not UTF-8 text"})
                    responses.setdefault("413", {"description": "The body is too large"})
                    responses.setdefault("415", {"description": "The body is not JSON"})
                if method == "post" and STARTING.fullmatch(path.replace("{run_id}", "x")):
                    responses.setdefault("429", {"description": "Too many starts; see "
                                                                "Retry-After"})
        if settings.api_token:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer",
                "description": "The server's API token (setting PLAYGROUND_API_TOKEN)."}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI, settings: Settings) -> None:
    """Put the security middleware (and CORS, when origins are configured) in front of ``app``."""
    docs = tuple(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
                 if p)
    app.add_middleware(SecurityMiddleware, settings=settings, docs_paths=docs)
    if settings.cors_origins:  # outermost, so refusals above still carry CORS headers
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["Location", "Retry-After"], max_age=600,
        )
    _document(app, settings)
