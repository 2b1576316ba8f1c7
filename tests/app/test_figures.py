import numpy as np
import plotly.graph_objects as go
import pytest

from app.figures import FigureState, normalise_figure


@pytest.fixture
def state():
    fig = go.Figure([go.Scatter(x=[], y=[]), go.Scatter(x=[0.0], y=[1.0])])
    return FigureState({"f": fig})


def test_extend_appends_per_trace_and_keeps_the_last_max_points(state):
    state.apply("f", "extend", {"x": [np.array([1.0, 2.0]), np.array([5.0])],
                                "y": [np.array([3.0, 4.0]), np.array([6.0])]}, [0, 1])
    state.apply("f", "extend", {"x": [np.array([7.0, 8.0])]}, [1], max_points=3)
    data = state.figures["f"]["data"]
    assert np.array_equal(data[0]["x"], [1.0, 2.0]) and np.array_equal(data[0]["y"], [3.0, 4.0])
    assert np.array_equal(data[1]["x"], [5.0, 7.0, 8.0])


def test_restyle_sets_one_value_per_listed_trace_and_nested_keys(state):
    state.apply("f", "restyle", {"y": [np.array([9.0])], "marker.color": ["red"]}, [1])
    trace = state.figures["f"]["data"][1]
    assert np.array_equal(trace["y"], [9.0]) and trace["marker"]["color"] == "red"


def test_relayout_sets_dotted_layout_keys(state):
    state.apply("f", "relayout", {"xaxis.range": [0, 1], "title.text": "t"}, None)
    layout = state.figures["f"]["layout"]
    assert layout["xaxis"]["range"] == [0, 1] and layout["title"]["text"] == "t"


def test_react_replaces_the_figure_and_unknown_names_or_ops_fail(state):
    state.apply("f", "react", go.Figure(go.Heatmap(z=[[1]])).to_plotly_json(), None)
    assert state.figures["f"]["data"][0]["type"] == "heatmap"
    with pytest.raises(KeyError, match="unknown figure"):
        state.apply("g", "extend", {}, [0])
    with pytest.raises(ValueError, match="op must be"):
        state.apply("f", "wiggle", {}, [0])


def test_extending_a_missing_attribute_fails_as_in_plotly_js(state):
    with pytest.raises(ValueError, match="cannot extend missing"):
        state.apply("f", "extend", {"error_y.array": [np.array([1.0])]}, [0])


def test_the_default_template_is_left_out_and_a_custom_one_kept():
    plain = normalise_figure(go.Figure(go.Scatter(x=[1], y=[2])))
    assert "template" not in plain["layout"]
    dark = normalise_figure(go.Figure(layout={"template": "plotly_dark"}))
    assert dark["layout"]["template"]["layout"]["paper_bgcolor"] != "white"
