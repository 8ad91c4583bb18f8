"""The embedder goes down for longer than the breaker's window while uploads continue:
every job still ends SUCCEEDED, no attempt is used up by the wait, no request gets 5xx."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from conftest import TEST_SECRET
from spine.devservices.readiness import wait_for_http
from spine.settings import Settings
from support.api import bearer, wait_for_job
from support.server import SpineProcess, free_port, process_env

pytestmark = pytest.mark.slow


def start_embedder(port: int, log: Path, env: dict[str, str]) -> SpineProcess:
    process = SpineProcess(["embedder", "serve", "--port", str(port)], env, log)
    outcome = wait_for_http(process.proc, f"http://127.0.0.1:{port}/healthz", timeout=60)
    if outcome != "ready":
        raise AssertionError(f"embedder {outcome}: {log.read_text()[-2000:]}")
    return process


def test_embedder_outage_waits_and_loses_nothing(tmp_path: Path) -> None:
    embed_port = free_port()
    data_dir = tmp_path / "data"
    env = process_env(
        data_dir,
        TEST_SECRET,
        embedder_url=f"http://127.0.0.1:{embed_port}",
        embedder_max_retries="1",
        embedder_timeout_seconds="2",
        breaker_failure_threshold="2",
        breaker_reset_seconds="2",
    )
    headers = bearer(Settings(), TEST_SECRET, "acme")
    embedder = start_embedder(embed_port, tmp_path / "embedder1.log", env)
    server, url = SpineProcess.serve(data_dir, env, workers=1)
    statuses: list[int] = []
    job_ids: list[str] = []
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:

            def upload(n: int) -> None:
                body = f"Document {n} about glaciers, fjords and meltwater number {n}.".encode()
                response = client.post("/v1/documents", files={"file": (f"{n}.txt", body)})
                statuses.append(response.status_code)
                job_ids.append(response.json()["job"]["id"])

            upload(0)
            assert wait_for_job(client, job_ids[0], headers)["state"] == "SUCCEEDED"

            embedder.terminate()  # the downstream goes away
            for n in range(1, 7):
                upload(n)
                search = client.get("/v1/search", params={"q": "glaciers fjords"})
                statuses.append(search.status_code)
                assert search.json()["degraded"] == ["vector"]
                assert search.json()["results"], "keyword search still answers"
                time.sleep(0.5)
            time.sleep(3)  # longer than the breaker's window
            waiting = client.get("/v1/jobs", params={"state": "RETRYING"}).json()["items"]
            assert waiting, "jobs wait in RETRYING while the embedder is down"
            assert {j["error"]["type"] for j in waiting} <= {"downstream-unavailable", "transient"}
            assert all(j["error"]["transient"] for j in waiting)

            embedder = start_embedder(embed_port, tmp_path / "embedder2.log", env)
            jobs = [wait_for_job(client, job_id, headers, timeout=180) for job_id in job_ids]
            assert [job["state"] for job in jobs] == ["SUCCEEDED"] * len(jobs)
            assert [job["attempts"] for job in jobs] == [1] * len(jobs)
            healthy = client.get("/v1/search", params={"q": "glaciers fjords"}).json()
            assert healthy["degraded"] == []
            assert len({hit["document_id"] for hit in healthy["results"]}) == min(10, len(jobs))
        assert all(status < 500 for status in statuses), statuses
    finally:
        embedder.stop()
        server.stop()
