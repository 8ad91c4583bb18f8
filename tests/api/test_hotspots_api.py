"""GET /v1/admin/hotspots: only operators (admin + ops:read) read it, since it names
tenants; uploads of several tenants show up in its jobs dimension."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from spine.service.container import Services


def operator(auth: AuthFactory) -> dict[str, str]:
    return auth("acme", Role.ADMIN, scopes=["ops:read"])


def upload(client: TestClient, headers: dict[str, str], text: str) -> None:
    response = client.post(
        "/v1/documents", headers=headers, files={"file": ("a.txt", text.encode(), "text/plain")}
    )
    assert response.status_code in (200, 202), response.text


def hotspots(client: TestClient, auth: AuthFactory) -> dict[str, Any]:
    response = client.get("/v1/admin/hotspots", headers=operator(auth))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("role", "scopes"),
    [
        (Role.ADMIN, []),  # a tenant's admin must not see the other tenants' ids
        (Role.ADMIN, ["pii:read"]),
        (Role.WRITER, ["ops:read"]),  # the scope does not stand in for the role
        (Role.READER, ["ops:read"]),
    ],
)
def test_only_an_admin_with_ops_read_may_read_the_hotspots(
    client: TestClient, auth: AuthFactory, role: Role, scopes: list[str]
) -> None:
    response = client.get("/v1/admin/hotspots", headers=auth("acme", role, scopes=scopes))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "forbidden"


def test_without_a_token_the_hotspots_are_401(client: TestClient) -> None:
    assert client.get("/v1/admin/hotspots").status_code == 401


def test_uploads_of_two_tenants_show_in_the_jobs_dimension_with_their_shares(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    for n in range(3):
        upload(client, auth("acme"), f"acme's document number {n}")
    upload(client, auth("globex"), "globex's only document")
    upload(client, auth("globex"), "globex's only document")  # a duplicate queues nothing

    jobs = hotspots(client, auth)["jobs"]

    assert jobs["dimension"] == "jobs"
    assert jobs["total"] == 4
    assert jobs["threshold"] == services.settings.hotspot_share_threshold == 0.5
    assert jobs["window_seconds"] == services.settings.hotspot_window_seconds
    assert [(t["tenant"], t["count"], t["error"], t["hot"]) for t in jobs["top"]] == [
        ("acme", 3, 0, True),
        ("globex", 1, 0, False),
    ]
    assert [t["share"] for t in jobs["top"]] == [0.75, 0.25]
    assert jobs["other"] == {"count": 0, "error": 0, "share": 0.0}


def test_both_dimensions_are_reported_even_before_any_event(
    client: TestClient, auth: AuthFactory
) -> None:
    body = hotspots(client, auth)

    assert set(body) == {"requests", "jobs"}
    assert body["jobs"]["total"] == 0
    assert body["jobs"]["top"] == []
    assert body["requests"]["dimension"] == "requests"
    assert set(body["requests"]) == {
        "dimension",
        "window_seconds",
        "since",
        "total",
        "threshold",
        "top",
        "other",
    }


def test_more_tenants_than_k_leave_the_rest_in_other(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    radar = services.radar
    for n in range(services.settings.hotspot_top_k + 5):
        radar.observe("jobs", f"tenant-{n:02d}")
    radar.observe("jobs", "whale", 100)

    jobs = hotspots(client, auth)["jobs"]

    assert len(jobs["top"]) == services.settings.hotspot_top_k
    assert jobs["top"][0]["tenant"] == "whale"
    assert jobs["top"][0]["hot"] is True
    assert sum(t["share"] for t in jobs["top"]) + jobs["other"]["share"] == pytest.approx(1.0)


def test_the_route_is_documented_with_its_problem_responses(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/admin/hotspots"]["get"]

    assert {"401", "403", "429"} <= set(operation["responses"])
    assert operation["responses"]["403"]["content"].keys() == {"application/problem+json"}
