"""The application factory: ``create_app(settings)`` builds everything at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from spine import __version__
from spine.api import problems
from spine.api.limits import BodySizeLimit
from spine.api.routes import documents, health, jobs, search
from spine.queue.worker import WorkerPool
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.service.tokens import load_or_create_secret
from spine.settings import Settings


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Nothing is opened here: the database, model and workers start in the lifespan.

    ``services`` lets tests share one loaded model across apps; the app then neither
    builds nor closes them.
    """
    settings = settings or (services.settings if services else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or bootstrap(settings)
        app.state.jwt_secret = load_or_create_secret(settings.jwt_secret, settings.data_dir)
        pool = WorkerPool(app.state.services, settings.workers)
        pool.start()
        try:
            yield
        finally:
            pool.stop()
            if owned:
                app.state.services.close()

    app = FastAPI(
        title="Spine",
        version=__version__,
        description="Multi-tenant document search: upload, process, search.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    for module in (health, documents, jobs, search):
        app.include_router(module.router)
    return app
