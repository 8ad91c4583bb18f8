"""Idempotency-Key with Stripe's semantics on the unsafe routes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import TEST_SECRET, AuthFactory
from spine.service.container import Services
from spine.settings import Settings
from support.api import bearer, wait_for_job
from support.server import SpineProcess, process_env

TEXT = b"Idempotent requests make retries safe for clients on flaky networks."


def post(client: TestClient, headers: dict[str, str], key: str | None, data: bytes = TEXT, **form):  # type: ignore[no-untyped-def]
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/v1/documents",
        headers=headers | extra,
        files={"file": ("note.txt", data, "text/plain")},
        data=form,
    )


def test_same_key_same_request_replays_status_and_body(
    client: TestClient, auth: AuthFactory
) -> None:
    first = post(client, auth(), "key-1", title="A")
    again = post(client, auth(), "key-1", title="A")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    jobs = client.get("/v1/jobs", headers=auth()).json()["items"]
    assert len(jobs) == 1


def test_same_key_different_request_is_422_reused(client: TestClient, auth: AuthFactory) -> None:
    post(client, auth(), "key-2", title="A")
    other_title = post(client, auth(), "key-2", title="B")
    other_bytes = post(client, auth(), "key-2", data=TEXT + b"!", title="A")
    for response in (other_title, other_bytes):
        assert response.status_code == 422
        assert response.json()["type"] == "idempotency-key-reused"


def test_key_whose_first_request_is_running_answers_409_with_retry_after(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    from spine.service import idempotency

    document_id = post(client, auth(), None).json()["document"]["id"]
    with services.db.write() as uow:
        uow.idempotency.begin(
            "acme",
            idempotency.scoped_key("test", "key-4"),  # the subject of auth()'s tokens
            fingerprint=idempotency.fingerprint(
                "DELETE", f"/v1/documents/{document_id}", document_id
            ),
            now=services.clock(),
            ttl=timedelta(hours=24),
            lock=timedelta(seconds=60),
        )
    response = client.delete(
        f"/v1/documents/{document_id}", headers=auth() | {"Idempotency-Key": "key-4"}
    )
    assert response.status_code == 409
    assert response.json()["type"] == "idempotency-key-in-flight"
    assert int(response.headers["retry-after"]) >= 1
    assert client.get(f"/v1/documents/{document_id}", headers=auth()).status_code == 200


def test_delete_with_a_key_replays_204_instead_of_404(
    client: TestClient, auth: AuthFactory
) -> None:
    document_id = post(client, auth(), None).json()["document"]["id"]
    headers = auth() | {"Idempotency-Key": "delete-once"}
    assert client.delete(f"/v1/documents/{document_id}", headers=headers).status_code == 204
    again = client.delete(f"/v1/documents/{document_id}", headers=headers)
    assert again.status_code == 204
    assert again.headers["idempotent-replayed"] == "true"
    assert client.delete(f"/v1/documents/{document_id}", headers=auth()).status_code == 404


def test_client_errors_are_replayed_too(client: TestClient, auth: AuthFactory) -> None:
    first = post(client, auth(), "key-5", data=b"")
    again = post(client, auth(), "key-5", data=b"")
    assert first.status_code == again.status_code == 415
    assert again.json() == first.json()
    assert again.headers["content-type"].startswith("application/problem+json")


def test_keys_are_per_tenant(client: TestClient, auth: AuthFactory) -> None:
    mine = post(client, auth("tenant-a"), "shared-key").json()
    theirs = post(client, auth("tenant-b"), "shared-key").json()
    assert mine["document"]["id"] != theirs["document"]["id"]


def test_keys_are_per_subject(client: TestClient, settings: Settings) -> None:
    alice = bearer(settings, TEST_SECRET, "acme", subject="alice")
    bob = bearer(settings, TEST_SECRET, "acme", subject="bob")
    first = post(client, alice, "shared-key")
    # Same tenant, same key, same bytes: Bob's request runs as his own (the tenant
    # already has the bytes, so it is a duplicate), never a replay of Alice's response.
    second = post(client, bob, "shared-key")
    assert first.status_code == 202
    assert second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert second.json()["duplicate"] is True
    # And a different request under Bob's key is not "key reused": he never used it.
    assert post(client, bob, "other-key", data=TEXT + b"?").status_code == 202
    assert post(client, alice, "other-key", data=TEXT + b"?!").status_code == 202


def test_key_expires_after_its_ttl(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    first = post(client, auth(), "key-6", title="A").json()
    real_clock = services.clock
    services.clock = lambda: real_clock() + timedelta(hours=24, seconds=1)
    try:
        later = post(client, auth(), "key-6", title="B")
    finally:
        services.clock = real_clock
    # A new request: not a replay, not "reused"; the bytes are a duplicate now.
    assert later.status_code == 200
    assert later.json()["duplicate"] is True
    assert later.json()["document"]["id"] == first["document"]["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "with space"])
def test_malformed_keys_are_422(client: TestClient, auth: AuthFactory, key: str) -> None:
    response = client.post(
        "/v1/documents",
        headers=auth() | {"Idempotency-Key": key},
        files={"file": ("note.txt", TEXT, "text/plain")},
    )
    assert response.status_code == 422


@pytest.mark.slow
def test_200_concurrent_identical_posts_make_one_document_and_one_job(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server, url = SpineProcess.serve(data_dir, process_env(data_dir, TEST_SECRET), workers=1)
    headers = bearer(Settings(), TEST_SECRET, "acme") | {"Idempotency-Key": "storm"}
    try:
        with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=50)) as c:

            def send(_: int) -> httpx.Response:
                return c.post("/v1/documents", headers=headers, files={"file": ("a.txt", TEXT)})

            with ThreadPoolExecutor(max_workers=50) as pool:
                responses = list(pool.map(send, range(200)))
            statuses = [r.status_code for r in responses]
            accepted = [r.json() for r in responses if r.status_code == 202]
            assert set(statuses) <= {202, 409}, statuses
            assert accepted, statuses
            assert len({a["document"]["id"] for a in accepted}) == 1
            assert len({a["job"]["id"] for a in accepted}) == 1
            plain = bearer(Settings(), TEST_SECRET, "acme")
            assert len(c.get("/v1/documents", headers=plain).json()["items"]) == 1
            assert len(c.get("/v1/jobs", headers=plain).json()["items"]) == 1
            assert wait_for_job(c, accepted[0]["job"]["id"], plain)["state"] == "SUCCEEDED"
    finally:
        server.stop()
