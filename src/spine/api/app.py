"""The application factory: ``create_app(settings)`` builds everything at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from spine import __version__
from spine.api import auditing, problems
from spine.api.limits import BodySizeLimit, HeaderSizeLimit
from spine.api.ratelimit import RateLimitHeaders
from spine.api.request_id import RequestId
from spine.api.routes import (
    audit,
    documents,
    health,
    hotspots,
    jobs,
    metrics,
    privacy,
    search,
    slo,
)
from spine.api.telemetry import Telemetry
from spine.queue.worker import WorkerPool
from spine.service.bootstrap import bootstrap, open_verifier
from spine.service.container import Services
from spine.service.slo import SloFlusher
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
        app.state.verifier = open_verifier(settings, app.state.services.metrics)
        pool = WorkerPool(app.state.services, settings.workers)
        pool.start()
        flusher = SloFlusher(app.state.services)
        flusher.start()
        try:
            yield
        finally:
            pool.stop()
            # After the workers (jobs finishing in the grace period count for freshness)
            # and before the database closes: the last flush writes this process's counts.
            flusher.stop()
            if owned:
                app.state.services.close()

    app = FastAPI(
        title="Spine",
        version=__version__,
        description="Multi-tenant document search: upload, process, search.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry spans, metrics and logs are off: its server span
        # exports the query string (a search's query is personal data as likely as not)
        # and its logs quote invalid input. api.telemetry traces by route template.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    problems.install(app)
    auditing.install(app)
    # The last added runs first: headers are checked, then the body, and the RateLimit
    # headers are added to whatever the routes answer.
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_json_body_bytes,
        upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(
        HeaderSizeLimit,
        max_bytes=settings.max_header_bytes,
        max_count=settings.max_header_count,
    )
    # Every answer carries X-Request-ID, the limits' 413/431 and the rate limiter's 429
    # included; Telemetry, outermost, times and traces all of it.
    app.add_middleware(RequestId)
    app.add_middleware(Telemetry)
    for module in (health, metrics, documents, jobs, search, audit, privacy, slo, hotspots):
        app.include_router(module.router)
    return app
