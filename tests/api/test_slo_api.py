"""GET /v1/admin/slo: only operators (admin + ops:read) read it, and it moves with events.

Events are recorded straight into the recorder: the middleware that classifies real
requests is tested on its own."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from spine.service.container import Services

OPERATOR_SCOPES = ["ops:read"]


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {status["name"]: status for status in body["slos"]}


def record(services: Services, name: str, *, good: int, bad: int, at: datetime) -> None:
    for _ in range(good):
        services.slo.record(name, True, at)
    for _ in range(bad):
        services.slo.record(name, False, at)


@pytest.mark.parametrize(
    ("role", "scopes"),
    [
        (Role.ADMIN, []),  # a tenant's admin is not the service's operator
        (Role.ADMIN, ["pii:read"]),
        (Role.WRITER, OPERATOR_SCOPES),  # the scope does not stand in for the role
        (Role.READER, OPERATOR_SCOPES),
    ],
)
def test_only_an_admin_with_ops_read_may_read_the_slos(
    client: TestClient, auth: AuthFactory, role: Role, scopes: list[str]
) -> None:
    response = client.get("/v1/admin/slo", headers=auth("acme", role, scopes=scopes))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "forbidden"


def test_without_a_token_the_slos_are_401(client: TestClient) -> None:
    response = client.get("/v1/admin/slo")
    assert response.status_code == 401


def test_a_refused_read_is_audited_in_the_callers_tenant(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    client.get("/v1/admin/slo", headers=auth("acme", Role.ADMIN))
    with services.db.read() as uow:
        chain = list(uow.audit.chain("acme"))
    assert [(e.action, e.resource, e.outcome) for e in chain] == [
        ("auth.denied", "GET /v1/admin/slo", "forbidden")
    ]


def test_an_operator_sees_the_three_slos_with_their_objectives(
    client: TestClient, auth: AuthFactory
) -> None:
    response = client.get("/v1/admin/slo", headers=auth("acme", Role.ADMIN, scopes=["ops:read"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window_days"] == 28
    slos = by_name(body)
    assert list(slos) == ["availability", "search_latency", "freshness"]
    assert [s["objective"] for s in slos.values()] == [0.999, 0.99, 0.95]
    assert [s["threshold_seconds"] for s in slos.values()] == [None, 0.25, 60.0]
    assert set(slos["availability"]["burn_rates"]) == {"5m", "1h", "6h"}
    assert len(slos["availability"]["history"]) == 24


def test_bad_events_spend_the_budget_and_burn_the_short_window_hardest(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    # Search latency, not availability: these GETs are requests, and counted as such.
    now = services.clock()
    headers = auth("ops", Role.ADMIN, scopes=OPERATOR_SCOPES)
    record(services, "search_latency", good=950, bad=0, at=now - timedelta(hours=5))
    record(services, "search_latency", good=45, bad=0, at=now - timedelta(minutes=30))
    before = by_name(client.get("/v1/admin/slo", headers=headers).json())["search_latency"]
    assert before["budget_remaining"] == 1.0
    assert before["burn_rates"] == {"5m": 0.0, "1h": 0.0, "6h": 0.0}

    # 5 bad of 1000 against 99 %: half of the 10 allowed bad events are spent.
    record(services, "search_latency", good=0, bad=5, at=now)
    after = by_name(client.get("/v1/admin/slo", headers=headers).json())["search_latency"]
    assert (after["good"], after["total"], after["budget_bad"]) == (995, 1000, 5)
    assert after["budget_allowed"] == pytest.approx(10.0)
    assert after["budget_remaining"] == pytest.approx(0.5)
    assert after["sli"] == pytest.approx(0.995)
    # Error ratios 5/5, 5/50 and 5/1000, each over the 1 % allowed.
    assert after["burn_rates"]["5m"] == pytest.approx(100.0)
    assert after["burn_rates"]["1h"] == pytest.approx(10.0)
    assert after["burn_rates"]["6h"] == pytest.approx(0.5)
    assert after["history"][-1] == pytest.approx(5 / 50)
    assert after["history"][-6] == 0.0


def test_an_overspent_budget_goes_negative(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    record(services, "freshness", good=0, bad=20, at=services.clock() - timedelta(hours=2))
    headers = auth("ops", Role.ADMIN, scopes=OPERATOR_SCOPES)
    freshness = by_name(client.get("/v1/admin/slo", headers=headers).json())["freshness"]
    # 20 bad where 5 % of 20 = 1 was allowed: 19 budgets over.
    assert freshness["budget_remaining"] == pytest.approx(-19.0)
    assert freshness["sli"] == 0.0
