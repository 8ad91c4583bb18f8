"""Header and body size limits: refused with problem+json before any route runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.api.app import create_app
from spine.service.container import Services

PROBLEM_JSON = "application/problem+json"
HEADER_BYTES = 2048
HEADER_COUNT = 20
JSON_BYTES = 1024
UPLOAD_BYTES = 8192


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    settings = services.settings
    settings.workers = 0
    settings.max_header_bytes = HEADER_BYTES
    settings.max_header_count = HEADER_COUNT
    settings.max_json_body_bytes = JSON_BYTES
    settings.max_upload_bytes = UPLOAD_BYTES
    with TestClient(create_app(services=services), raise_server_exceptions=False) as test_client:
        yield test_client


def padded_retry_body(size: int) -> bytes:
    """A valid bulk-retry body of exactly ``size`` bytes."""
    body = {"limit": 10, "error_type": ""}
    filler = size - len(json.dumps(body).encode())
    body["error_type"] = "x" * filler
    encoded = json.dumps(body).encode()
    assert len(encoded) == size
    return encoded


# -- headers ----------------------------------------------------------------------------


def test_headers_over_the_byte_limit_are_431_before_authentication(
    client: TestClient, auth: AuthFactory
) -> None:
    refused = client.get("/healthz", headers={"X-Padding": "p" * HEADER_BYTES})
    assert refused.status_code == 431
    assert refused.headers["content-type"] == PROBLEM_JSON
    body = refused.json()
    assert body["type"] == "request-header-fields-too-large"
    assert body["status"] == 431
    assert str(HEADER_BYTES) in body["detail"]

    # An authenticated request is refused the same way, before its token is read.
    authed = client.get("/v1/documents", headers=auth() | {"X-Padding": "p" * HEADER_BYTES})
    assert authed.status_code == 431


def test_many_small_headers_add_up_to_the_byte_limit(client: TestClient) -> None:
    # 14 lines of 150 bytes (with ": " and CRLF): under the count limit, over the bytes.
    headers = {f"x-h{i:02}": "v" * 141 for i in range(14)}
    refused = client.get("/healthz", headers=headers)
    assert refused.status_code == 431
    assert "total" in refused.json()["detail"]


def test_header_bytes_are_counted_as_on_the_wire_up_to_the_limit(client: TestClient) -> None:
    """Name, value, ": " and CRLF of every header: exactly the limit passes, a byte more
    does not."""

    def request_of(total: int) -> Any:  # the test client's request (httpx2's)
        request = client.build_request("GET", "/healthz", headers={"x-padding": ""})
        sent = sum(len(name) + len(value) + 4 for name, value in request.headers.raw)
        return client.build_request("GET", "/healthz", headers={"x-padding": "p" * (total - sent)})

    at_limit, over = request_of(HEADER_BYTES), request_of(HEADER_BYTES + 1)
    assert sum(len(n) + len(v) + 4 for n, v in at_limit.headers.raw) == HEADER_BYTES
    assert client.send(at_limit).status_code == 200
    assert client.send(over).status_code == 431


def test_headers_under_the_limits_pass(client: TestClient, auth: AuthFactory) -> None:
    assert client.get("/healthz", headers={"X-Padding": "p" * (HEADER_BYTES // 2)}).is_success
    small = {f"x-h{i:02}": "v" for i in range(HEADER_COUNT - 8)}
    assert client.get("/v1/documents", headers=auth() | small).status_code == 200


def test_more_headers_than_the_count_limit_are_431(client: TestClient) -> None:
    headers = {f"x-h{i:02}": "v" for i in range(HEADER_COUNT + 1)}
    refused = client.get("/healthz", headers=headers)
    assert refused.status_code == 431
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert f"at most {HEADER_COUNT}" in refused.json()["detail"]


# -- bodies -----------------------------------------------------------------------------


def test_a_json_body_over_its_limit_is_413_on_a_non_upload_route(
    client: TestClient, auth: AuthFactory
) -> None:
    refused = client.post(
        "/v1/jobs/retry",
        headers=auth() | {"Content-Type": "application/json"},
        content=padded_retry_body(JSON_BYTES + 1),
    )
    assert refused.status_code == 413
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["type"] == "payload-too-large"
    assert str(JSON_BYTES) in refused.json()["detail"]


def test_a_streamed_json_body_is_cut_off_at_its_limit(
    client: TestClient, auth: AuthFactory
) -> None:
    """Over an ASGI transport that pulls the body chunk by chunk (TestClient reads it
    whole first), to see how much of it the app asked for."""
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'{"limit": 10, "error_type": "'
        for _ in range(1000):
            pulled += 512
            yield b"x" * 512
        yield b'"}'

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spine") as http:
            return await http.post(
                "/v1/jobs/retry",
                headers=auth() | {"Content-Type": "application/json"},
                content=body(),
            )

    refused = asyncio.run(post())

    assert refused.status_code == 413
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert pulled <= JSON_BYTES + 512  # stopped at the limit, not after the whole 500 KB


def test_a_json_body_at_its_limit_is_accepted(client: TestClient, auth: AuthFactory) -> None:
    answer = client.post(
        "/v1/jobs/retry",
        headers=auth() | {"Content-Type": "application/json"},
        content=padded_retry_body(JSON_BYTES),
    )
    assert answer.status_code == 200
    assert answer.json()["count"] == 0


def test_other_routes_get_the_json_limit_too(client: TestClient, auth: AuthFactory) -> None:
    for method, path in (("DELETE", "/v1/documents/doc_x"), ("POST", "/v1/jobs/job_x/retry")):
        refused = client.request(method, path, headers=auth(), content=b"x" * (JSON_BYTES + 1))
        assert refused.status_code == 413, (method, path)


def test_the_upload_route_keeps_the_upload_limit(client: TestClient, auth: AuthFactory) -> None:
    data = b"a" * (UPLOAD_BYTES // 2)  # several times the JSON limit
    accepted = client.post(
        "/v1/documents", headers=auth(), files={"file": ("a.txt", data, "text/plain")}
    )
    assert accepted.status_code == 202
    refused = client.post(
        "/v1/documents",
        headers=auth(),
        files={"file": ("b.txt", b"b" * (UPLOAD_BYTES + 1), "text/plain")},
    )
    assert refused.status_code == 413
