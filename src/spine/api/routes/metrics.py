"""Prometheus' scrape endpoint."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from spine.api.deps import ServicesDep
from spine.errors import Unauthenticated

router = APIRouter(tags=["observability"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, services: ServicesDep) -> Response:
    """RED per route, the queue and workers, SLO events, the breaker, caches, hot spots.

    Not a tenant's API (no tenant token reads it); with ``SPINE_METRICS_TOKEN`` set the
    scraper must send it as a bearer token, since the hot-spot series name tenants.
    """
    expected = services.settings.metrics_token
    if expected is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise Unauthenticated("the metrics endpoint wants its bearer token")
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
