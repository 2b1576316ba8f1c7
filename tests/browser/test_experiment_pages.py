"""Every built-in experiment, run from its page with default parameters, draws every chart
update without an error and ends with all its checks passed."""

import pytest

from engine.experiments import EXPERIMENTS

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("slug", sorted(EXPERIMENTS))
def test_default_run_draws_and_passes_its_checks(page, console_errors, slug):
    page.goto(f"/e/{slug}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=status][data-status=done]", timeout=60_000)
    assert page.locator("[data-role=error]:visible").count() == 0
    passed = page.eval_on_selector_all("[data-role=checks] tbody tr",
                                       "rows => rows.map(r => r.dataset.passed)")
    assert passed and set(passed) == {"true"}, passed
    drawn = page.eval_on_selector_all(
        "[data-figure]", "divs => divs.map(d => (d.data || []).some(t => (t.x?.length ?? 0) > 0"
        " || (t.z?.length ?? 0) > 0))")
    assert drawn and all(drawn), drawn  # every figure got data from the run
    assert console_errors == []
