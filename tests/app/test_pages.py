"""The HTML pages (app.pages) and the browser modules they load, in-process."""

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from markupsafe import escape

from app.pages import _query_string
from engine.experiments import EXPERIMENTS

STATIC = Path(__file__).resolve().parents[2] / "static"


class Page(HTMLParser):
    """The parts of a page the tests look at: tags with attributes, script bodies, text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_data(self, data):
        if self._script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def json_block(self, element_id: str):
        [body] = [body for attrs, body in self.scripts if attrs.get("id") == element_id]
        return json.loads(body)


def get_page(client, url: str, status: int = 200) -> Page:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


def assert_csp_safe(page: Page) -> None:
    """No inline executable script and no inline event handlers (CSP script-src 'self')."""
    for attrs, body in page.scripts:
        assert attrs.get("src") or attrs.get("type") == "application/json", (attrs, body[:80])
        if attrs.get("src"):
            assert not body.strip()
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert not str(attrs.get("href", "")).startswith("javascript:")


def finished_run(client, experiment="ticker", **params) -> dict:
    created = client.post("/api/runs", json={"experiment": experiment, "params": params})
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = client.get(created.json()["urls"]["self"]).json()
        if info["status"] not in ("queued", "running"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"run {created.json()['id']} did not finish in 30 s")


def test_catalogue_lists_every_experiment_with_its_formula(client):
    page = get_page(client, "/")
    html = client.get("/").text
    registry = client.app.state.manager.registry
    assert set(EXPERIMENTS) <= set(registry)
    links = {urlsplit(a["href"]).path for a in page.find("a") if a.get("href")}
    for slug, experiment in registry.items():
        assert f"/e/{slug}" in links
        assert escape(experiment.title) in html
        assert escape(experiment.section.chapter) in html
    cards = html.split('class="card"')[1:]
    assert len(cards) == len(registry)
    assert all("<math" in card for card in cards)
    assert_csp_safe(page)


@pytest.mark.parametrize("slug", sorted(EXPERIMENTS))
def test_experiment_page_has_form_figures_and_scripts(client, slug):
    experiment = EXPERIMENTS[slug]
    page = get_page(client, f"/e/{slug}")
    assert page.find("div", data_role="fields"), "form container"
    assert page.find("button", data_role="run") and page.find("button", data_role="stop")
    assert page.find("progress", data_role="progress")
    figures = list(experiment.figures(experiment.Params()))
    drawn = [a["data-figure"] for a in page.find("div") if "data-figure" in a]
    assert drawn == figures

    sources = [urlsplit(attrs["src"]).path for attrs, _ in page.scripts if attrs.get("src")]
    assert "/vendor/plotly.min.js" in sources
    modules = [urlsplit(a["src"]).path for a, _ in page.scripts if a.get("type") == "module"]
    assert modules and all(path.startswith("/static/") for path in modules)
    for path in sources:
        assert client.get(path).status_code == 200, path

    data = page.json_block("page-data")
    assert data["slug"] == slug
    assert data["schema"] == experiment.Params.model_json_schema()
    assert list(data["figures"]) == figures
    assert all("data" in fig and "layout" in fig for fig in data["figures"].values())

    html = client.get(f"/e/{slug}").text
    assert html.count("<math") >= len(experiment.formulas)
    for formula in experiment.formulas:
        assert escape(formula.label) in html
        if formula.erratum:
            assert f"corrected per ERRATA {formula.erratum}" in html
    assert_csp_safe(page)


def test_unknown_experiment_is_a_404_page(client):
    page = get_page(client, "/e/no-such-thing", status=404)
    assert page.find("a", href="http://testserver/")
    assert_csp_safe(page)


def test_unknown_run_is_a_404_page(client):
    get_page(client, "/runs/unknown", status=404)


def test_run_page_shows_the_run(client):
    info = finished_run(client, steps=3, failure="none")
    page = get_page(client, f"/runs/{info['id']}")
    html = client.get(f"/runs/{info['id']}").text
    [article] = page.find("article", data_run_id=info["id"])
    assert article["data-api"] == "/api"
    assert [a["data-figure"] for a in page.find("div") if "data-figure" in a] == ["ticks"]
    assert escape("Ticker (test)") in html and "<math" in html
    assert ">3</td>" in html and ">none</td>" in html
    [rerun] = [a["href"] for a in page.find("a") if "/e/ticker?" in str(a.get("href"))]
    assert "steps=3" in rerun and "failure=none" in rerun
    modules = [urlsplit(a["src"]).path for a, _ in page.scripts if a.get("type") == "module"]
    assert modules == ["/static/run_page.js"]
    assert_csp_safe(page)


def test_rerun_link_writes_booleans_as_the_form_reads_them():
    assert _query_string({"flag": True, "off": False, "x": 0.5}) == "flag=true&off=false&x=0.5"


def test_mathml_route_converts_each_formula(client):
    response = client.get("/mathml", params=[("latex", r"\frac{a}{b}"), ("latex", r"\left( x")])
    assert response.status_code == 200
    converted, failed = response.json()
    assert converted.startswith("<math") and "<mfrac>" in converted
    assert failed == r'<code class="latex">\left( x</code>'
    assert client.get("/mathml").json() == []
    assert client.get("/mathml", params=[("latex", "x")] * 65).status_code == 422
    assert client.get("/mathml", params={"latex": "x" * 2001}).status_code == 422


def test_static_modules_import_only_files_that_exist(client):
    for module in STATIC.glob("*.js"):
        response = client.get(f"/static/{module.name}")
        assert response.status_code == 200
        assert "javascript" in response.headers["content-type"]
        for target in re.findall(r'^import .* from "\./([\w.]+)";$', module.read_text(), re.M):
            assert (STATIC / target).is_file(), f"{module.name} imports missing {target}"
    assert client.get("/static/style.css").status_code == 200
