"""The dead-letter queue: list, count, retry one, retry in bulk."""

from __future__ import annotations

import random

from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from support.api import wait_for_job


def upload_corrupt_pdf(client: TestClient, headers: dict[str, str], seed: int) -> str:
    data = b"%PDF-1.7\n" + random.Random(seed).randbytes(2000)
    response = client.post(
        "/v1/documents", headers=headers, files={"file": ("bad.pdf", data, "application/pdf")}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job"]["id"])


def test_corrupt_file_fails_permanently_after_one_attempt(
    client: TestClient, auth: AuthFactory
) -> None:
    job = wait_for_job(client, upload_corrupt_pdf(client, auth(), 1), auth())
    assert job["state"] == "FAILED"
    assert job["attempts"] == 1
    assert job["error"]["type"] == "extraction-failed"
    assert job["error"]["transient"] is False
    assert "PDF" in job["error"]["message"]


def test_failed_jobs_are_listed_and_counted(client: TestClient, auth: AuthFactory) -> None:
    ids = [upload_corrupt_pdf(client, auth(), seed) for seed in range(3)]
    for job_id in ids:
        wait_for_job(client, job_id, auth())
    listed = client.get("/v1/jobs", headers=auth(), params={"state": "FAILED", "limit": 2}).json()
    assert len(listed["items"]) == 2
    rest = client.get(
        "/v1/jobs",
        headers=auth(),
        params={"state": "FAILED", "limit": 2, "cursor": listed["next_cursor"]},
    ).json()
    assert {j["id"] for j in listed["items"] + rest["items"]} == set(ids)
    stats = client.get("/v1/jobs/stats", headers=auth()).json()
    assert stats["dlq_depth"] == 3
    assert stats["states"]["FAILED"] == 3
    assert client.get("/v1/jobs/stats", headers=auth("other")).json()["dlq_depth"] == 0


def test_retry_takes_a_dead_letter_back_to_pending_with_attempts_reset(
    client: TestClient, auth: AuthFactory
) -> None:
    job_id = upload_corrupt_pdf(client, auth(), 7)
    wait_for_job(client, job_id, auth())
    retried = client.post(f"/v1/jobs/{job_id}/retry", headers=auth())
    assert retried.status_code == 200
    body = retried.json()
    assert body["state"] in ("PENDING", "RUNNING", "FAILED")  # a worker may already run it
    assert ("FAILED", "PENDING") in [(e["from"], e["to"]) for e in body["events"]]
    again = wait_for_job(client, job_id, auth())
    assert again["state"] == "FAILED"
    assert again["attempts"] == 1  # reset, then one more attempt
    states = [e["to"] for e in again["events"]]
    assert states == ["PENDING", "RUNNING", "FAILED", "PENDING", "RUNNING", "FAILED"]


def test_only_failed_jobs_can_be_retried_and_only_by_writers(
    client: TestClient, auth: AuthFactory
) -> None:
    response = client.post(
        "/v1/documents", headers=auth(), files={"file": ("ok.txt", b"fine text", "text/plain")}
    )
    job_id = response.json()["job"]["id"]
    wait_for_job(client, job_id, auth())
    conflict = client.post(f"/v1/jobs/{job_id}/retry", headers=auth())
    assert conflict.status_code == 409
    assert conflict.json()["type"] == "conflict"
    assert (
        client.post(f"/v1/jobs/{job_id}/retry", headers=auth("acme", Role.READER)).status_code
        == 403
    )
    assert client.post(f"/v1/jobs/{job_id}/retry", headers=auth("other")).status_code == 404


def test_bulk_retry_filters_by_error_type(client: TestClient, auth: AuthFactory) -> None:
    ids = [upload_corrupt_pdf(client, auth(), seed) for seed in (11, 12)]
    for job_id in ids:
        wait_for_job(client, job_id, auth())
    none = client.post("/v1/jobs/retry", headers=auth(), json={"error_type": "transient"})
    assert none.json() == {"retried": [], "count": 0}
    both = client.post("/v1/jobs/retry", headers=auth(), json={"error_type": "extraction-failed"})
    assert both.status_code == 200
    assert sorted(both.json()["retried"]) == sorted(ids)
    for job_id in ids:
        assert wait_for_job(client, job_id, auth())["state"] == "FAILED"
