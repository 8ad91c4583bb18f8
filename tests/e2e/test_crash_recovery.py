"""Processes killed with SIGKILL lose no acknowledged upload and run no job twice."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import TEST_SECRET
from spine.adapters.sqlite.search_index import fts_table
from spine.service.bootstrap import open_database
from spine.settings import Settings
from support.api import bearer, wait_for_job
from support.rows import unscoped
from support.server import SpineProcess, process_env

pytestmark = pytest.mark.slow

PARAGRAPH = (
    "Durable queues keep work safe across crashes. A worker takes a lease on a job and "
    "renews it while it runs; when the worker dies, the lease runs out and another worker "
    "takes the job again. The results are written in one transaction with the job's new "
    "state, so a retry replaces what an earlier attempt wrote. "
)


def document(index: int, paragraphs: int) -> bytes:
    body = "\n\n".join(f"{PARAGRAPH} Section {n} of file {index}." for n in range(paragraphs))
    return f"Unique marker zebra{index}quokka.\n\n{body}".encode()


@pytest.fixture
def headers() -> dict[str, str]:
    return bearer(Settings(), TEST_SECRET, "acme")


@pytest.fixture
def processes() -> Iterator[list[SpineProcess]]:
    started: list[SpineProcess] = []
    yield started
    for process in started:
        process.stop()


def database_url(data_dir: Path) -> str:
    """The database the test's processes use: the scale-out one from the environment
    (see tests/e2e/conftest.py), else the embedded file under their data dir."""
    return os.environ.get("SPINE_DATABASE_URL") or f"sqlite:///{data_dir / 'spine.db'}"


def upload_all(url: str, headers: dict[str, str], files: list[bytes]) -> list[dict[str, Any]]:
    accepted = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for index, data in enumerate(files):
            response = client.post(
                "/v1/documents", files={"file": (f"f{index}.txt", data, "text/plain")}
            )
            assert response.status_code == 202, response.text
            accepted.append(response.json())
    return accepted


def wait_until_running(url: str, headers: dict[str, str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    # One client: a new one a poll (an SSL context each, ~25 ms of CPU) would take a core
    # from the worker starting up.
    with httpx.Client(base_url=url, headers=headers, timeout=5) as client:
        while time.monotonic() < deadline:
            running = client.get("/v1/jobs", params={"state": "RUNNING"}).json()["items"]
            if running:
                return str(running[0]["id"])
            time.sleep(0.02)
    raise AssertionError("no job started running")


def assert_index_has_no_duplicates(url: str) -> None:
    """Each document's chunks once each, and every chunk in the keyword and vector index
    once: read from the tables behind the repositories, on either database."""
    db = open_database(url)
    try:
        with db.read() as uow:
            conn = unscoped(uow)
            chunk_counts = dict(conn.execute(text("SELECT id, chunk_count FROM documents")).all())
            stored = dict(
                conn.execute(
                    text("SELECT document_id, count(*) FROM chunks GROUP BY document_id")
                ).all()
            )
            duplicate_ordinals = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks "
                    "GROUP BY document_id, ordinal HAVING count(*) > 1) AS twice"
                )
            ).scalar()
            total_chunks = conn.execute(text("SELECT count(*) FROM chunks")).scalar()
            if conn.dialect.name == "sqlite":
                indexed = conn.execute(
                    text(f"SELECT count(*) FROM {fts_table('acme')}")  # noqa: S608 -- a digest
                ).scalar()
                vectors = conn.execute(text("SELECT count(*) FROM chunks_vec")).scalar()
            else:
                indexed = conn.execute(
                    text("SELECT count(*) FROM chunks WHERE search_vector IS NOT NULL")
                ).scalar()
                vectors = conn.execute(
                    text("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL")
                ).scalar()
    finally:
        db.close()
    assert duplicate_ordinals == 0
    assert stored == chunk_counts
    assert indexed == total_chunks
    assert vectors == total_chunks


def test_worker_killed_mid_job_the_job_completes_later_exactly_once(
    tmp_path: Path, headers: dict[str, str], processes: list[SpineProcess]
) -> None:
    data_dir = tmp_path / "data"
    env = process_env(data_dir, TEST_SECRET)
    api, url = SpineProcess.serve(data_dir, env, workers=0)
    processes.append(api)
    # A long document first, so the worker is surely inside a job when it is killed.
    accepted = upload_all(url, headers, [document(0, 150)] + [document(i, 2) for i in range(1, 6)])

    first = SpineProcess(["worker"], env, tmp_path / "worker1.log")
    processes.append(first)
    killed_job = wait_until_running(url, headers)
    first.kill()
    assert httpx.get(f"{url}/v1/jobs/{killed_job}", headers=headers).json()["state"] == "RUNNING"

    processes.append(SpineProcess(["worker"], env, tmp_path / "worker2.log"))
    with httpx.Client(base_url=url, timeout=10) as client:
        jobs = [wait_for_job(client, a["job"]["id"], headers) for a in accepted]
    assert [job["state"] for job in jobs] == ["SUCCEEDED"] * len(jobs)

    killed = next(job for job in jobs if job["id"] == killed_job)
    path = [(event["from"], event["to"]) for event in killed["events"]]
    assert path == [
        (None, "PENDING"),
        ("PENDING", "RUNNING"),
        ("RUNNING", "RETRYING"),
        ("RETRYING", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    assert "lease-expired" in killed["events"][2]["detail"]
    assert killed["attempts"] == 2
    assert_index_has_no_duplicates(database_url(data_dir))


def test_server_killed_during_ingest_loses_nothing_after_restart(
    tmp_path: Path, headers: dict[str, str], processes: list[SpineProcess]
) -> None:
    data_dir = tmp_path / "data"
    env = process_env(data_dir, TEST_SECRET)
    server, url = SpineProcess.serve(data_dir, env, workers=1)
    processes.append(server)
    files = [document(i, 4) for i in range(30)]
    accepted = upload_all(url, headers, files)
    wait_until_running(url, headers)
    server.kill()

    restarted, url = SpineProcess.serve(data_dir, env, workers=1)
    processes.append(restarted)
    with httpx.Client(base_url=url, timeout=10) as client:
        jobs = [wait_for_job(client, a["job"]["id"], headers) for a in accepted]
        assert {job["state"] for job in jobs} == {"SUCCEEDED"}
        assert all(sum(event["to"] == "SUCCEEDED" for event in job["events"]) == 1 for job in jobs)
        for index in (0, 17, 29):
            hits = client.get(
                "/v1/search",
                headers=headers,
                params={"q": f"zebra{index}quokka", "mode": "keyword", "k": 50},
            ).json()["results"]
            assert hits, index
            assert {hit["document_id"] for hit in hits} == {accepted[index]["document"]["id"]}
            assert len({hit["chunk_id"] for hit in hits}) == len(hits)
    assert_index_has_no_duplicates(database_url(data_dir))
    # uvicorn re-raises SIGTERM after its graceful shutdown, so -SIGTERM is a clean exit.
    assert restarted.terminate() in (0, -signal.SIGTERM)
    log = restarted.log.read_text()
    assert "worker.stopped" in log
    assert "Application shutdown complete" in log


def test_sigterm_releases_a_running_job_that_cannot_finish_in_the_grace_period(
    tmp_path: Path, headers: dict[str, str], processes: list[SpineProcess]
) -> None:
    data_dir = tmp_path / "data"
    env = process_env(data_dir, TEST_SECRET)
    api, url = SpineProcess.serve(data_dir, env, workers=0)
    processes.append(api)
    accepted = upload_all(url, headers, [document(0, 150)])

    impatient = SpineProcess(
        ["worker"], env | {"SPINE_SHUTDOWN_GRACE_SECONDS": "0"}, tmp_path / "w1.log"
    )
    processes.append(impatient)
    job_id = wait_until_running(url, headers)
    assert impatient.terminate() == 0
    released = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json()
    assert released["state"] == "RETRYING"
    assert released["error"]["type"] == "released"

    processes.append(SpineProcess(["worker"], env, tmp_path / "w2.log"))
    with httpx.Client(base_url=url, timeout=10) as client:
        job = wait_for_job(client, accepted[0]["job"]["id"], headers)
    assert job["state"] == "SUCCEEDED"
    assert job["attempts"] == 1  # the released attempt was given back
    assert [e["to"] for e in job["events"]] == [
        "PENDING",
        "RUNNING",
        "RETRYING",
        "RUNNING",
        "SUCCEEDED",
    ]
