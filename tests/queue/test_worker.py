"""Worker threads survive failures they cannot record, and give jobs back on stop."""

from __future__ import annotations

import io
import time

import pytest

from spine.domain.jobs import Job, JobState
from spine.queue import worker as worker_module
from spine.queue.worker import WorkerPool
from spine.service import documents
from spine.service.container import Services


def upload(services: Services, text: str) -> str:
    accepted = documents.upload(
        services,
        "acme",
        documents.Upload(io.BytesIO(text.encode()), "a.txt", "text/plain", None, {}),
    )
    assert accepted.job is not None
    return accepted.job.id


def wait_for_state(services: Services, job_id: str, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with services.db.read() as uow:
            job = uow.jobs.get("acme", job_id)
        if job.state.terminal:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} did not finish")


def test_worker_outlives_an_error_that_escapes_processing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.settings.job_lease_seconds = 1
    real_process = worker_module.processing.process
    calls: list[str] = []

    def database_gone_once_fake(svc: Services, job: Job) -> JobState | None:
        calls.append(job.id)
        if len(calls) == 1:
            raise RuntimeError("database is gone (injected)")
        return real_process(svc, job)

    monkeypatch.setattr(worker_module.processing, "process", database_gone_once_fake)
    first = upload(services, "The first document meets an outage.")
    second = upload(services, "The second document is processed normally.")
    pool = WorkerPool(services, 1)
    pool.start()
    try:
        assert wait_for_state(services, second).state is JobState.SUCCEEDED
        crashed = wait_for_state(services, first)
    finally:
        pool.stop()
    assert crashed.state is JobState.SUCCEEDED
    assert [e.to_state for e in crashed.events] == [
        JobState.PENDING,
        JobState.RUNNING,
        JobState.RETRYING,  # its lease ran out: the reaper took it back
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
