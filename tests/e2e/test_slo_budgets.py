"""The SLO report is fed by real requests: injected 5xx answers spend the availability
budget, injected slow searches the latency budget, and only those."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from spine.service import search as search_service
from spine.service.container import Services


def slo_report(client: TestClient, auth: AuthFactory) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/admin/slo", headers=auth("ops", Role.ADMIN, scopes=["ops:read"]))
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()["slos"]}


def test_5xx_answers_and_slow_searches_spend_their_budgets(
    client: TestClient, auth: AuthFactory, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A generous threshold: on a loaded machine a real search must not miss it by chance.
    services.settings.slo_search_latency_seconds = 1.0
    reader = auth("acme", Role.READER)
    for _ in range(20):
        assert client.get("/v1/search", headers=reader, params={"q": "fine"}).status_code == 200
    before = slo_report(client, auth)
    assert before["availability"]["budget_remaining"] == 1.0
    assert before["search_latency"]["total"] == 20
    slow_already = before["search_latency"]["budget_bad"]  # 0 unless the machine stalled

    real_search = search_service.search
    threshold = services.settings.slo_search_latency_seconds

    def search_slower_than_the_slo_fault(*args: Any, **kwargs: Any) -> Any:
        time.sleep(threshold + 0.05)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(search_service, "search", search_slower_than_the_slo_fault)
    for _ in range(3):
        assert client.get("/v1/search", headers=reader, params={"q": "slow"}).status_code == 200

    def search_crashing_fault(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(search_service, "search", search_crashing_fault)
    for _ in range(2):
        assert client.get("/v1/search", headers=reader, params={"q": "boom"}).status_code == 500

    after = slo_report(client, auth)
    availability, latency = after["availability"], after["search_latency"]
    # The two 500s are the only bad requests (the report's own calls count as good).
    assert availability["budget_bad"] == 2
    assert availability["total"] - before["availability"]["total"] == 3 + 2 + 1
    assert availability["budget_remaining"] == pytest.approx(
        1 - 2 / (availability["total"] * (1 - availability["objective"]))
    )
    assert availability["budget_remaining"] < 0  # 2 of ~27 requests: far past 0.1 %
    # Slow and failed searches both miss the latency objective.
    bad = slow_already + 3 + 2
    assert latency["budget_bad"] == bad
    assert latency["total"] == 20 + 3 + 2
    assert latency["sli"] == pytest.approx((25 - bad) / 25)
    # Everything happened within the last five minutes: the short window burns hardest.
    assert latency["burn_rates"]["5m"] == pytest.approx((bad / 25) / (1 - latency["objective"]))
    assert latency["burn_rates"]["5m"] >= latency["burn_rates"]["6h"] > 0
    # Freshness saw no upload: untouched.
    assert after["freshness"]["budget_bad"] == 0
