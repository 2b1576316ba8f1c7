"""The diffusion page in Debian's Chromium: the sample cloud moves during a run, a slider scrubs
back through it afterwards, and clicks on the data chart draw a shape that is then learnt."""

import numpy as np
import pytest

from engine.experiments import diffusion_figures as figs

pytestmark = pytest.mark.browser

SAMPLES = "[data-figure=samples]"
WATCH_CLOUD = """(index) => {
    window.cloudStates = [];
    const div = document.querySelector("[data-figure=samples]");
    window.cloudWatch = setInterval(() => {
        const x = div.data?.[index]?.x;
        const key = x && x.length ? Array.from(x.slice(0, 3)).join(",") : "";
        if (key && key !== window.cloudStates.at(-1)) window.cloudStates.push(key);
    }, 20);
}"""


def cloud_x(page, index: int) -> np.ndarray:
    return np.array(page.evaluate(
        "(i) => Array.from(document.querySelector('[data-figure=samples]').data[i].x)", index))


def test_default_run_animates_the_sample_cloud_then_scrubs_back(page, console_errors):
    page.goto("/e/diffusion")
    page.evaluate(WATCH_CLOUD, figs.DDPM_CLOUD)
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=status][data-status=done]", timeout=120_000)
    states = page.evaluate("() => { clearInterval(window.cloudWatch); return window.cloudStates; }")
    assert len(states) >= 5, states  # the cloud was redrawn as t went from T to 0
    passed = page.eval_on_selector_all("[data-role=checks] tbody tr",
                                       "rows => rows.map(r => r.dataset.passed)")
    assert passed == ["true"] * 5

    # The slider: Plotly's own, over the frames stored with the figure.
    page.wait_for_function(
        f"document.querySelector('{SAMPLES}').layout.sliders?.[0]?.steps?.length > 0")
    steps, frames = page.evaluate(f"""() => {{
        const div = document.querySelector('{SAMPLES}');
        return [div.layout.sliders[0].steps.map(s => s.label), div._transitionData._frames.length];
    }}""")
    assert steps[0] == "200" and steps[-1] == "0" and frames == len(steps)
    final = cloud_x(page, figs.DDPM_CLOUD)
    assert 0.5 < final.std() < 1.5  # the swiss roll's spread
    rail = page.locator(f"{SAMPLES} .slider-rail-touch-rect").first
    box = rail.bounding_box()
    rail.click(position={"x": 4, "y": box["height"] / 2})  # the far left: t = T
    page.wait_for_function(
        f"document.querySelector('{SAMPLES}').layout.sliders[0].active === 0")
    page.wait_for_function(f"""() => {{
        const x = document.querySelector('{SAMPLES}').data[{figs.DDPM_CLOUD}].x;
        return x[0] !== {float(final[0])!r};
    }}""")
    noise = cloud_x(page, figs.DDPM_CLOUD)
    assert len(noise) == len(final) and abs(noise.std() - 1) < 0.15  # x_T ~ N(0, I)

    # The shared run page draws the stored figure, frames and slider included.
    page.goto(page.locator("[data-role=run-link]").get_attribute("href"))
    page.wait_for_selector("[data-role=status][data-status=done]")
    page.wait_for_function(f"document.querySelector('{SAMPLES}')?._transitionData?._frames"
                           f"?.length === {frames}")
    assert console_errors == []


def test_clicks_on_the_data_chart_draw_the_shape_that_is_learnt(page, console_errors):
    page.goto("/e/diffusion?data=drawn&T=50&train_steps=300&samples=300&ddim_steps=10")
    plot = page.locator("[data-figure=data] .nsewdrag").first
    box = plot.bounding_box()
    # The axes are fixed to [-3, 3]², so fractions of the plot area are known coordinates.
    for fx, fy in [(0.2, 0.8), (0.5, 0.2), (0.8, 0.8)]:
        plot.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    shape = page.locator("[data-field=shape] input").input_value()
    points = np.array([[float(v) for v in p.split(",")] for p in shape.split(";")])
    np.testing.assert_allclose(points, [[-1.8, -1.8], [0, 1.8], [1.8, -1.8]], atol=0.15)
    page.wait_for_function("new URLSearchParams(location.search).get('shape')?.includes(';')")

    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=status][data-status=done]", timeout=60_000)
    data = page.evaluate("""() => {
        const trace = document.querySelector("[data-figure=data]").data[0];
        return [Array.from(trace.x), Array.from(trace.y)];
    }""")
    xy = np.array(data).T
    dense = np.concatenate([np.linspace(a, b, 300) for a, b in zip(points[:-1], points[1:],
                                                                    strict=True)])
    distance = np.linalg.norm(xy[:, None] - dense[None], axis=2).min(axis=1)
    assert len(xy) > 100 and distance.mean() < 0.1  # the training data follow the drawn line
    drawn = page.evaluate("() => document.querySelector('[data-figure=data]').data[1].x.length")
    assert drawn == 3
    assert console_errors == []
