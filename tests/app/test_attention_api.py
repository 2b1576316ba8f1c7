"""Bad input for the chapter 1.6 experiments: 422 naming the field, before any run starts."""

import pytest


@pytest.mark.parametrize(("experiment", "params", "field"), [
    ("attention", {"width": 32, "heads": 3}, "heads"),  # heads must divide the width
    ("attention", {"width": 36, "heads": 4, "length": 20}, "length"),  # sequence too long
    ("attention", {"task": "recall", "vocab": 6, "length": 8}, "length"),  # keys won't fit V
    ("attention", {"width": 30}, "width"),  # not a multiple of 4
    ("attention", {"q": 0}, "q"),
    ("attention", {"beta_scale": 50}, "beta_scale"),
    ("attention", {"positional": "rotary"}, "positional"),
    ("attention", {"architecture": "decoder"}, "architecture"),
    ("attention", {"causal": "sometimes"}, "causal"),
    ("attention", {"layers": 4, "width": 64, "length": 16, "steps": 3000}, "steps"),  # too long
    ("positional-encoding", {"K": 63}, "K"),
    ("vit-patches", {"patch": 3}, "patch"),
    ("vit-patches", {"width": 32, "heads": 3}, "heads"),
    ("vit-patches", {"patch": 1, "width": 64, "layers": 2, "steps": 1000}, "steps"),
    ("gelu", {"points": 100_000}, "points"),
])
def test_bad_params_get_422_naming_the_field(client, experiment, params, field):
    response = client.post("/api/runs", json={"experiment": experiment, "params": params})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "params", field]
    assert detail["msg"]


def test_the_422_explains_the_rule(client):
    response = client.post("/api/runs", json={"experiment": "attention",
                                              "params": {"width": 32, "heads": 3}})
    assert "heads must divide width" in response.json()["detail"][0]["msg"]
    response = client.post("/api/runs", json={"experiment": "attention",
                                              "params": {"task": "recall", "vocab": 6,
                                                         "length": 8}})
    assert "length must be <= vocab" in response.json()["detail"][0]["msg"]
