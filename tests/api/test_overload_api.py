"""A tenant with too many unfinished jobs is told to come back later."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.api.app import create_app
from spine.service.container import Services


@pytest.fixture
def idle_client(services: Services) -> Iterator[TestClient]:
    """No workers: every upload stays PENDING."""
    services.settings.workers = 0
    services.settings.tenant_max_unfinished_jobs = 2
    services.settings.overload_retry_after_seconds = 7
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client


def upload(client: TestClient, headers: dict[str, str], n: int):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/documents", headers=headers, files={"file": (f"{n}.txt", f"doc {n}".encode())}
    )


def test_upload_over_the_unfinished_job_limit_is_429_with_retry_after(
    idle_client: TestClient, auth: AuthFactory
) -> None:
    assert upload(idle_client, auth(), 1).status_code == 202
    assert upload(idle_client, auth(), 2).status_code == 202
    refused = upload(idle_client, auth(), 3)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert refused.json()["type"] == "too-many-requests"
    assert len(idle_client.get("/v1/documents", headers=auth()).json()["items"]) == 2
    # Another tenant is not held back by this one.
    assert upload(idle_client, auth("other"), 1).status_code == 202
