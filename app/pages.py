"""HTML pages: the catalogue (``/``), one experiment (``/e/{slug}``) and one run (``/runs/{id}``).

The pages render the text and the math; the ES modules in ``static/`` draw the form, the
charts and the live run. Data for those modules travels in ``<script type="application/json">``
blocks and ``data-`` attributes, never in executable inline script, so the pages keep working
under a Content-Security-Policy of ``script-src 'self'``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from app.encoding import jsonable
from app.figures import normalise_figure
from app.mathml import to_mathml
from engine.core import Experiment, Section, click_inputs

ROOT = Path(__file__).resolve().parent.parent

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=ROOT / "templates")


def _isotime(timestamp: float | None) -> str:
    """A Unix time as ISO 8601 UTC, to the second (the run page's ``<time>`` elements)."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


templates.env.filters["mathml"] = to_mathml
# Keep figure and field order as the experiment declares it (Jinja sorts keys by default).
templates.env.policies["json.dumps_kwargs"] = {"sort_keys": False}
templates.env.filters["isotime"] = _isotime

# Caps for /mathml, which takes LaTeX from the query string.
MATHML_MAX_ITEMS = 64
MATHML_MAX_CHARS = 2000


def _registry(request: Request) -> dict[str, Experiment]:
    """The run manager's experiments: the built-in ones plus configured plug-ins."""
    return request.app.state.manager.registry


def _not_found(request: Request, message: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "not_found.html", {"message": message},
                                      status_code=404)


def _figures_json(figures: dict[str, Any]) -> dict[str, Any]:
    """Figures as JSON-ready dicts, numpy arrays as Plotly typed arrays (as the API sends them)."""
    return jsonable({name: normalise_figure(figure) for name, figure in figures.items()})


def _query_string(params: dict[str, Any]) -> str:
    """``params`` as the experiment page's query string (booleans as ``true``/``false``)."""
    return urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})


@router.get("/", response_class=HTMLResponse)
def catalogue(request: Request) -> HTMLResponse:
    # Chapter -> section -> experiments, in registry order (which is cheat-sheet order).
    chapters: dict[str, dict[Section, list[Experiment]]] = {}
    for experiment in _registry(request).values():
        sections = chapters.setdefault(experiment.section.chapter, {})
        sections.setdefault(experiment.section, []).append(experiment)
    return templates.TemplateResponse(request, "catalogue.html", {"chapters": chapters})


@router.get("/e/{slug}", response_class=HTMLResponse)
def experiment_page(request: Request, slug: str) -> HTMLResponse:
    experiment = _registry(request).get(slug)
    if experiment is None:
        return _not_found(request, f"There is no experiment called “{slug}”.")
    figures = experiment.figures(experiment.Params())
    page_data = {
        "slug": experiment.slug,
        "schema": experiment.Params.model_json_schema(),
        "figures": _figures_json(dict(figures)),
        "clicks": click_inputs(experiment),
    }
    return templates.TemplateResponse(request, "experiment.html", {
        "experiment": experiment, "figure_names": list(figures), "page_data": page_data,
        "query_schema": _query_schema(experiment),
    })


def _query_schema(experiment: Experiment | None) -> dict[str, Any] | None:
    """The Query JSON Schema of an experiment that answers queries on finished runs."""
    return experiment.Query.model_json_schema() if experiment and experiment.Query else None


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> HTMLResponse:
    info = request.app.state.manager.info(run_id)
    if info is None:
        return _not_found(request, f"There is no run with id “{run_id}”.")
    experiment = _registry(request).get(info["experiment"])
    params = info.get("params") or {}
    figure_names = list(info.get("figures") or {})
    fields: dict[str, Any] = {}
    if experiment is not None:
        fields = experiment.Params.model_json_schema().get("properties", {})
        if not figure_names:
            try:
                figure_names = list(experiment.figures(experiment.Params.model_validate(params)))
            except ValidationError:  # stored under an older Params; draw what the run sends
                figure_names = []
    return templates.TemplateResponse(request, "run.html", {
        "run": info, "experiment": experiment, "params": params, "fields": fields,
        "figure_names": figure_names, "rerun_query": _query_string(params),
        # A query run is answered, not asked again: only original runs offer queries.
        "query_schema": None if info.get("query") else _query_schema(experiment),
    })


@router.get("/mathml")
def mathml(latex: Annotated[list[str] | None, Query()] = None) -> list[str]:
    """MathML for each ``latex`` query value, for formulas that reach the browser as LaTeX
    (a run's checks); failures come back as escaped ``<code>``, as on the pages."""
    latex = latex or []
    if len(latex) > MATHML_MAX_ITEMS or any(len(tex) > MATHML_MAX_CHARS for tex in latex):
        raise HTTPException(422, f"send at most {MATHML_MAX_ITEMS} formulas of at most "
                                 f"{MATHML_MAX_CHARS} characters each")
    return [str(to_mathml(tex)) for tex in latex]
