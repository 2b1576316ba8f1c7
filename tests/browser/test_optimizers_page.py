"""The optimizer race in Debian's Chromium: click the contour map to set the start, run a
race, see every optimizer's path drawn and the checks passed."""

import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.browser

RACERS = 6  # gd, momentum, nesterov, adagrad, rmsprop, adam are on by default
FIRST_RACER = 3  # the contour, the minima and the start come first


def trace_length(page: Page, figure: str, trace: int, attr: str = "x") -> int:
    return page.evaluate(
        "([figure, trace, attr]) => document.querySelector(`[data-figure='${figure}']`)"
        ".data?.[trace]?.[attr]?.length ?? 0",
        [figure, trace, attr],
    )


def test_click_the_map_then_race(page, console_errors):
    page.goto("/e/optimizers?steps=300")
    plot = page.locator("[data-figure=surface] .nsewdrag").first
    box = plot.bounding_box()
    plot.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.25})
    x0 = float(page.locator("[data-field=x0] input[type=number]").input_value())
    y0 = float(page.locator("[data-field=y0] input[type=number]").input_value())
    x_range, y_range = page.evaluate(
        "() => { const l = document.querySelector(\"[data-figure='surface']\")._fullLayout;"
        " return [l.xaxis.range, l.yaxis.range]; }")
    expected_x = x_range[0] + 0.75 * (x_range[1] - x_range[0])
    expected_y = y_range[1] - 0.25 * (y_range[1] - y_range[0])
    assert abs(x0 - expected_x) < 0.02 * (x_range[1] - x_range[0])
    assert abs(y0 - expected_y) < 0.02 * (y_range[1] - y_range[0])
    page.wait_for_function("new URLSearchParams(location.search).get('x0') !== null")

    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=status][data-status=done]", timeout=60_000)
    for k in range(RACERS):
        assert trace_length(page, "surface", FIRST_RACER + k) == 301, k  # θ₀ … θ₃₀₀
        assert trace_length(page, "loss", k) == 301, k
        assert trace_length(page, "distance", k) == 301, k
    start = page.evaluate("() => { const t = document.querySelector(\"[data-figure='surface']\")"
                          ".data[2]; return [t.x[0], t.y[0]]; }")
    assert start == pytest.approx([x0, y0])  # the run's figures start at the clicked point
    assert trace_length(page, "surface", 0, "z") > 0
    assert trace_length(page, "theory", 0) > 0
    passed = page.eval_on_selector_all("[data-role=checks] tbody tr",
                                       "rows => rows.map(r => r.dataset.passed)")
    assert len(passed) >= 2 and set(passed) == {"true"}, passed
    assert page.locator("[data-role=metrics] tr[data-metric='GD: steps to tol']").count() == 1
    assert console_errors == []


@pytest.mark.parametrize(("query", "figure", "attr"), [
    ("mode=cloud&starts=64&steps=200", "surface", "x"),
    ("mode=grid&grid_size=8&steps=200", "sweep", "z"),
])
def test_sweeps_draw_from_the_page(page, console_errors, query, figure, attr):
    page.goto(f"/e/optimizers?{query}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=status][data-status=done]", timeout=60_000)
    assert trace_length(page, figure, FIRST_RACER if figure == "surface" else 0, attr) > 0
    assert trace_length(page, "loss", 0) > 0
    passed = page.eval_on_selector_all("[data-role=checks] tbody tr",
                                       "rows => rows.map(r => r.dataset.passed)")
    assert passed and set(passed) == {"true"}, passed
    assert console_errors == []
