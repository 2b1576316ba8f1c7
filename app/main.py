"""``create_app()``: the routers, static files, the bundled Plotly.js and the run manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from app import api, images, pages, security
from app.figures import default_template
from app.jobs import RunManager
from app.settings import Settings, get_settings
from app.store import RunStore
from engine.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
# Served from the installed plotly package so the site works offline, with no CDN.
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    manager = RunManager(settings, load_registry(settings.extra_experiments),
                         RunStore(settings.db_path))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            manager.stop()

    app = FastAPI(
        title="Deep Learning Cheat Sheet Playground",
        summary="Run the formulas of the deep-learning cheat sheet as live experiments.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.manager = manager
    security.install(app, settings)
    app.include_router(api.router)
    app.include_router(images.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/vendor/plotly-template.json", include_in_schema=False)
    def plotly_template() -> JSONResponse:
        return JSONResponse(default_template(), headers={"Cache-Control": "public, max-age=86400"})

    return app
