"""``SPINE_OTLP_ENDPOINT`` set: a real ``spine serve`` exports its spans over OTLP/HTTP.

The collector here is a plain HTTP server that decodes what it is sent with the
OpenTelemetry protobuf definitions, as a real collector would.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import TEST_SECRET
from spine.domain.auth import Role
from spine.settings import Settings
from support.api import bearer, wait_for_job
from support.server import SpineProcess, free_port, process_env

pytestmark = pytest.mark.slow


class Collector:
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                export = ExportTraceServiceRequest()
                export.ParseFromString(body)
                collector.requests.append(export)
                collector.content_types.append(self.headers["Content-Type"])
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self) -> list[tuple[str, str, dict[str, str]]]:
        """(name, trace id, attributes as text) of every span received."""
        found = []
        for export in list(self.requests):
            for resource in export.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: str(a.value) for a in span.attributes}
                        found.append((span.name, span.trace_id.hex(), attributes))
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    yield running
    running.server.shutdown()


def test_spans_reach_the_collector_in_the_uploads_trace(
    tmp_path: Path, collector: Collector
) -> None:
    env = process_env(tmp_path / "data", TEST_SECRET, otlp_endpoint=collector.url)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # the batch processor's wait, in ms
    server, url = SpineProcess.serve(tmp_path / "data", env, workers=1)
    try:
        headers = bearer(Settings(jwt_secret=TEST_SECRET), TEST_SECRET, "acme", Role.WRITER)
        trace_id = secrets.token_hex(16)
        with httpx.Client(base_url=url, timeout=30) as client:
            answer = client.post(
                "/v1/documents",
                headers={**headers, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                files={"file": ("a.txt", b"Spans leave the process over OTLP.")},
            )
            assert answer.status_code == 202, answer.text
            assert wait_for_job(client, answer.json()["job"]["id"], headers)["state"] == "SUCCEEDED"
            searched = client.get("/v1/search", headers=headers, params={"q": "jane@example.com"})
            assert searched.status_code == 200
        deadline = time.monotonic() + 30
        wanted = {"POST /v1/documents", "job.process", "pipeline.embed", "pipeline.index"}
        while time.monotonic() < deadline:
            in_trace = {name for name, trace, _ in collector.spans() if trace == trace_id}
            if wanted <= in_trace and any(n == "GET /v1/search" for n, _, _ in collector.spans()):
                break
            time.sleep(0.2)
        assert wanted <= in_trace, in_trace
        assert set(collector.content_types) == {"application/x-protobuf"}
        resources = {
            str(attribute.value.string_value)
            for export in collector.requests
            for resource in export.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }
        assert resources == {"spine"}
        # What someone searched for never leaves in a span.
        assert "jane" not in repr(collector.spans())
    finally:
        server.terminate()
