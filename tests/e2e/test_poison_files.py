"""The poison set through the real API and a real worker: each hostile file ends FAILED
with a reason after one attempt, every good file beside it ends SUCCEEDED, and the server
process that runs the workers stays up the whole time."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conftest import TEST_SECRET
from spine.settings import Settings
from support.api import bearer, wait_for_job
from support.hostile import HOSTILE_FILES
from support.server import SpineProcess, process_env

pytestmark = pytest.mark.slow


def test_poison_files_fail_with_reasons_and_harm_nothing_else(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = process_env(data_dir, TEST_SECRET, extract_timeout_seconds="10", extract_memory_mb="768")
    server, url = SpineProcess.serve(data_dir, env, workers=1)
    pid = server.proc.pid
    headers = bearer(Settings(), TEST_SECRET, "acme")
    hostile_jobs: dict[str, str] = {}
    refused_at_upload: list[str] = []
    good_jobs: list[str] = []
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for n, poison in enumerate(HOSTILE_FILES):
                response = client.post(
                    "/v1/documents",
                    files={"file": (poison.filename, poison.data, poison.content_type)},
                )
                if response.status_code == 415:
                    refused_at_upload.append(poison.name)  # not even stored: fine too
                else:
                    assert response.status_code == 202, (poison.name, response.text)
                    hostile_jobs[poison.name] = response.json()["job"]["id"]
                good = client.post(
                    "/v1/documents",
                    files={"file": (f"good{n}.txt", f"Healthy document number {n}.".encode())},
                )
                good_jobs.append(good.json()["job"]["id"])

            for poison in HOSTILE_FILES:
                if poison.name not in hostile_jobs:
                    continue
                job = wait_for_job(client, hostile_jobs[poison.name], headers, timeout=180)
                assert job["state"] == "FAILED", (poison.name, job)
                assert job["attempts"] == 1, (poison.name, job)
                reason = job["error"]["message"]
                assert any(word in reason for word in poison.reason_words), (poison.name, reason)
            for job_id in good_jobs:
                assert wait_for_job(client, job_id, headers)["state"] == "SUCCEEDED"
            assert server.proc.poll() is None
            assert server.proc.pid == pid
            assert client.get("/healthz").status_code == 200
        assert len(hostile_jobs) >= len(HOSTILE_FILES) - 2, refused_at_upload
    finally:
        server.stop()
