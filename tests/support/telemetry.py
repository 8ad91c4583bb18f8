"""Spans and log lines as a test sees them: the SDK's in-memory exporter, and JSON lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spine.observability.logging import configure_logging
from spine.observability.tracing import configure_tracing
from spine.settings import Settings


class RecordingExporter(InMemorySpanExporter):
    """Keeps spans only while a test records: the provider is process-wide and every
    later test makes spans too."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.recording:
            return SpanExportResult.SUCCESS
        return super().export(spans)


_exporter: RecordingExporter | None = None


def span_exporter() -> RecordingExporter:
    """The process's provider, installed on first use with a synchronous in-memory export."""
    global _exporter
    if _exporter is None:
        _exporter = RecordingExporter()
        configure_tracing(Settings())
        provider = trace.get_tracer_provider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))  # type: ignore[attr-defined]
    return _exporter


@contextmanager
def recorded_spans() -> Iterator[RecordingExporter]:
    exporter = span_exporter()
    exporter.clear()
    exporter.recording = True
    try:
        yield exporter
    finally:
        exporter.recording = False
        exporter.clear()


class JsonLines:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def text(self) -> str:
        return self._stream.getvalue()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._stream.getvalue().splitlines() if line]


@contextmanager
def json_logs(level: str = "INFO") -> Iterator[JsonLines]:
    """Spine's real logging set-up, writing JSON lines to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level=level), stream=stream)  # type: ignore[arg-type]
    try:
        yield JsonLines(stream)
    finally:
        structlog.reset_defaults()
        root.handlers, root.level = saved[0], saved[1]
