"""The optimizer race through the REST API: bad input is a 422 that names the field; a small
race runs to the end with its checks passed."""

import pytest

from app.client import iter_events


def post(client, **params):
    return client.post("/api/runs", json={"experiment": "optimizers", "params": params})


@pytest.mark.parametrize(("literal", "field"), [("NaN", "x0"), ("Infinity", "y0"),
                                                ("-Infinity", "x0"), ("1e309", "y0")])
def test_a_non_finite_start_is_a_422_naming_the_field(client, literal, field):
    # Python's JSON parser reads NaN, Infinity and overflowing numbers; the model refuses them.
    body = f'{{"experiment": "optimizers", "params": {{"{field}": {literal}}}}}'
    response = client.post("/api/runs", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "params", field]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"x0": "-Infinity"}, "x0"),
        ({"y0": "nan"}, "y0"),
        ({"x0": 10.5}, "x0"),
        ({"gd_eta": 0}, "gd_eta"),
        ({"momentum_eta": -0.01}, "momentum_eta"),
        ({"adam_eta": 0.0}, "adam_eta"),
        ({"steps": 5001}, "steps"),
        ({"steps": 0}, "steps"),
        ({"starts": 4097}, "starts"),
        ({"grid_size": 65}, "grid_size"),
        ({"mode": "cloud", "starts": 4096, "steps": 5000}, "starts"),
        ({"mode": "grid", "grid_size": 64, "steps": 4000}, "grid_size"),
        ({"quad_mu": 10.0, "quad_L": 1.0}, "quad_L"),
        ({"gd": False, "momentum": False, "nesterov": False, "adagrad": False,
          "rmsprop": False, "adam": False}, "sgd"),
        ({"surface": "moon"}, "surface"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, params, field):
    response = post(client, **params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "params", field]


def test_a_small_race_runs_through_the_api(client):
    response = post(client, steps=50, surface="saddle", x0=-2.0, y0=0.5)
    assert response.status_code == 201, response.text
    run = response.json()
    events = list(iter_events(client, run["urls"]["events"]))
    assert events[-1].type == "done"
    result = client.get(f"/api/runs/{run['id']}").json()
    assert result["status"] == "done"
    assert result["checks"] and all(check["passed"] for check in result["checks"])
    assert result["params"]["x0"] == -2.0
    assert set(result["figures"]) == {"surface", "loss", "distance", "theory"}
