"""REST and Server-Sent-Event routes under ``/api``.

Routes validate, hand off to the run manager and return; nothing here runs torch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field, ValidationError

from app.encoding import dumps, jsonable
from app.figures import normalise_figure
from app.images import resolve_uploads
from app.jobs import QueueFull, RunManager
from app.mathml import to_mathml
from app.runs import Run
from engine.core import Experiment, click_inputs

router = APIRouter(prefix="/api", tags=["api"])


def get_manager(request: Request) -> RunManager:
    return request.app.state.manager


Manager = Annotated[RunManager, Depends(get_manager)]


class RunRequest(BaseModel):
    """Start a run: the experiment's slug and its parameters (defaults fill what is left out)."""

    experiment: str = Field(description="Experiment slug, as listed by GET /api/experiments.",
                            examples=["perceptron"])
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Parameters; see the experiment's params_schema.")


class RunCreated(BaseModel):
    id: str
    experiment: str
    status: str
    urls: dict[str, str]


@cache
def describe(experiment: Experiment) -> dict[str, Any]:
    """An experiment as the catalogue, the browser form and API clients see it (computed once:
    its default figures, schemas and MathML do not change while the server runs)."""
    return {
        "slug": experiment.slug,
        "title": experiment.title,
        "section": {"number": experiment.section.number, "name": experiment.section.name,
                    "chapter": experiment.section.chapter},
        "summary": experiment.summary,
        "formulas": [{"label": f.label, "latex": f.latex, "mathml": str(to_mathml(f.latex)),
                      "erratum": f.erratum} for f in experiment.formulas],
        "params_schema": experiment.Params.model_json_schema(),
        "figures": jsonable({name: normalise_figure(figure) for name, figure
                             in experiment.figures(experiment.Params()).items()}),
        "clicks": click_inputs(experiment),
        "query_schema": experiment.Query.model_json_schema() if experiment.Query else None,
        "downloads": list(experiment.downloads),
    }


def _experiment(manager: RunManager, slug: str) -> Experiment:
    if slug not in manager.registry:
        raise HTTPException(404, f"Unknown experiment {slug!r}; known: {sorted(manager.registry)}")
    return manager.registry[slug]


@router.get("/experiments", summary="List experiments with formulas, parameter schemas and figures")
def list_experiments(manager: Manager) -> list[dict[str, Any]]:
    return [describe(e) for e in manager.registry.values()]


@router.get("/experiments/{slug}", summary="One experiment",
            responses={404: {"description": "Unknown experiment"}})
def get_experiment(slug: str, manager: Manager) -> dict[str, Any]:
    return describe(_experiment(manager, slug))


@router.post(
    "/runs", status_code=201, summary="Start a run",
    responses={404: {"description": "Unknown experiment"},
               422: {"description": "A parameter is out of range; `loc` names it"},
               429: {"description": "The queue is full; see Retry-After"}},
)
def create_run(request: RunRequest, manager: Manager, response: Response) -> RunCreated:
    experiment = _experiment(manager, request.experiment)
    params = _validated(experiment.Params, request.params, ("body", "params")).model_dump(
        mode="json")
    uploads = resolve_uploads(manager, params)
    return _queued(manager, response, experiment.slug, params, uploads=uploads)


def _validated(model: type[BaseModel], value: dict[str, Any], root: tuple[str, ...],
               context: dict[str, Any] | None = None) -> BaseModel:
    try:
        return model.model_validate(value, context=context)
    except ValidationError as exc:
        # Re-rooted under ``root`` so the field is named as the client sent it; the rejected
        # input is echoed JSON-safe (a NaN or inf start would otherwise fail the 422 itself).
        raise RequestValidationError(
            [{**e, "loc": (*root, *e["loc"]), "input": jsonable(e.get("input"))}
             for e in exc.errors(include_url=False)]
        ) from None


def _queued(manager: RunManager, response: Response, slug: str, params: dict[str, Any],
            **query: Any) -> RunCreated:
    try:
        run = manager.submit(slug, params, **query)
    except QueueFull as exc:
        retry = {"Retry-After": str(exc.retry_after_s)}
        raise HTTPException(429, str(exc), headers=retry) from None
    urls = {"self": f"/api/runs/{run.id}", "events": f"/api/runs/{run.id}/events",
            "page": f"/runs/{run.id}"}
    response.headers["Location"] = urls["self"]
    return RunCreated(id=run.id, experiment=run.experiment, status=run.status, urls=urls)


@router.post(
    "/runs/{run_id}/queries", status_code=201,
    summary="Query a finished run (e.g. the model it trained) with new input",
    description="The body is the experiment's query, see its `query_schema`. The answer is a "
                "run of its own: stream it, poll it and cancel it like any other.",
    responses={404: {"description": "Run not found"},
               409: {"description": "The experiment takes no queries, or the run is not done"},
               422: {"description": "A query field is invalid; `loc` names it"},
               429: {"description": "The queue is full; see Retry-After"}},
)
def query_run(run_id: str, query: Annotated[dict[str, Any], Body()], manager: Manager,
              response: Response) -> RunCreated:
    record = manager.info(run_id)
    if record is None:
        raise HTTPException(404, "Run not found")
    experiment = _experiment(manager, record["experiment"])
    if experiment.Query is None:
        raise HTTPException(409, f"Experiment {experiment.slug!r} takes no queries")
    if record.get("query") is not None:
        raise HTTPException(409, "This run is itself a query; query the run it came from")
    artifact = manager.artifact(run_id)
    if record["status"] != "done" or artifact is None:
        raise HTTPException(409, f"Run is {record['status']}; only a finished run can be queried")
    params = experiment.Params.model_validate(record["params"])
    asked = _validated(experiment.Query, query, ("body",), context={"params": params})
    return _queued(manager, response, experiment.slug, record["params"],
                   query=asked.model_dump(mode="json"), parent=run_id, artifact=artifact,
                   uploads=resolve_uploads(manager, record["params"]))


def _record_or_404(record: dict[str, Any] | None) -> JSONResponse:
    if record is None:
        raise HTTPException(404, "Run not found")
    return JSONResponse(jsonable(record))


@router.get("/runs/{run_id}", summary="A run's status and result (figures, metrics, checks)",
            responses={404: {"description": "Run not found"}})
def get_run(run_id: str, manager: Manager) -> JSONResponse:
    return _record_or_404(manager.info(run_id))


@router.delete("/runs/{run_id}", status_code=202, summary="Cancel a run",
               responses={404: {"description": "Run not found"}})
def cancel_run(run_id: str, manager: Manager) -> JSONResponse:
    response = _record_or_404(manager.cancel(run_id))
    response.status_code = 202
    return response


def _parse_event_id(value: str | None) -> int | None:
    """A malformed Last-Event-ID is treated as absent: the client gets a full snapshot."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def find_streamable(run_id: str, manager: Manager) -> Run | dict[str, Any]:
    """The live run, or the stored record of a finished one; 404 before the stream starts."""
    run = manager.get(run_id)
    if run is not None:
        return run
    record = manager.store.load(run_id)
    if record is None:
        raise HTTPException(404, "Run not found")
    return record


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse,
            summary="Stream a run as Server-Sent Events",
            description="Events: status, frame, metrics, progress, then done or error.",
            responses={404: {"description": "Run not found"}})
async def stream_run(
    request: Request,
    run: Annotated[Run | dict[str, Any], Depends(find_streamable)],
    last_event_id: Annotated[str | None, Header(description="Resume after this event id.")] = None,
) -> AsyncIterable[ServerSentEvent]:
    if isinstance(run, dict):
        for event_type, payload in _stored_events(run):
            yield ServerSentEvent(raw_data=payload, event=event_type, id="0")
        return
    settings = request.app.state.manager.settings
    subscription = run.subscribe(asyncio.get_running_loop(), settings.subscriber_buffer_bytes,
                                 _parse_event_id(last_event_id))
    async for event in subscription.events():
        yield ServerSentEvent(raw_data=event.data, event=event.type, id=str(event.id))


def _stored_events(record: dict[str, Any]) -> list[tuple[str, str]]:
    """A stored run replayed as its final state: status, one react frame per figure, the end."""
    events = [("status", dumps({"status": record["status"], "device": record.get("device")}))]
    events += [("frame", dumps({"figure": name, "op": "react", "update": fig,
                                "indices": None, "max_points": None}))
               for name, fig in record["figures"].items()]
    if record.get("metrics"):
        events.append(("metrics", dumps(record["metrics"])))
    if record.get("progress"):
        events.append(("progress", dumps(record["progress"])))
    if record["status"] == "error":
        events.append(("error", dumps({"message": record.get("error")})))
    else:
        events.append(("done", dumps({"status": record["status"], "checks": record["checks"],
                                      "metrics": record.get("metrics", {})})))
    return events


@router.get("/health", summary="Liveness, workers and queue")
def health(manager: Manager) -> dict[str, Any]:
    return manager.health()


@router.get("/runs", summary="Recent finished runs (newest first)")
def recent_runs(manager: Manager, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict]:
    return manager.store.recent(limit)
