"""One upload followed from its HTTP request to the index step, by request id and trace.

The client sends ``X-Request-ID`` and a W3C ``traceparent``; the job stores both. Every
log line about the job carries that request id and trace id, and every span from the
request's to the last pipeline step's is in that trace, each one's parent the one before.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from starlette.testclient import TestClient

from conftest import AuthFactory
from support.api import wait_for_job
from support.telemetry import JsonLines, RecordingExporter, json_logs, recorded_spans

STEPS = ["fetch", "extract", "scrub", "chunk", "embed", "index"]


@pytest.fixture
def spans() -> Iterator[RecordingExporter]:
    with recorded_spans() as exporter:
        yield exporter


@pytest.fixture
def logs() -> Iterator[JsonLines]:
    with json_logs() as lines:
        yield lines


def _parent_chain(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = [span.name]
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def test_an_upload_is_followed_by_request_id_and_trace_to_the_index_step(
    client: TestClient, auth: AuthFactory, spans: RecordingExporter, logs: JsonLines
) -> None:
    trace_id = secrets.token_hex(16)
    caller_span = secrets.token_hex(8)
    request_id = "upload-" + secrets.token_hex(6)
    headers = {
        **auth("acme"),
        "X-Request-ID": request_id,
        "traceparent": f"00-{trace_id}-{caller_span}-01",
    }
    response = client.post(
        "/v1/documents",
        headers=headers,
        files={"file": ("notes.txt", b"Correlation ids follow the upload everywhere.")},
    )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == request_id
    job_id = response.json()["job"]["id"]
    assert wait_for_job(client, job_id, auth("acme"))["state"] == "SUCCEEDED"

    # -- logs: every line about the job names the request and the trace ----------------
    events = logs.events()
    about_job = [e for e in events if e.get("job_id") == job_id]
    assert {e["event"] for e in about_job} >= {"job.claimed", "job.step", "job.finished"}
    assert sorted(e["step"] for e in about_job if e["event"] == "job.step") == sorted(STEPS)
    for event in about_job:
        assert event.get("request_id") == request_id, event
        assert event.get("trace_id") == trace_id, event
        assert event.get("tenant") == "acme", event
    upload_lines = [
        e for e in events if e["event"] == "http.request" and e.get("route") == "/v1/documents"
    ]
    assert [e["request_id"] for e in upload_lines] == [request_id]
    assert upload_lines[0]["trace_id"] == trace_id

    # -- spans: request -> job -> every step, one trace, each parent the one before ----
    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if format_trace_id(s.context.trace_id) == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}
    by_name: dict[str, list[ReadableSpan]] = {}
    for s in in_trace:
        by_name.setdefault(s.name, []).append(s)
    (server,) = by_name["POST /v1/documents"]
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None
    assert format_span_id(server.parent.span_id) == caller_span
    (job_span,) = by_name["job.process"]
    assert job_span.parent is not None
    assert job_span.parent.span_id == server.context.span_id
    for step in STEPS:
        (step_span,) = by_name[f"pipeline.{step}"]
        assert _parent_chain(step_span, by_id) == [
            f"pipeline.{step}",
            "job.process",
            "POST /v1/documents",
        ]
    assert "queue.claim" in by_name
    # The database statements of the index step are in the trace too, under that step.
    index_span = by_name["pipeline.index"][0]
    statements = [
        s
        for s in in_trace
        if s.parent is not None and s.parent.span_id == index_span.context.span_id
    ]
    assert statements
    assert all(s.name.startswith("db ") for s in statements)
    assert any(
        s.attributes and s.attributes.get("db.system") in ("sqlite", "postgresql")
        for s in statements
    )


def test_metrics_show_requests_jobs_and_freshness(client: TestClient, auth: AuthFactory) -> None:
    response = client.post(
        "/v1/documents",
        headers=auth("acme"),
        files={"file": ("a.txt", b"Metrics count what happened to this file.")},
    )
    wait_for_job(client, response.json()["job"]["id"], auth("acme"))
    text = client.get("/metrics").text
    samples = _samples(text)
    assert (
        samples[
            (
                "spine_http_requests_total",
                (("method", "POST"), ("route", "/v1/documents"), ("status_class", "2xx")),
            )
        ]
        == 1
    )
    assert samples[("spine_jobs", (("state", "SUCCEEDED"),))] == 1
    assert samples[("spine_job_upload_to_searchable_seconds_count", ())] == 1
    assert samples[("spine_slo_events_total", (("outcome", "good"), ("slo", "freshness")))] == 1
    assert samples[("spine_job_runs_total", (("outcome", "succeeded"),))] == 1
    for step in STEPS:
        assert samples[("spine_pipeline_step_duration_seconds_count", (("step", step),))] == 1
    assert samples[("spine_dlq_depth", ())] == 0
    # No id is ever a label: only route templates name a document.
    assert re.search(r"(doc|job|chk)_[0-9a-f]{32}", text) is None


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found
