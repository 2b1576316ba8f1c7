"""app.security in front of the real app: headers, API token, rate limit, CORS, body caps,
and what must never happen (user input evaluated as code, or echoed into a page as markup).

Apps built here are not started (no ``with TestClient``): their runs are accepted and queued
but no worker executes them, which is all these checks need and keeps them fast.
"""

import ast
import base64
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.security import PAGE_POLICY, RateLimiter, client_key
from app.settings import Settings
from tests.servers import PLUGIN, ROOT

TOKEN = "correct-horse-battery-staple"
RUN = {"experiment": "ticker", "params": {"steps": 3}}


def unstarted(tmp_path, client=("203.0.113.7", 50000), **settings) -> TestClient:
    app = create_app(Settings(db_path=tmp_path / "runs.db", extra_experiments=[PLUGIN],
                              queue_size=10_000, **settings))
    return TestClient(app, client=client)


def policy(response) -> dict[str, list[str]]:
    header = response.headers["content-security-policy"]
    return {name: values for name, *values in (d.split() for d in header.split(";"))}


# ----- headers ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/e/perceptron", "/e/no-such-thing", "/static/api.js",
                                  "/vendor/plotly.min.js", "/api/health", "/api/runs/nope",
                                  "/openapi.json"])
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    assert response.headers["content-security-policy"] == PAGE_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_the_policy_lets_only_the_sites_own_scripts_run(client):
    directives = policy(client.get("/e/perceptron"))
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    # What Plotly.js needs (see app.security): inline styles and data: images, nothing remote.
    assert directives["style-src"] == ["'self'", "'unsafe-inline'"]
    assert directives["img-src"] == ["'self'", "data:"]
    assert not any("http" in value for values in directives.values() for value in values)


@pytest.mark.parametrize("path", ["/", "/e/perceptron", "/e/ticker"])
def test_pages_hold_no_script_the_policy_would_block(client, path):
    html = client.get(path).text
    for attributes in re.findall(r"<script\b([^>]*)>", html):  # modules, or data that never runs
        assert 'type="application/json"' in attributes or re.search(
            r'src="(http://testserver)?/(static|vendor)/', attributes)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers either


def test_stream_responses_carry_the_headers_too(client):
    run = client.post("/api/runs", json=RUN).json()
    with client.stream("GET", run["urls"]["events"]) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["content-security-policy"] == PAGE_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"


def test_the_api_docs_get_a_policy_that_hashes_their_one_inline_script(client):
    response = client.get("/docs")
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    directives = policy(response)
    assert directives["script-src"] == ["'self'", "https://cdn.jsdelivr.net", f"'sha256-{digest}'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert client.get("/redoc").headers["x-frame-options"] == "DENY"


# ----- API token ----------------------------------------------------------------------------

def test_with_a_token_writes_need_it_and_everything_else_stays_readable(tmp_path):
    http = unstarted(tmp_path, api_token=TOKEN)
    missing = http.post("/api/runs", json=RUN)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <token>" in missing.json()["detail"]
    wrong = http.post("/api/runs", json=RUN, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    assert http.post("/api/runs", json=RUN, headers={"Authorization": TOKEN}).status_code == 401

    authorised = {"Authorization": f"Bearer {TOKEN}"}
    run = http.post("/api/runs", json=RUN, headers=authorised)
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    for path in ("/", "/e/ticker", f"/runs/{run_id}", f"/api/runs/{run_id}", "/api/experiments",
                 "/api/health", "/api/runs", "/static/api.js", "/openapi.json"):
        assert http.get(path).status_code == 200, path
    assert http.delete(f"/api/runs/{run_id}").status_code == 401
    assert http.post(f"/api/runs/{run_id}/queries", json={}).status_code == 401
    assert http.post("/api/uploads", content=png_bytes(8),
                     headers={"Content-Type": "image/png"}).status_code == 401
    assert http.delete(f"/api/runs/{run_id}", headers=authorised).status_code == 202


def test_without_a_token_the_api_is_open_and_an_empty_token_means_none(tmp_path):
    assert unstarted(tmp_path).post("/api/runs", json=RUN).status_code == 201
    assert unstarted(tmp_path, api_token="").post("/api/runs", json=RUN).status_code == 201


def test_openapi_names_the_bearer_scheme_only_when_a_token_is_set(tmp_path):
    with_token = unstarted(tmp_path, api_token=TOKEN).get("/openapi.json").json()
    assert with_token["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    start = with_token["paths"]["/api/runs"]["post"]
    assert start["security"] == [{"bearer": []}] and "401" in start["responses"]
    assert "security" not in with_token["paths"]["/api/runs"]["get"]
    open_api = unstarted(tmp_path).get("/openapi.json").json()
    assert "securitySchemes" not in open_api.get("components", {})
    assert "401" not in open_api["paths"]["/api/runs"]["post"]["responses"]


# ----- rate limit ---------------------------------------------------------------------------

def test_starting_runs_is_rate_limited_per_client_with_retry_after(tmp_path):
    http = unstarted(tmp_path, rate_limit_per_minute=6, rate_limit_burst=3)
    assert [http.post("/api/runs", json=RUN).status_code for _ in range(3)] == [201] * 3
    refused = http.post("/api/runs", json=RUN)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 10  # one token every 10 s
    assert "too many runs" in refused.json()["detail"]
    for _ in range(20):  # reading is never limited
        assert http.get("/api/experiments/ticker").status_code == 200
    uploaded = http.post("/api/uploads", content=png_bytes(8),
                         headers={"Content-Type": "image/png"})
    assert uploaded.status_code == 429  # uploads count as starts
    other = TestClient(http.app, client=("198.51.100.9", 50000))  # another address: own bucket
    assert other.post("/api/runs", json=RUN).status_code == 201


def test_the_rate_limit_is_off_by_default(tmp_path):
    http = unstarted(tmp_path)
    assert all(http.post("/api/runs", json=RUN).status_code == 201 for _ in range(30))


def test_token_buckets_refill_at_the_rate_and_stay_bounded():
    now = [0.0]
    limiter = RateLimiter(per_minute=30, burst=2, clock=lambda: now[0], max_clients=100)
    assert limiter.take("a") == limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(2.0)  # 30/min: one token every 2 s
    now[0] = 1.0
    assert limiter.take("a") == pytest.approx(1.0)
    now[0] = 2.0
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    for n in range(1000):  # a sweep of addresses that each start once, then go quiet
        now[0] += 1.0
        assert limiter.take(f"10.0.{n // 256}.{n % 256}") == 0.0
    assert len(limiter._buckets) <= 101


def test_clients_are_keyed_by_address_and_ipv6_by_its_64_block():
    def key(host):
        return client_key({"client": (host, 1)})

    assert key("192.0.2.1") != key("192.0.2.2")
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") != key("2001:db8:1:3::1")
    assert key("::ffff:192.0.2.1") == key("192.0.2.1")
    assert client_key({"client": None}) == "unknown"


# ----- CORS ---------------------------------------------------------------------------------

def preflight(http, origin):
    return http.options("/api/runs", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_is_off_by_default(client):
    response = client.post("/api/runs", json=RUN, headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in preflight(client, "https://elsewhere.example"
                                                          ).headers


def test_cors_origins_are_opt_in_and_only_those(tmp_path):
    http = unstarted(tmp_path, cors_origins=["https://notebooks.example"], api_token=TOKEN)
    allowed = preflight(http, "https://notebooks.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://notebooks.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = preflight(http, "https://elsewhere.example")
    assert "access-control-allow-origin" not in refused.headers
    # A refusal still reaches the allowed site's script, so it can show why.
    unauthorised = http.post("/api/runs", json=RUN, headers={"Origin": "https://notebooks.example"})
    assert unauthorised.status_code == 401
    assert unauthorised.headers["access-control-allow-origin"] == "https://notebooks.example"


# ----- request bodies -----------------------------------------------------------------------

def png_bytes(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_json_bodies_over_the_cap_are_refused_with_413(tmp_path):
    http = unstarted(tmp_path, max_body_bytes=2048)
    padded = {"experiment": "ticker", "params": {"shape": "1 2 " * 1000}}
    declared = http.post("/api/runs", json=padded)
    assert declared.status_code == 413 and "over 2048 bytes" in declared.json()["detail"]

    def chunks():  # no Content-Length: the cap counts what streams in
        yield b'{"experiment": "ticker", "params": {"shape": "'
        for _ in range(100):
            yield b"1 2 " * 16
        yield b'"}}'

    streamed = http.post("/api/runs", content=chunks(),
                         headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert http.post("/api/runs", json=RUN).status_code == 201


def test_json_routes_take_json_only(tmp_path):
    http = unstarted(tmp_path)
    body = b'{"experiment": "ticker", "params": {}}'
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = http.post("/api/runs", content=body, headers=headers)
        assert response.status_code == 415, content_type
        assert "application/json" in response.json()["detail"]
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = http.post("/api/runs", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 201, content_type


def test_uploads_keep_their_own_larger_cap(tmp_path):
    http = unstarted(tmp_path, max_body_bytes=2048)
    picture = png_bytes(96)
    assert len(picture) > 2048
    response = http.post("/api/uploads", content=picture, headers={"Content-Type": "image/png"})
    assert response.status_code == 201, response.text
    small = unstarted(tmp_path, upload_max_bytes=4096)
    refused = small.post("/api/uploads", content=picture, headers={"Content-Type": "image/png"})
    assert refused.status_code == 413


# ----- nothing the user sends is run as code or served as markup ----------------------------

UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}
UNSAFE_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "subprocess", "yaml"}


def server_sources() -> list[Path]:
    return sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "engine").rglob("*.py")])


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


@pytest.mark.parametrize("source", server_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_server_never_evaluates_or_unpickles_input(source):
    tree = ast.parse(source.read_text(), filename=str(source))
    for node in ast.walk(tree):
        where = f"{source.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in UNSAFE_CALLS, where
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not {n.split(".")[0] for n in names} & UNSAFE_MODULES, where
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            if (owner, node.func.attr) == ("torch", "load"):
                assert ast.unparse(keyword(node, "weights_only")) == "True", where
            if (owner, node.func.attr) == ("np", "load"):
                assert ast.unparse(keyword(node, "allow_pickle")) == "False", where
            assert (owner, node.func.attr) not in {("os", "system"), ("os", "popen")}, where


def test_markup_and_code_in_parameters_stay_inert_text(tmp_path):
    http = unstarted(tmp_path)
    payload = "<script>alert(1)</script>__import__('os').system('touch /tmp/pwned')"
    run = http.post("/api/runs", json={"experiment": "ticker", "params": {"shape": payload}})
    assert run.status_code == 201
    page = http.get(f"/runs/{run.json()['id']}").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    missing = http.get("/e/<img src=x onerror=alert(1)>")
    assert missing.status_code == 404 and "<img src=x" not in missing.text
    assert http.get(f"/api/runs/{run.json()['id']}").json()["params"]["shape"] == payload
