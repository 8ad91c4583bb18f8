"""Idle workers wake when a job is queued: on PostgreSQL through LISTEN/NOTIFY, in a
fraction of the poll interval; the doorbell that carries the wake-up loses no ring."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.queue.doorbell import Doorbell
from spine.queue.worker import WorkerPool
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.settings import Settings

from .test_worker import upload, wait_for_state

#: Far longer than the test may take: a job must be found by the notification.
POLL_SECONDS = 60.0


@pytest.fixture
def backend() -> str:
    return "scale-out"


@pytest.fixture
def slow_polling(settings: Settings, embedder: MiniLMOnnxEmbedder) -> Iterator[Services]:
    services = bootstrap(
        settings.model_copy(update={"job_poll_seconds": POLL_SECONDS}), embedder=embedder
    )
    yield services
    services.close()


def test_an_idle_worker_takes_a_new_job_long_before_its_next_poll(
    slow_polling: Services,
) -> None:
    pool = WorkerPool(slow_polling, 1)
    pool.start()
    try:
        time.sleep(1.0)  # the worker has polled, found nothing, and sleeps for a minute
        started = time.monotonic()
        job = wait_for_state(slow_polling, upload(slow_polling, "wake up"), timeout=20)
        waited = time.monotonic() - started
    finally:
        pool.stop(grace_seconds=5)
    assert job.state.value == "SUCCEEDED"
    assert waited < 10, f"took {waited:.1f} s: the notification did not wake the worker"


def test_a_ring_between_looking_and_waiting_is_not_lost() -> None:
    bell = Doorbell()
    seen = bell.rings  # the worker looks for work and finds none...
    bell.ring()  # ...a job is queued before it starts to wait...
    assert bell.wait(seen, timeout=5)  # ...and the wait returns at once


def test_a_ring_wakes_every_waiting_worker() -> None:
    bell = Doorbell()
    seen = bell.rings
    woken: list[bool] = []
    waiters = [
        threading.Thread(target=lambda: woken.append(bell.wait(seen, timeout=5))) for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.1)
    bell.ring()
    for waiter in waiters:
        waiter.join()
    assert woken == [True, True, True]


def test_without_a_ring_the_wait_ends_at_its_timeout() -> None:
    bell = Doorbell()
    started = time.monotonic()
    assert not bell.wait(bell.rings, timeout=0.2)
    assert time.monotonic() - started >= 0.2
