"""Per request: a server span, RED metrics, SLO events, the radar's tally and one log line.

Pure ASGI and outermost, so it sees every answer (the limits' 413/431, the rate limiter's
429, unhandled 500s) and its span is current while everything inside logs. Hand-written
rather than the OpenTelemetry ASGI instrumentation: that records the full URL, and a
search URL's query is what someone searched for (personal data, as likely as not). Here a
request is named by its route template only: ``GET /v1/documents/{document_id}``.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.domain.auth import Principal
from spine.observability.tracing import context_from, tracer
from spine.service.container import Services

log = structlog.get_logger("spine.http")

UNMATCHED = "unmatched"
#: Probes and scrapes: counted in RED, but neither traced nor in the availability SLO.
PLUMBING = frozenset({"/healthz", "/readyz", "/metrics"})
SEARCH_ROUTES = frozenset({"/v1/search"})
_TRACEPARENT = b"traceparent"


def route_of(scope: Scope) -> str:
    """The route template that answered, or that would have: a request refused before
    routing (413, 431) is matched here. Never the raw path: labels must stay few."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return str(candidate.path)
    return UNMATCHED


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Telemetry:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services: Services | None = getattr(scope["app"].state, "services", None)
        if services is None:  # the lifespan has not run: nothing to record into
            await self.app(scope, receive, send)
            return
        method = str(scope["method"])
        incoming = next((v for k, v in scope.get("headers", ()) if k == _TRACEPARENT), None)
        parent = context_from(incoming.decode("latin-1") if incoming else None)
        status = 500  # what the client gets if nothing is sent before an error
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        metrics = services.metrics
        metrics.http_in_flight.inc()
        with tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, record_exception=False
        ) as span:
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                metrics.http_in_flight.dec()
                seconds = time.perf_counter() - started
                route = route_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                _record(services, scope, method, route, status, seconds)


def _record(
    services: Services, scope: Scope, method: str, route: str, status: int, seconds: float
) -> None:
    metrics = services.metrics
    metrics.http_requests.labels(
        route=route, method=method, status_class=status_class(status)
    ).inc()
    metrics.http_duration.labels(route=route, method=method).observe(seconds)
    state: dict[str, Any] = scope.get("state", {})
    principal = state.get("principal")
    tenant = principal.tenant_id if isinstance(principal, Principal) else None
    if route not in PLUMBING:
        now = services.clock()
        settings = services.settings
        services.slo.record("availability", status < 500, now)
        # A search the caller got wrong (400, 401, 429) says nothing about our latency.
        if route in SEARCH_ROUTES and not 400 <= status < 500:
            fast = seconds <= settings.slo_search_latency_seconds
            services.slo.record("search_latency", status < 500 and fast, now)
        if tenant is not None:
            services.radar.observe("requests", tenant)
    (log.debug if route in PLUMBING else log.info)(
        "http.request",
        method=method,
        route=route,
        status=status,
        duration_ms=round(seconds * 1000, 2),
        request_id=state.get("request_id"),
        tenant=tenant,
    )
