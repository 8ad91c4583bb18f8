"""OpenTelemetry traces: one provider per process, W3C trace context in and out.

The API's spans come from the FastAPI instrumentation (it reads ``traceparent``); a job
keeps its request's ``traceparent`` so the worker's spans join that trace however late
and wherever the job runs. Database statements get a span each (:func:`trace_engine`).
Spans are always made when a provider is installed, so log lines carry real trace ids;
they leave the process only when ``SPINE_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import event
from sqlalchemy.engine import Engine

from spine import __version__
from spine.settings import Settings

tracer = trace.get_tracer("spine", __version__)
_propagator = TraceContextTextMapPropagator()


def configure_tracing(settings: Settings) -> None:
    """Install the SDK's provider for this process (once: OpenTelemetry refuses a second)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "spine", "service.version": __version__}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    trace.set_tracer_provider(provider)


def current_traceparent() -> str | None:
    """The current span as a W3C ``traceparent`` header value, to carry on a job."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> Context | None:
    """The remote parent a ``traceparent`` names; None (a new trace) when absent or bad."""
    if not traceparent:
        return None
    context = _propagator.extract({"traceparent": traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def trace_engine(engine: Engine, *, system: str) -> None:
    """A CLIENT span for each statement on ``engine``.

    Hand-written on SQLAlchemy's cursor events because the OpenTelemetry SQLAlchemy
    instrumentor is a process-wide singleton that instruments one set of engines once,
    while Spine (and each test) opens engines of its own. The statement's text is kept
    (bound parameters are not: they hold tenant data).
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _before(
        conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if not trace.get_current_span().is_recording():
            # Statements outside any traced work (idle workers polling the queue twice a
            # second) would each start a trace of their own: noise, not signal.
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        current = tracer.start_span(
            f"db {verb}",
            kind=SpanKind.CLIENT,
            attributes={"db.system": system, "db.statement": statement[:2000]},
        )
        if context is not None:
            context._spine_span = current

    @event.listens_for(engine, "after_cursor_execute")
    def _after(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        current = getattr(context, "_spine_span", None)
        if current is not None:
            current.end()
            context._spine_span = None

    @event.listens_for(engine, "handle_error")
    def _error(exception_context: Any) -> None:
        context = exception_context.execution_context
        current = getattr(context, "_spine_span", None)
        if current is not None:
            error = type(exception_context.original_exception).__name__
            current.set_status(Status(StatusCode.ERROR, error))
            current.end()
            context._spine_span = None
