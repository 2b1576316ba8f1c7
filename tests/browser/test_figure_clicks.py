"""Clicking a figure sets parameters (engine.core.ClickInput), in the form and in the URL."""

import pytest

pytestmark = pytest.mark.browser


def test_clicking_the_chart_sets_the_start_point_and_appends_to_the_shape(page, console_errors):
    page.goto("/e/ticker?steps=5")
    plot = page.locator("[data-figure=ticks] .nsewdrag").first
    box = plot.bounding_box()
    plot.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.25})
    x0 = float(page.locator("[data-field=x0] input[type=number]").input_value())
    y0 = float(page.locator("[data-field=y0] input[type=number]").input_value())
    # The empty figure's axes run from -1 to 6 (x) and -1 to 4 (y), Plotly's defaults.
    assert 3.5 < x0 < 5.0 and 2.0 < y0 < 3.5
    page.wait_for_function("new URLSearchParams(location.search).get('x0') !== null")
    plot.click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.75})
    shape = page.locator("[data-field=shape] input").input_value()
    assert shape.count(";") == 1 and shape.count(",") == 2
    assert console_errors == []
