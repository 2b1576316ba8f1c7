"""The diffusion experiment through the REST API: 422 for bad input, naming the field, and a
small run whose final figure keeps its animation frames (the slider) in the stored state."""

import pytest

from app.client import iter_events
from app.encoding import decode

SMALL = {"T": 50, "train_steps": 200, "samples": 200, "ddim_steps": 10, "width": 32}


@pytest.mark.parametrize(("params", "field", "reason"), [
    ({"T": 49}, "T", "greater than or equal to 50"),
    ({"T": 1001}, "T", "less than or equal to 1000"),
    ({"width": 1024}, "width", "less than or equal"),
    ({"train_steps": "many"}, "train_steps", "integer"),
    ({"lr": 0}, "lr", "greater than or equal"),
    ({"data": "mnist"}, "data", "swiss_roll"),
    ({"schedule": "sigmoid"}, "schedule", "linear"),
    ({"variance": "sigma"}, "variance", "beta"),
    ({"samples": 1_000_000}, "samples", "less than or equal"),
    ({"T": 100, "ddim_steps": 200}, "ddim_steps", "at most T = 100"),
    ({"data": "drawn"}, "shape", "at least 2 points"),
    ({"data": "drawn", "shape": "0.5,0.5"}, "shape", "at least 2 points"),
    ({"data": "drawn", "shape": "0,0;1"}, "shape", "point 2 is '1'"),
    ({"shape": "0,0;9,9"}, "shape", "outside"),
    ({"shape": "1,1;" * 600}, "shape", "at most 2000 characters"),
    ({"steps": 10}, "steps", "Extra inputs"),
])
def test_bad_params_get_422_naming_the_field(client, params, field, reason):
    response = client.post("/api/runs", json={"experiment": "diffusion", "params": params})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "params", field]
    assert reason in error["msg"]


def test_a_small_run_streams_and_keeps_its_slider(client):
    params = {**SMALL, "data": "drawn", "shape": "-1,-1;1,1;1,-1"}
    created = client.post("/api/runs", json={"experiment": "diffusion", "params": params})
    assert created.status_code == 201, created.text
    events = list(iter_events(client, created.json()["urls"]["events"], last_event_id="0"))
    assert events[-1].type == "done", events[-1].data
    frames = [e.data for e in events if e.type == "frame"]
    assert frames[0]["figure"] == "schedule" and frames[0]["op"] == "react"
    assert {"data", "forward", "loss", "samples", "quality"} <= {f["figure"] for f in frames}
    result = client.get(f"/api/runs/{created.json()['id']}").json()
    names = {c["name"] for c in result["checks"]}
    assert "Forward marginal x_t | x₀" in names and "x_T ≈ N(0, I)" in names
    samples = result["figures"]["samples"]
    assert samples["layout"]["sliders"][0]["steps"][-1]["args"][0] == ["t = 0"]
    assert len(samples["frames"]) == len(samples["layout"]["sliders"][0]["steps"])
    assert len(decode(samples["frames"][-1]["data"][0]["x"])) == params["samples"]
