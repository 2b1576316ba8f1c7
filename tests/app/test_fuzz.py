"""Property-based fuzzing: the whole REST API from its OpenAPI schema (schemathesis), and every
experiment's parameters from their JSON Schema (hypothesis strategies built from it here).

The app is served without its lifespan, so no worker starts: a run that is accepted waits in
the queue and is cancelled, which is all the API promises at submission (bounds checked,
figures built, 201). Runs that do execute are covered by test_api.py and test_server.py;
``test_accepted_params_run_cleanly`` runs a few fuzzed ones for real, under a short limit.
Example counts keep the whole file well under a minute on two shared cores.
"""

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.client import iter_events
from app.main import create_app
from app.settings import Settings
from engine.experiments import EXPERIMENTS
from tests.plugin_experiments import ticker
from tests.servers import PLUGIN

FUZZ = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
EXPERIMENT_SLUGS = [*EXPERIMENTS, ticker.slug]


def without_lifespan(app):
    """``app`` minus its startup (no worker processes): runs are accepted and queued only."""

    async def serve(scope, receive, send):
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return

    serve.state = app.state
    return serve


# Built at import: schemathesis makes one test per operation at collection, and its fixture-
# based loader does not work with pytest 9 (it sets ``node._nodeid``, which is gone).
DB_DIR = tempfile.TemporaryDirectory(prefix="fuzz-")
APP = create_app(Settings(db_path=Path(DB_DIR.name) / "runs.db", extra_experiments=[PLUGIN],
                          queue_size=10_000))
schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan(APP))


@pytest.fixture(scope="module")
def http():
    return TestClient(APP)


def errors_are_json_with_a_message(ctx, response, case):
    """Every 4xx says what is wrong, as JSON: a ``detail`` text or a list naming the input."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]  # each header: its values
    assert content_type.startswith("application/json"), (
        f"{response.status_code} is not JSON but {content_type!r}")
    detail = json.loads(response.content)["detail"]
    if isinstance(detail, str):
        assert detail.strip(), "empty error message"
    else:
        assert detail and all(e["msg"] and isinstance(e["loc"], list) for e in detail), detail
    return True


@schema.parametrize()
@FUZZ
def test_the_api_answers_any_request_without_5xx_and_as_documented(case):
    case.call_and_validate(checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance, errors_are_json_with_a_message,
    ])


# ----- every experiment's parameters ------------------------------------------------------

def params_schema(slug: str) -> dict[str, Any]:
    return registry()[slug].Params.model_json_schema()


def registry():
    return {**EXPERIMENTS, ticker.slug: ticker}


def valid(spec: dict[str, Any]) -> st.SearchStrategy:
    """Values one property's JSON Schema accepts, for the shapes Params use (bounded numbers,
    choices, flags, short or patterned strings); a new shape fails here, to be added."""
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    kind = spec.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        step = spec.get("multipleOf", 1)
        return st.integers(math.ceil(spec["minimum"] / step),
                           math.floor(spec["maximum"] / step)).map(lambda n: n * step)
    if kind == "number":
        return st.floats(spec["minimum"], spec["maximum"], allow_nan=False)
    if kind == "string" and "pattern" in spec:
        return st.from_regex(spec["pattern"], fullmatch=True).filter(
            lambda text: len(text) <= spec.get("maxLength", math.inf))
    if kind == "string":
        return st.text(max_size=spec["maxLength"])
    raise AssertionError(f"no strategy for the parameter schema {spec}")


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Parameter sets valid by an experiment's Params schema; left-out fields take defaults."""
    return st.fixed_dictionaries({}, optional={name: valid(spec) for name, spec
                                               in schema["properties"].items()})


def names_a_field(error: dict[str, Any], fields: set[str]) -> bool:
    """The field is named where the client can act on it: in ``loc``, or, for a rule across
    fields (``n_min <= n_max``), in the message."""
    loc = error["loc"]
    if loc[:2] != ["body", "params"]:
        return False
    return (len(loc) > 2 and loc[2] in fields) or any(f in error["msg"] for f in fields)


@pytest.mark.parametrize("slug", EXPERIMENT_SLUGS)
def test_params_valid_by_the_schema_are_accepted(http, slug):
    schema = params_schema(slug)
    fields = set(schema["properties"])

    @settings(max_examples=20, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(from_schema(schema))
    def accepted(params):
        response = http.post("/api/runs", json={"experiment": slug, "params": params})
        if response.status_code == 422:  # a rule the schema can't state, or a missing upload
            assert all(names_a_field(e, fields) for e in response.json()["detail"]), response.text
            return
        assert response.status_code == 201, response.text
        run = response.json()
        assert http.delete(run["urls"]["self"]).json()["status"] == "cancelled"

    accepted()


def outside(spec: dict[str, Any]) -> st.SearchStrategy:
    """Values a field with this JSON Schema must reject."""
    wrong_type = st.just("not a number") if spec.get("type") in ("integer", "number") \
        else st.just({"a": "dict"})
    options = [wrong_type]
    integer = spec.get("type") == "integer"
    if "maximum" in spec:
        top = spec["maximum"]
        options.append(st.integers(min_value=math.floor(top) + 1, max_value=10**12) if integer
                       else st.floats(min_value=top, exclude_min=True, max_value=1e12))
    if "minimum" in spec:
        bottom = spec["minimum"]
        options.append(st.integers(max_value=math.ceil(bottom) - 1, min_value=-10**12) if integer
                       else st.floats(max_value=bottom, exclude_max=True, min_value=-1e12))
    if "exclusiveMinimum" in spec:
        options.append(st.just(spec["exclusiveMinimum"]))
    if "enum" in spec:
        options.append(st.text(max_size=12).filter(lambda v: v not in spec["enum"]))
    if "maxLength" in spec:
        options.append(st.just("x" * (spec["maxLength"] + 1)))
    if "pattern" in spec:
        options.append(st.just("../../../etc/passwd"))
    return st.one_of(options)


@pytest.mark.parametrize("slug", EXPERIMENT_SLUGS)
def test_params_out_of_the_schema_get_422_naming_the_field(http, slug):
    properties = params_schema(slug)["properties"]
    fields = sorted(properties)

    @settings(max_examples=20, deadline=None, database=None)
    @given(st.data())
    def rejected(data):
        field = data.draw(st.sampled_from(fields))
        value = data.draw(outside(properties[field]))
        response = http.post("/api/runs", json={"experiment": slug, "params": {field: value}})
        assert response.status_code == 422, (field, value, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "params", field], response.text

    rejected()


def test_accepted_params_run_cleanly(tmp_path):
    """A few fuzzed parameter sets executed for real: each ends with ``done``, or is stopped by
    the time limit (kept short here), never with any other error."""
    settings_ = Settings(db_path=tmp_path / "runs.db", workers=2, run_time_limit_s=4,
                         stop_grace_s=1, extra_experiments=[PLUGIN])
    slugs = st.sampled_from(sorted(EXPERIMENTS))
    with TestClient(create_app(settings_)) as client:

        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(slugs.flatmap(lambda s: st.tuples(st.just(s), from_schema(params_schema(s)))))
        def run_cleanly(drawn):
            slug, params = drawn
            response = client.post("/api/runs", json={"experiment": slug, "params": params})
            if response.status_code == 422:
                return
            assert response.status_code == 201, response.text
            last = list(iter_events(client, response.json()["urls"]["events"]))[-1]
            assert last.type == "done" or "time limit" in last.data["message"], (
                slug, params, last.data)

        run_cleanly()
