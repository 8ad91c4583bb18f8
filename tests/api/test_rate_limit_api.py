"""Rate limits per subject and per tenant, over HTTP, on a clock the test moves."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TEST_SECRET
from spine.api.app import create_app
from spine.api.deps import Reader, Writer
from spine.domain.auth import Role
from spine.service.container import Services, utc_now
from spine.settings import Settings
from support.api import bearer

PROBLEM_JSON = "application/problem+json"
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy")


class FrozenClock:
    """Stands still unless the test moves it, so no bucket refills behind the test's back.
    It starts at the real time: tokens are checked against the real time too."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(services: Services) -> FrozenClock:
    frozen = FrozenClock()
    services.clock = frozen
    return frozen


@pytest.fixture
def limits(services: Services) -> Settings:
    """Small buckets; each test sets the ones it exercises before the app starts."""
    settings = services.settings
    settings.workers = 0
    settings.rate_limit_reader = "1/s burst 3"
    settings.rate_limit_writer = "1/s burst 3"
    settings.rate_limit_admin = "1/s burst 3"
    settings.rate_limit_tenant_factor = 10
    return settings


@pytest.fixture
def client(services: Services, limits: Settings, clock: FrozenClock) -> Iterator[TestClient]:
    with TestClient(create_app(services=services), raise_server_exceptions=False) as test_client:
        yield test_client


def token(
    settings: Settings, tenant: str = "acme", subject: str = "alice", role: Role = Role.WRITER
) -> dict[str, str]:
    return bearer(settings, TEST_SECRET, tenant, role, subject=subject)


def rate_headers(response: Any) -> dict[str, str]:
    """``response`` is the test client's (httpx2's, not httpx's)."""
    return {name: response.headers[name] for name in RATE_HEADERS if name in response.headers}


def test_the_burst_passes_then_429_with_retry_after_and_ratelimit_headers(
    client: TestClient, limits: Settings
) -> None:
    alice = token(limits)
    answers = [client.get("/v1/documents", headers=alice) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    policy = '3;w=3;comment="subject", 30;w=3;comment="tenant"'
    assert [rate_headers(a) for a in answers] == [
        {"ratelimit-limit": "3", "ratelimit-remaining": str(left),
         "ratelimit-reset": str(reset), "ratelimit-policy": policy}
        for left, reset in ((2, 1), (1, 2), (0, 3))
    ]  # fmt: skip

    refused = client.get("/v1/documents", headers=alice)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["type"] == "too-many-requests"
    assert refused.headers["retry-after"] == "1"
    assert rate_headers(refused) == {
        "ratelimit-limit": "3",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "3",
        "ratelimit-policy": policy,
    }


def test_retry_after_is_the_wait_for_one_token_in_whole_seconds_rounded_up(
    client: TestClient, limits: Settings, clock: FrozenClock
) -> None:
    limits.rate_limit_writer = "1/m burst 1"
    alice = token(limits)
    assert client.get("/v1/documents", headers=alice).status_code == 200

    clock.advance(15.5)
    refused = client.get("/v1/documents", headers=alice)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "45"  # 44.5 s left

    clock.advance(44.0)
    assert client.get("/v1/documents", headers=alice).headers["retry-after"] == "1"

    clock.advance(0.5)
    assert client.get("/v1/documents", headers=alice).status_code == 200


def test_tokens_refill_over_time_up_to_the_burst(
    client: TestClient, limits: Settings, clock: FrozenClock
) -> None:
    limits.rate_limit_writer = "2/s burst 2"
    alice = token(limits)

    def statuses(n: int) -> list[int]:
        return [client.get("/v1/documents", headers=alice).status_code for _ in range(n)]

    assert statuses(3) == [200, 200, 429]
    clock.advance(0.5)  # one token back
    assert statuses(2) == [200, 429]
    clock.advance(3600)  # an idle hour gives back the burst, no more
    assert statuses(3) == [200, 200, 429]


def test_subjects_of_one_tenant_share_its_bucket_and_other_tenants_do_not(
    client: TestClient, limits: Settings
) -> None:
    limits.rate_limit_writer = "1/s burst 2"
    limits.rate_limit_tenant_factor = 2  # the tenant's writers share 4
    for subject in ("alice", "bob"):
        for _ in range(2):
            assert client.get("/v1/documents", headers=token(limits, subject=subject)).is_success

    carol = client.get("/v1/documents", headers=token(limits, subject="carol"))

    assert carol.status_code == 429  # carol never sent a request: the tenant's bucket is empty
    assert carol.headers["ratelimit-limit"] == "4"  # the tenant's bucket is the limiting one
    assert "tenant" in carol.json()["detail"]
    other = client.get("/v1/documents", headers=token(limits, tenant="globex", subject="carol"))
    assert other.status_code == 200
    assert other.headers["ratelimit-remaining"] == "1"


def test_each_role_has_its_own_policy_and_its_own_tenant_bucket(
    client: TestClient, limits: Settings
) -> None:
    limits.rate_limit_reader = "1/s burst 1"
    limits.rate_limit_writer = "1/s burst 5"
    limits.rate_limit_tenant_factor = 1
    reader = token(limits, subject="rita", role=Role.READER)
    writer = token(limits, subject="will", role=Role.WRITER)

    assert client.get("/v1/documents", headers=reader).headers["ratelimit-limit"] == "1"
    assert client.get("/v1/documents", headers=reader).status_code == 429
    # The tenant's readers are out of tokens; its writers are not.
    answer = client.get("/v1/documents", headers=writer)
    assert answer.status_code == 200
    assert answer.headers["ratelimit-limit"] == "5"


def test_every_authenticated_response_carries_the_headers_whatever_made_it(
    client: TestClient, limits: Settings
) -> None:
    limits.rate_limit_writer = "1/s burst 100"
    alice = token(limits)
    reader = token(limits, subject="rita", role=Role.READER)
    upload = client.post(
        "/v1/documents", headers=alice, files={"file": ("a.txt", b"some text", "text/plain")}
    )
    document_id = upload.json()["document"]["id"]
    answers = {
        "upload (a returned Response)": upload,
        "model": client.get(f"/v1/documents/{document_id}", headers=alice),
        "bulk retry (a returned Response)": client.post(
            "/v1/jobs/retry", headers=alice, json={"limit": 10}
        ),
        "not found": client.get("/v1/documents/doc_missing", headers=alice),
        "invalid query": client.get("/v1/documents?limit=0", headers=alice),
        "forbidden": client.delete(f"/v1/documents/{document_id}", headers=reader),
        "no content": client.delete(f"/v1/documents/{document_id}", headers=alice),
    }
    assert {name: a.status_code for name, a in answers.items()} == {
        "upload (a returned Response)": 202,
        "model": 200,
        "bulk retry (a returned Response)": 200,
        "not found": 404,
        "invalid query": 422,
        "forbidden": 403,
        "no content": 204,
    }
    for name, answer in answers.items():
        assert set(rate_headers(answer)) == set(RATE_HEADERS), name
    alices = [int(a.headers["ratelimit-remaining"]) for n, a in answers.items() if n != "forbidden"]
    assert alices == [99, 98, 97, 96, 95, 94]  # each one was charged, once
    assert answers["forbidden"].headers["ratelimit-remaining"] == "2"  # rita's own bucket


def test_a_route_that_asks_for_the_caller_twice_charges_once(
    services: Services, limits: Settings, clock: FrozenClock
) -> None:
    app = create_app(services=services)

    @app.get("/v1/test-two-principals")
    def two_principals(reader: Reader, writer: Writer) -> dict[str, str]:
        return {"subject": writer.subject}

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/v1/test-two-principals", headers=token(limits))

    assert answer.status_code == 200
    assert answer.headers["ratelimit-remaining"] == "2"


def test_refused_role_checks_are_charged_too(client: TestClient, limits: Settings) -> None:
    reader = token(limits, subject="rita", role=Role.READER)
    for _ in range(3):
        forbidden = client.post(
            "/v1/documents", headers=reader, files={"file": ("a.txt", b"x", "text/plain")}
        )
        assert forbidden.status_code == 403
    assert client.get("/v1/documents", headers=reader).status_code == 429


def test_a_throttled_upload_stores_nothing(
    client: TestClient, limits: Settings, services: Services
) -> None:
    alice = token(limits)
    for _ in range(3):
        client.get("/v1/documents", headers=alice)

    refused = client.post(
        "/v1/documents", headers=alice, files={"file": ("a.txt", b"not stored", "text/plain")}
    )

    assert refused.status_code == 429
    assert list(services.blobs.list_blobs()) == []
    with services.db.read() as uow:
        assert uow.documents.list("acme", limit=10, after=None) == []


def test_unauthenticated_routes_and_answers_are_neither_limited_nor_labelled(
    client: TestClient, limits: Settings
) -> None:
    limits.rate_limit_writer = "1/s burst 1"
    for path in ("/healthz", "/readyz") * 5:
        health = client.get(path)
        assert health.status_code == 200
        assert rate_headers(health) == {}
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        refused = client.get("/v1/documents", headers=headers)
        assert refused.status_code == 401
        assert rate_headers(refused) == {}
    # None of that used alice's one token.
    assert client.get("/v1/documents", headers=token(limits)).status_code == 200


def test_an_invalid_policy_stops_the_start() -> None:
    with pytest.raises(ValueError, match="rate limit policy"):
        Settings(rate_limit_reader="lots")


def test_two_api_processes_on_one_redis_share_a_callers_bucket(
    services: Services, limits: Settings, clock: FrozenClock
) -> None:
    """``SPINE_REDIS_URL``: a caller who spent the burst on one API process is refused
    by the other, as if there were one."""
    from dataclasses import replace

    import redis as redis_client

    from spine.adapters.ratelimit.redis import RedisRateLimiter

    url = os.environ.get("SPINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis_client.Redis.from_url(url).ping()
    except redis_client.RedisError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Redis at {url}")
    prefix = f"spine-test:{uuid.uuid4().hex}:"
    first = replace(services, rate_limiter=RedisRateLimiter.from_url(url, prefix=prefix))
    second = replace(services, rate_limiter=RedisRateLimiter.from_url(url, prefix=prefix))
    alice = token(limits)
    with (
        TestClient(create_app(services=first), raise_server_exceptions=False) as one,
        TestClient(create_app(services=second), raise_server_exceptions=False) as other,
    ):
        spent = [one.get("/v1/documents", headers=alice).status_code for _ in range(3)]
        refused = other.get("/v1/documents", headers=alice)
    assert spent == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
