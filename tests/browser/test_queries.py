"""Asking a finished run from its page: the query form appears once the run is done, and the
answer streams into its own charts, with its own shareable page."""

import pytest

pytestmark = pytest.mark.browser


def test_ask_a_finished_run_from_the_experiment_page(page, console_errors):
    page.goto("/e/ticker?steps=5")
    panel = page.locator("[data-role=query]")
    assert panel.is_hidden()
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=page] > .workbench [data-role=status][data-status=done]")
    assert panel.is_visible()

    panel.locator("[data-field=scale] input[type=number]").fill("3")
    panel.locator("[data-field=step] input[type=number]").fill("99")  # the run made 5 steps
    panel.get_by_role("button", name="Ask").click()
    page.wait_for_function(
        "document.querySelector('[data-role=query] [data-field=step]').textContent"
        ".includes('below the run')")

    panel.locator("[data-field=step] input[type=number]").fill("1")
    panel.get_by_role("button", name="Ask").click()
    panel.locator("[data-role=status][data-status=done]").wait_for()
    bars = page.evaluate(
        "document.querySelector('[data-role=query] [data-figure=answer]').data[0].y")
    assert len(bars) == 2 and bars[1] == pytest.approx(3 * bars[0])
    assert panel.locator("[data-role=checks] tbody tr").count() == 1

    page.goto(panel.locator("[data-role=run-link]").get_attribute("href"))
    assert page.get_by_role("heading", name="Query").is_visible()
    assert page.locator("[data-role=query]").count() == 0  # a query is not asked again
    # Chromium logs the deliberate 422 above as a failed resource; nothing else may appear.
    assert [e for e in console_errors if "status of 422" not in e] == []
