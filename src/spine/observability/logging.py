"""structlog for every log line of the process, Spine's and its libraries' (uvicorn's).

One event per action with a stable dotted name (``job.succeeded``), JSON when the stream
is not a terminal (what a log shipper reads) and readable columns when it is. Every line
carries what the context knows: ``request_id``, ``tenant``, ``job_id`` (bound by the API
middleware and the worker) and ``trace_id``/``span_id`` of the current span, so one
``grep`` follows an upload from its request through every pipeline step.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from spine.settings import Settings

#: Fields that would hold what people wrote or searched for. Spine's own events never set
#: them; if one ever does, its value is replaced here rather than written to the log.
UNSAFE_FIELDS = frozenset(
    {"text", "q", "query", "title", "filename", "metadata", "snippet", "body", "content"}
)
REDACTED = "[redacted]"


def current_request_id() -> str | None:
    """The request id bound to this context (by the API's RequestId middleware), if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value is not None else None


def add_trace_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event.setdefault("span_id", trace.format_span_id(context.span_id))
    return event


def redact_unsafe_fields(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in UNSAFE_FIELDS.intersection(event):
        event[key] = REDACTED
    return event


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging through one renderer."""
    stream = stream or sys.stderr
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not stream.isatty()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
        redact_unsafe_fields,
        structlog.processors.StackInfoRenderer(),
    ]
    # Tracebacks without the frames' local variables: those hold settings (secrets),
    # tokens, documents' text, whatever the failing code had in hand.
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(
            colors=stream.isatty(),
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
    )
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if as_json:
        final.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    final.append(renderer)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger made before configuration (at import) must follow it.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level)
    # Libraries that log every HTTP call at INFO would drown Spine's own events.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
