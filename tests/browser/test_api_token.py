"""A server with an API token, in Debian's Chromium: the page asks for the token once per tab,
keeps it in sessionStorage and sends it; a wrong one is said to be wrong and not kept."""

import pytest

from tests.browser.conftest import TIMEOUT_MS

pytestmark = pytest.mark.browser

TOKEN = "class-of-2026"


@pytest.fixture
def token_server(make_server):
    return make_server(workers=1, api_token=TOKEN)


def open_page(browser, server, answer):
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    prompts, csp = [], []
    page.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.accept(answer)))
    page.on("console", lambda m: csp.append(m.text) if "Content Security" in m.text else None)
    page.goto("/e/ticker?steps=3")
    return page, prompts, csp


def press_run(page):
    with page.expect_response(lambda r: r.url.endswith("/api/runs")
                              and r.request.method == "POST" and r.status != 401) as sent:
        page.get_by_role("button", name="Run", exact=True).click()
    return sent.value


def test_the_page_asks_for_the_token_once_and_runs(browser, token_server):
    page, prompts, csp = open_page(browser, token_server, TOKEN)
    assert press_run(page).status == 201
    page.wait_for_selector("[data-role=status][data-status=done]")
    assert len(prompts) == 1 and "Authorization: Bearer" in prompts[0]
    assert page.evaluate("sessionStorage.getItem('playground-api-token')") == TOKEN
    assert press_run(page).status == 201  # kept for the tab: no second question
    page.wait_for_selector("[data-role=status][data-status=done]")
    assert len(prompts) == 1 and csp == []
    page.context.close()


def test_a_wrong_token_is_reported_and_forgotten(browser, token_server):
    page, prompts, _ = open_page(browser, token_server, "guess")
    page.get_by_role("button", name="Run", exact=True).click()
    error = page.locator("[data-role=error]").first  # the run form's, not the query panel's
    error.wait_for(state="visible")
    assert "not valid" in error.text_content()
    assert len(prompts) == 1
    assert page.evaluate("sessionStorage.getItem('playground-api-token')") is None
    page.context.close()
