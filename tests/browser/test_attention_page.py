"""The attention page in Debian's Chromium: train, watch the heat-maps change, pass the checks."""

import json

import pytest

pytestmark = pytest.mark.browser

HEAD = 3  # layer 2, head 2: the trace whose map turns into the anti-diagonal for reverse

# Every 50 ms, remember each distinct z the heat-map has held (the page may replace the
# div's data object on a redraw, so it is looked up afresh each time).
WATCH = """(head) => {
    window.attentionMaps = [];
    window.attentionWatch = setInterval(() => {
        const z = document.querySelector("[data-figure='attention']")?.data?.[head]?.z;
        if (!z || !z.length) return;
        const text = JSON.stringify(Array.from(z, (row) => Array.from(row)));
        if (window.attentionMaps.at(-1) !== text) window.attentionMaps.push(text);
    }, 50);
}"""


def test_training_updates_the_attention_heat_maps(page, console_errors):
    # A longer run than the default, so that the maps are seen changing while it trains.
    page.goto("/e/attention?steps=1200")
    heat_maps = page.evaluate(
        "() => document.querySelector(\"[data-figure='attention']\").data"
        ".filter((t) => t.type === 'heatmap').length")
    assert heat_maps == 4  # 2 layers × 2 heads
    page.evaluate(WATCH, HEAD)
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_function("window.attentionMaps.length >= 3", timeout=60_000)
    page.wait_for_selector("[data-role=status][data-status=done]", timeout=90_000)
    page.wait_for_timeout(200)
    page.evaluate("clearInterval(window.attentionWatch)")
    maps = [json.loads(text) for text in page.evaluate("window.attentionMaps")]
    assert len(maps) >= 3, len(maps)
    first, last = maps[0], maps[-1]
    assert len(last) == 16 and all(len(row) == 16 for row in last)
    assert all(abs(sum(row) - 1) < 1e-4 for row in last)  # rows of A sum to 1
    # Trained on reverse: answer slot s (rows 8…15) attends to input token 7 − s most.
    mirrored = sum(max(range(8), key=lambda t, s=s: last[8 + s][t]) == 7 - s for s in range(8))
    assert mirrored == 8, last
    assert first != last
    passed = page.eval_on_selector_all("[data-role=checks] tbody tr",
                                       "rows => rows.map(r => r.dataset.passed)")
    assert len(passed) == 5 and set(passed) == {"true"}, passed
    assert console_errors == []


def test_ask_the_trained_model_about_a_typed_sequence(page, console_errors):
    page.goto("/e/attention")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-role=page] > .workbench [data-role=status][data-status=done]",
                           timeout=90_000)
    panel = page.locator("[data-role=query]")
    panel.locator("[data-field=tokens] input").fill("3 1 4 1 5 9 2 6")
    panel.get_by_role("button", name="Ask").click()
    panel.locator("[data-role=status][data-status=done]").wait_for(timeout=60_000)
    output = panel.locator("[data-role=metrics] tr[data-metric=output] td").inner_text()
    assert output == "6 2 9 5 1 4 1 3"  # the input, reversed by the trained model
    maps = page.evaluate(
        "document.querySelector('[data-role=query] [data-figure=attention]').data"
        ".filter((t) => t.type === 'heatmap' && t.z?.length).length")
    assert maps == 4
    assert console_errors == []
