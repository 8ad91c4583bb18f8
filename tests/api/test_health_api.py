"""/healthz, /readyz with a status per dependency, and /metrics' optional bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from spine.api.app import create_app
from spine.service.container import Services
from support.problems import assert_problem


class OpenBreakerFault:
    """Fault injection: a remote embedder whose breaker has opened."""

    state = "open"


def test_healthz_touches_nothing(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "blob_store": "ok",
        "embedder": "ok",
    }


def test_readyz_is_503_naming_the_failed_dependency(client: TestClient, services: Services) -> None:
    blob_root = services.blobs.root  # type: ignore[attr-defined]
    blob_root.rename(blob_root.with_name("blobs-gone"))
    body = assert_problem(client.get("/readyz"), 503, "unavailable")
    assert body["checks"]["blob_store"]["status"] == "failed"
    assert body["checks"]["database"]["status"] == "ok"
    assert "blob_store" in body["detail"]
    assert str(blob_root) not in str(body)


def test_an_open_breaker_degrades_but_stays_ready(client: TestClient, services: Services) -> None:
    services.breaker = OpenBreakerFault()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["embedder"] == {
        "status": "degraded",
        "detail": "breaker open",
        "duration_ms": response.json()["checks"]["embedder"]["duration_ms"],
    }


@pytest.fixture
def guarded(services: Services) -> Iterator[TestClient]:
    settings = services.settings.model_copy(update={"metrics_token": "scrape-me"})
    with TestClient(
        create_app(services=replace(services, settings=settings)), raise_server_exceptions=False
    ) as test_client:
        yield test_client


def test_metrics_want_their_token_when_one_is_set(guarded: TestClient) -> None:
    assert_problem(guarded.get("/metrics"), 401, "unauthenticated")
    wrong = guarded.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert_problem(wrong, 401, "unauthenticated")
    right = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert right.status_code == 200
    assert "spine_build_info" in right.text


def test_metrics_are_open_without_a_token(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


def test_an_upload_while_the_blob_store_is_gone_is_503_and_counts_against_availability(
    client: TestClient, services: Services
) -> None:
    from conftest import TEST_SECRET
    from spine.domain.auth import Role
    from support.api import bearer

    headers = bearer(services.settings, TEST_SECRET, "acme", Role.WRITER)
    blob_root = services.blobs.root  # type: ignore[attr-defined]
    blob_root.rename(blob_root.with_name("blobs-unmounted"))
    answer = client.post("/v1/documents", headers=headers, files={"file": ("a.txt", b"hello")})
    assert_problem(answer, 503, "unavailable")
    assert answer.headers["Retry-After"]
    from spine.service import slo

    availability = {entry.name: entry for entry in slo.report(services).slos}["availability"]
    assert availability.budget_bad == 1
