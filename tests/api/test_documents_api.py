"""The /v1/documents contract: shapes, status codes, problem responses, tenant walls."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from support.api import wait_for_job
from support.problems import assert_problem

PROBLEM = "application/problem+json"
TEXT = b"The quick brown fox jumps over the lazy dog near the riverbank at dawn."


def upload(client: TestClient, headers: dict[str, str], data: bytes = TEXT, **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/documents",
        headers=headers,
        files={"file": ("note.txt", data, "text/plain")},
        data=form,
    )


def test_upload_answers_202_with_document_job_and_location(
    client: TestClient, auth: AuthFactory
) -> None:
    response = upload(client, auth(), title="Fox", metadata=json.dumps({"team": "blue"}))
    assert response.status_code == 202, response.text
    body = response.json()
    document, job = body["document"], body["job"]
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert document["title"] == "Fox"
    assert document["content_type"] == "text/plain"
    assert document["size_bytes"] == len(TEXT)
    assert len(document["sha256"]) == 64
    assert document["metadata"] == {"team": "blue"}
    assert document["status"] == "PENDING"
    assert document["chunk_count"] == 0
    assert {"created_at", "updated_at", "id"} <= document.keys()
    assert job["document_id"] == document["id"]
    assert job["state"] == "PENDING"
    assert job["attempts"] == 0
    assert job["events"][0]["to"] == "PENDING"


def test_processed_document_reports_succeeded_status_and_chunks(
    client: TestClient, auth: AuthFactory
) -> None:
    headers = auth()
    body = upload(client, headers).json()
    job = wait_for_job(client, body["job"]["id"], headers)
    assert job["state"] == "SUCCEEDED", job
    assert [e["to"] for e in job["events"]] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert job["started_at"] is not None
    assert job["finished_at"] is not None
    document = client.get(f"/v1/documents/{body['document']['id']}", headers=headers).json()
    assert document["status"] == "SUCCEEDED"
    assert document["chunk_count"] == 1


def test_list_pages_with_cursor_newest_first(client: TestClient, auth: AuthFactory) -> None:
    headers = auth()
    ids = [
        upload(client, headers, TEXT + bytes([65 + i])).json()["document"]["id"] for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/documents", headers=headers, params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_delete_answers_204_then_404_and_removes_from_search(
    client: TestClient, auth: AuthFactory
) -> None:
    headers = auth()
    body = upload(client, headers).json()
    wait_for_job(client, body["job"]["id"], headers)
    doc_id = body["document"]["id"]
    found = client.get("/v1/search", headers=headers, params={"q": "brown fox riverbank"}).json()
    assert [hit["document_id"] for hit in found["results"]] == [doc_id]

    assert client.delete(f"/v1/documents/{doc_id}", headers=headers).status_code == 204
    assert_problem(client.get(f"/v1/documents/{doc_id}", headers=headers), 404, "not-found")
    for mode in ("keyword", "semantic", "hybrid"):
        after = client.get(
            "/v1/search", headers=headers, params={"q": "brown fox riverbank", "mode": mode}
        ).json()
        assert after["results"] == [], mode


def test_another_tenants_document_is_404_like_an_unknown_one(
    client: TestClient, auth: AuthFactory
) -> None:
    doc_id = upload(client, auth("tenant-a")).json()["document"]["id"]
    other = auth("tenant-b")
    theirs = assert_problem(client.get(f"/v1/documents/{doc_id}", headers=other), 404, "not-found")
    unknown = assert_problem(
        client.get("/v1/documents/doc_doesnotexist", headers=other), 404, "not-found"
    )
    assert theirs["title"] == unknown["title"]
    assert_problem(client.delete(f"/v1/documents/{doc_id}", headers=other), 404, "not-found")
    assert client.get("/v1/documents", headers=other).json()["items"] == []


def test_missing_or_invalid_token_is_401(client: TestClient, auth: AuthFactory) -> None:
    assert_problem(client.get("/v1/documents"), 401, "unauthenticated")
    assert_problem(
        client.get("/v1/documents", headers={"Authorization": "Bearer not-a-jwt"}),
        401,
        "unauthenticated",
    )
    forged = auth()["Authorization"][:-4] + "AAAA"
    assert_problem(
        client.get("/v1/documents", headers={"Authorization": forged}), 401, "unauthenticated"
    )


def test_reader_can_read_but_not_upload_or_delete(client: TestClient, auth: AuthFactory) -> None:
    doc_id = upload(client, auth("acme")).json()["document"]["id"]
    reader = auth("acme", Role.READER)
    assert client.get(f"/v1/documents/{doc_id}", headers=reader).status_code == 200
    assert_problem(upload(client, reader), 403, "forbidden")
    assert_problem(client.delete(f"/v1/documents/{doc_id}", headers=reader), 403, "forbidden")


def test_empty_and_binary_files_are_415(client: TestClient, auth: AuthFactory) -> None:
    assert_problem(upload(client, auth(), b""), 415, "unsupported-media-type")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    assert_problem(upload(client, auth(), png), 415, "unsupported-media-type")


def test_bad_parameters_are_422(client: TestClient, auth: AuthFactory) -> None:
    assert_problem(upload(client, auth(), metadata="[1, 2]"), 422, "invalid-request")
    assert_problem(upload(client, auth(), metadata="{not json"), 422, "invalid-request")
    assert_problem(upload(client, auth(), metadata="[" * 20000), 422, "invalid-request")
    missing_file = client.post("/v1/documents", headers=auth(), data={"title": "x"})
    assert_problem(missing_file, 422, "invalid-request")
    assert_problem(
        client.get("/v1/documents", headers=auth(), params={"limit": 0}), 422, "invalid-request"
    )


def test_health_and_readiness(client: TestClient, services) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    blob_root = services.blobs.root
    blob_root.rename(blob_root.with_name("blobs-gone"))
    body = assert_problem(client.get("/readyz"), 503, "unavailable")
    assert str(blob_root) not in str(body)
