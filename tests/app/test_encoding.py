import json
import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from app.encoding import TYPED_ARRAY_MIN_SIZE, decode, dumps, jsonable, typed_array


@pytest.mark.parametrize("dtype", ["f8", "f4", "i4", "u1", "i2", "u2", "i1", "u4"])
def test_typed_array_round_trips(dtype):
    array = (np.arange(40) % 7).astype(dtype)
    assert np.array_equal(decode(json.loads(dumps(array))), array)


def test_2d_arrays_keep_their_shape():
    z = np.arange(24, dtype=np.float64).reshape(4, 6)
    spec = typed_array(z)
    assert spec["shape"] == "4,6"
    assert np.array_equal(decode(spec), z)


def test_int64_and_bool_are_cast_to_types_plotly_reads():
    assert typed_array(np.arange(20, dtype=np.int64))["dtype"] == "i4"
    assert typed_array(np.full(20, 2**40, dtype=np.int64))["dtype"] == "f8"
    assert typed_array(np.ones(20, dtype=bool))["dtype"] == "u1"


def test_small_arrays_scalars_and_non_finite_values_become_plain_json():
    assert jsonable(np.arange(3)) == [0, 1, 2]
    assert jsonable({"a": np.float32(1.5), "b": (1, 2)}) == {"a": 1.5, "b": [1, 2]}
    assert jsonable([math.nan, math.inf, 1.0]) == [None, None, 1.0]
    assert "NaN" not in dumps({"x": float("nan")})


def test_bdata_matches_what_plotly_py_itself_writes():
    """plotly.py >= 6 writes numpy arrays as typed arrays too: the two must decode the same."""
    y = np.linspace(0, 1, TYPED_ARRAY_MIN_SIZE * 2)
    ours = json.loads(dumps(go.Figure(go.Scatter(y=y)).to_plotly_json()))
    theirs = json.loads(pio.to_json(go.Figure(go.Scatter(y=y))))
    assert np.array_equal(decode(ours["data"][0]["y"]), decode(theirs["data"][0]["y"]))


def test_unsupported_shapes_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="1-D or 2-D"):
        typed_array(np.zeros((2, 2, 2)))
