"""While the database cannot take writes the API answers 503 with Retry-After, and it
recovers by itself when the database is back: no restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlean
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.api.app import create_app
from spine.service.bootstrap import bootstrap
from spine.settings import Settings
from support.api import wait_for_job


@pytest.fixture
def impatient_client(settings: Settings, embedder: MiniLMOnnxEmbedder) -> Iterator[TestClient]:
    settings.db_busy_timeout_ms = 200
    services = bootstrap(settings, embedder=embedder)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client
    services.close()


def upload(client: TestClient, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
    return client.post("/v1/documents", headers=headers, files={"file": ("a.txt", body)})


def test_locked_database_is_503_with_retry_after_then_recovers(
    impatient_client: TestClient, auth: AuthFactory, settings: Settings
) -> None:
    before = upload(impatient_client, auth(), b"Written before the outage.")
    assert before.status_code == 202
    # Another process holds SQLite's write lock: the "database down" of the embedded mode.
    blocker = sqlean.connect(str(Path(settings.data_dir) / "spine.db"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        refused = upload(impatient_client, auth(), b"Written during the outage.")
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"] == "unavailable"
        assert refused.headers["retry-after"] == "2"
        # Reads still work under WAL.
        assert impatient_client.get("/v1/documents", headers=auth()).status_code == 200
    finally:
        blocker.rollback()
        blocker.close()

    after = upload(impatient_client, auth(), b"Written after the outage.")
    assert after.status_code == 202
    for response in (before, after):
        job = wait_for_job(impatient_client, response.json()["job"]["id"], auth())
        assert job["state"] == "SUCCEEDED"
    assert len(impatient_client.get("/v1/documents", headers=auth()).json()["items"]) == 2
