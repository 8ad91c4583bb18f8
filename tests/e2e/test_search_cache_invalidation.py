"""A cached search never hides a change that has finished: through HTTP, with the worker.

Once an upload's job has succeeded, or a delete has answered 204, the very next search
sees the change: no waiting for a TTL. The answers before it must have come from the
cache (counted by ``spine_cache_requests``), or the test would prove nothing.
"""

from __future__ import annotations

from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.service.container import Services
from support.api import wait_for_job

QUERY = "alpine pollinators"


def upload(client: TestClient, headers: dict[str, str], name: str, body: str) -> str:
    response = client.post(
        "/v1/documents", headers=headers, files={"file": (name, body.encode(), "text/plain")}
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job"]["id"], headers)
    assert job["state"] == "SUCCEEDED", job
    return str(response.json()["document"]["id"])


def found(client: TestClient, headers: dict[str, str]) -> list[str]:
    response = client.get("/v1/search", headers=headers, params={"q": QUERY, "k": 10})
    assert response.status_code == 200, response.text
    assert response.json()["degraded"] == []
    return [hit["document_id"] for hit in response.json()["results"]]


def search_hits(services: Services) -> int:
    value = services.metrics.registry.get_sample_value(
        "spine_cache_requests_total", {"cache": "search", "result": "hit"}
    )
    return int(value or 0)


def test_an_uploaded_document_is_in_the_next_search_at_once(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    headers = auth("acme")
    first = upload(client, headers, "bees.txt", "Bumblebees are the alpine pollinators.")
    assert found(client, headers) == [first]
    assert found(client, headers) == [first]
    assert search_hits(services) == 1  # the second answer came from the cache

    second = upload(client, headers, "moths.txt", "Moths are alpine pollinators by night.")

    assert set(found(client, headers)) == {first, second}
    assert search_hits(services) == 1  # computed again, not served from before


def test_a_deleted_document_is_gone_from_the_next_search_at_once(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    headers = auth("acme")
    kept = upload(client, headers, "bees.txt", "Bumblebees are the alpine pollinators.")
    gone = upload(client, headers, "moths.txt", "Moths are alpine pollinators by night.")
    assert set(found(client, headers)) == {kept, gone}
    assert set(found(client, headers)) == {kept, gone}
    assert search_hits(services) == 1

    assert client.delete(f"/v1/documents/{gone}", headers=headers).status_code == 204

    assert found(client, headers) == [kept]
    assert search_hits(services) == 1
