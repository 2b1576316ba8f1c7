"""The REST + SSE API in-process (httpx through TestClient; every stream here is finite)."""

import numpy as np
import pytest

from app.client import iter_events
from app.encoding import decode
from engine.experiments import EXPERIMENTS


def start(client, experiment="ticker", **params):
    response = client.post("/api/runs", json={"experiment": experiment, "params": params})
    assert response.status_code == 201, response.text
    return response.json()


def events_of(client, run, **kwargs):
    return list(iter_events(client, run["urls"]["events"], **kwargs))


def test_experiments_list_carries_schemas_formulas_and_figures(client):
    listed = {e["slug"]: e for e in client.get("/api/experiments").json()}
    assert set(EXPERIMENTS) <= set(listed)
    for slug in EXPERIMENTS:
        entry = listed[slug]
        assert entry["params_schema"]["type"] == "object"
        assert "seed" in entry["params_schema"]["properties"]
        assert entry["formulas"] and all("<math" in f["mathml"] for f in entry["formulas"])
        assert entry["figures"] and all("data" in f for f in entry["figures"].values())
    assert client.get("/api/experiments/perceptron").json()["slug"] == "perceptron"
    assert client.get("/api/experiments/nope").status_code == 404


@pytest.mark.parametrize(("params", "field"), [
    ({"steps": 0}, "steps"),
    ({"steps": "many"}, "steps"),
    ({"delay_s": 99}, "delay_s"),
    ({"failure": "sometimes"}, "failure"),
    ({"wobble": 1}, "wobble"),
    ({"seed": -1}, "seed"),
])
def test_out_of_range_params_get_422_naming_the_field(client, params, field):
    response = client.post("/api/runs", json={"experiment": "ticker", "params": params})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "params", field]


def test_every_real_experiment_rejects_a_field_out_of_its_bounds(client):
    for slug, experiment in EXPERIMENTS.items():
        schema = experiment.Params.model_json_schema()["properties"]
        field, spec = next((k, v) for k, v in schema.items() if "maximum" in v)
        response = client.post("/api/runs", json={"experiment": slug,
                                                  "params": {field: spec["maximum"] + 1}})
        assert response.status_code == 422, (slug, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "params", field]


def test_unknown_experiment_and_malformed_body(client):
    assert client.post("/api/runs", json={"experiment": "nope"}).status_code == 404
    assert client.post("/api/runs", json={"params": {}}).status_code == 422
    assert client.post("/api/runs", content=b"{not json",
                       headers={"content-type": "application/json"}).status_code == 422


def test_a_run_streams_frames_then_done_and_its_result_is_readable(client):
    run = start(client, steps=30, points=20)
    assert run["urls"]["page"] == f"/runs/{run['id']}"
    events = events_of(client, run)
    types = [e.type for e in events]
    assert types[-1] == "done" and "frame" in types and "progress" in types
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids)
    result = client.get(f"/api/runs/{run['id']}").json()
    assert result["status"] == "done" and result["device"] == "cpu"
    assert result["progress"] == {"step": 30, "total": 30}
    assert all(check["passed"] for check in result["checks"])
    x = decode(result["figures"]["ticks"]["data"][0]["x"])  # sent as a typed array
    assert np.array_equal(x, np.arange(600.0))


def test_same_params_and_seed_give_the_same_frames(client):
    def frames(run):
        events = events_of(client, run, last_event_id="0")  # the whole log, however late
        return [e.data for e in events if e.type == "frame" and e.data["op"] != "react"]

    first, second = frames(start(client, steps=5, points=20, seed=7)), frames(
        start(client, steps=5, points=20, seed=7))
    third = frames(start(client, steps=5, points=20, seed=8))
    assert first == second and first != third


def test_a_late_subscriber_gets_the_final_state_then_done(client):
    run = start(client, steps=10, points=3)
    events_of(client, run)
    late = events_of(client, run)
    assert late[0].type == "status"
    react = [e for e in late if e.type == "frame"]
    assert react[0].data["op"] == "react"
    assert decode(react[0].data["update"]["data"][0]["x"]) == pytest.approx(list(range(30)))
    assert late[-1].type == "done"


def test_last_event_id_resumes_and_a_malformed_one_gets_a_snapshot(client):
    run = start(client, steps=10)
    full = events_of(client, run)
    resumed = events_of(client, run, last_event_id=full[3].id)
    assert [e.id for e in resumed] == [e.id for e in full[4:]]
    garbled = events_of(client, run, last_event_id="not-a-number")
    assert garbled[1].data["op"] == "react" and garbled[-1].type == "done"


def test_a_failing_run_ends_with_an_error_event_and_the_server_goes_on(client):
    run = start(client, steps=10, failure="raise")
    events = events_of(client, run)
    assert events[-1].type == "error"
    assert "ticker failed on purpose" in events[-1].data["message"]
    assert client.get(f"/api/runs/{run['id']}").json()["status"] == "error"
    assert events_of(client, start(client, steps=3))[-1].type == "done"


def test_unknown_runs_are_404_everywhere(client):
    assert client.get("/api/runs/nope").status_code == 404
    assert client.delete("/api/runs/nope").status_code == 404
    assert client.get("/api/runs/nope/events").status_code == 404


def test_openapi_documents_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/experiments", "/api/experiments/{slug}", "/api/runs",
                 "/api/runs/{run_id}", "/api/runs/{run_id}/events", "/api/health"):
        assert path in paths
    assert client.get("/docs").status_code == 200


def test_plotly_is_served_from_the_installed_package(client):
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and "plotly" in response.text[:2000].lower()


def test_health_names_the_device_and_the_workers(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert len(health["workers"]) == 2 and all(w["alive"] for w in health["workers"])


def test_the_default_plotly_template_is_served_once_not_in_every_figure(client):
    template = client.get("/vendor/plotly-template.json").json()
    assert "layout" in template and "data" in template
    for entry in client.get("/api/experiments").json():
        assert all("template" not in fig["layout"] for fig in entry["figures"].values())


def test_a_finished_run_answers_queries_as_runs_of_their_own(client):
    run = start(client, steps=4, points=20)
    total = events_of(client, run)[-1].data["metrics"]["total"]
    asked = client.post(f"/api/runs/{run['id']}/queries", json={"scale": 3, "step": 1})
    assert asked.status_code == 201, asked.text
    answer = asked.json()
    last = events_of(client, answer)[-1]
    assert last.type == "done" and last.data["metrics"]["scaled"] == pytest.approx(3 * total)
    record = client.get(f"/api/runs/{answer['id']}").json()
    assert record["parent"] == run["id"] and record["query"] == {"scale": 3.0, "step": 1}
    assert decode(record["figures"]["answer"]["data"][0]["y"]) == pytest.approx(
        [total, 3 * total])


def test_queries_are_validated_against_the_run_they_ask(client):
    run = start(client, steps=4)
    events_of(client, run)
    too_far = client.post(f"/api/runs/{run['id']}/queries", json={"step": 4})
    assert too_far.status_code == 422
    assert too_far.json()["detail"][0]["loc"] == ["body", "step"]
    assert "below the run's 4 steps" in too_far.json()["detail"][0]["msg"]
    assert client.post(f"/api/runs/{run['id']}/queries", json={"scale": 99}).status_code == 422
    assert client.post("/api/runs/nope/queries", json={}).status_code == 404


def test_only_finished_runs_of_experiments_with_queries_can_be_queried(client):
    failed = start(client, steps=4, failure="raise")
    events_of(client, failed)
    refused = client.post(f"/api/runs/{failed['id']}/queries", json={})
    assert refused.status_code == 409 and "only a finished run" in refused.json()["detail"]
    perceptron = start(client, "perceptron", s=20)
    events_of(client, perceptron)
    refused = client.post(f"/api/runs/{perceptron['id']}/queries", json={})
    assert refused.status_code == 409 and "takes no queries" in refused.json()["detail"]
    schemas = {e["slug"]: e["query_schema"] for e in client.get("/api/experiments").json()}
    assert schemas["perceptron"] is None and "scale" in schemas["ticker"]["properties"]
