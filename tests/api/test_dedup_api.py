"""The same bytes uploaded twice by a tenant are stored and indexed once."""

from __future__ import annotations

from starlette.testclient import TestClient

from conftest import AuthFactory
from support.api import wait_for_job

TEXT = b"Content deduplication keeps one copy of the same bytes per tenant."


def upload(client: TestClient, headers: dict[str, str], params: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/documents",
        headers=headers,
        params=params or {},
        files={"file": ("a.txt", TEXT, "text/plain")},
    )


def test_second_upload_of_the_same_bytes_is_200_duplicate_without_a_job(
    client: TestClient, auth: AuthFactory
) -> None:
    first = upload(client, auth())
    assert first.status_code == 202
    assert first.json()["duplicate"] is False
    wait_for_job(client, first.json()["job"]["id"], auth())

    second = upload(client, auth())
    assert second.status_code == 200
    body = second.json()
    assert body["duplicate"] is True
    assert body["document"]["id"] == first.json()["document"]["id"]
    assert body["job"]["id"] == first.json()["job"]["id"]
    assert "location" not in second.headers
    assert len(client.get("/v1/jobs", headers=auth()).json()["items"]) == 1
    assert len(client.get("/v1/documents", headers=auth()).json()["items"]) == 1
    hits = client.get(
        "/v1/search", headers=auth(), params={"q": "deduplication", "mode": "keyword"}
    ).json()["results"]
    assert len(hits) == 1


def test_reprocess_makes_a_new_job_for_the_same_document(
    client: TestClient, auth: AuthFactory
) -> None:
    first = upload(client, auth()).json()
    wait_for_job(client, first["job"]["id"], auth())
    again = upload(client, auth(), {"reprocess": "true"})
    assert again.status_code == 202
    body = again.json()
    assert body["document"]["id"] == first["document"]["id"]
    assert body["job"]["id"] != first["job"]["id"]
    assert again.headers["location"] == f"/v1/jobs/{body['job']['id']}"
    assert wait_for_job(client, body["job"]["id"], auth())["state"] == "SUCCEEDED"
    hits = client.get(
        "/v1/search", headers=auth(), params={"q": "deduplication", "mode": "keyword"}
    ).json()["results"]
    assert len(hits) == 1  # reprocessing replaced the chunks, it did not add to them


def test_another_tenant_with_the_same_bytes_gets_its_own_document(
    client: TestClient, auth: AuthFactory
) -> None:
    mine = upload(client, auth("tenant-a")).json()
    theirs = upload(client, auth("tenant-b"))
    assert theirs.status_code == 202
    assert theirs.json()["duplicate"] is False
    assert theirs.json()["document"]["id"] != mine["document"]["id"]
