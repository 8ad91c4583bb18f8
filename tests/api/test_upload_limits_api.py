"""The upload size limit holds while the body streams, not after it was read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.api.app import create_app
from spine.api.limits import MULTIPART_OVERHEAD_BYTES
from spine.service.container import Services

LIMIT = 4096


@pytest.fixture
def small_limit_client(services: Services) -> Iterator[TestClient]:
    services.settings.max_upload_bytes = LIMIT
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client


def test_declared_oversize_body_is_413_before_reading(
    small_limit_client: TestClient, auth: AuthFactory
) -> None:
    data = b"a" * (LIMIT + MULTIPART_OVERHEAD_BYTES + 1)
    response = small_limit_client.post(
        "/v1/documents", headers=auth(), files={"file": ("big.txt", data, "text/plain")}
    )
    assert response.status_code == 413
    assert response.json()["type"] == "payload-too-large"
    assert small_limit_client.get("/v1/documents", headers=auth()).json()["items"] == []


def test_streamed_oversize_body_without_length_is_413(
    small_limit_client: TestClient, auth: AuthFactory
) -> None:
    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\n'
        for _ in range(200):
            yield b"a" * 1024

    response = small_limit_client.post(
        "/v1/documents",
        headers=auth() | {"Content-Type": "multipart/form-data; boundary=b"},
        content=body(),
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


def test_file_one_byte_over_the_limit_is_413_and_at_the_limit_is_accepted(
    small_limit_client: TestClient, auth: AuthFactory
) -> None:
    over = small_limit_client.post(
        "/v1/documents", headers=auth(), files={"file": ("a.txt", b"a" * (LIMIT + 1), "text/plain")}
    )
    assert over.status_code == 413
    assert over.json()["type"] == "payload-too-large"
    at = small_limit_client.post(
        "/v1/documents", headers=auth(), files={"file": ("b.txt", b"b" * LIMIT, "text/plain")}
    )
    assert at.status_code == 202
    staging = small_limit_client.app.state.services.blobs.root / ".staging"  # type: ignore[attr-defined]
    assert list(staging.iterdir()) == []
