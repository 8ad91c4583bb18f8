"""The scale-out topology for real: 2 API processes and 3 worker processes on one
PostgreSQL, one S3 server and one Redis, while a chaos loop SIGKILLs a random worker every
few seconds and starts a new one.

2,000 small documents go in through both APIs. Afterwards:

- every document's job ended SUCCEEDED, exactly once (one SUCCEEDED event per job);
- no chunk is stored twice (document, ordinal) and every document has its chunks;
- no job ran in two workers at once: each job's history (``job_events``) alternates
  claims and ends of attempts, and an attempt taken from a worker by lease expiry was
  taken only after its lease had run out, so the killed worker could not still run it;
- both APIs answered every probe and every upload throughout.

The numbers (documents, kills, duplicates, lost jobs, upload-to-searchable) are printed
and written to ``$SPINE_TOPOLOGY_REPORT`` when that is set.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import TEST_SECRET
from spine.service.bootstrap import open_database
from spine.settings import Settings
from support.api import bearer
from support.rows import unscoped
from support.server import SpineProcess, process_env

pytestmark = pytest.mark.slow

DOCUMENTS = int(os.environ.get("SPINE_TOPOLOGY_DOCUMENTS", "2000"))
API_PROCESSES = 2
WORKER_PROCESSES = 3
TENANTS = ("acme", "globex", "initech", "umbrella")
KILL_EVERY_SECONDS = 6.0
LEASE_SECONDS = 2.0
UPLOAD_THREADS = 8
SETTLE_TIMEOUT_SECONDS = 600
_ATTEMPT = re.compile(r"\(attempt (\d+)\)")


@pytest.fixture
def backend() -> str:
    return "scale-out"


@dataclass
class Chaos:
    """Kills a random worker every few seconds and starts a replacement."""

    env: dict[str, str]
    logs: Path
    workers: list[SpineProcess] = field(default_factory=list)
    kills: int = 0
    started: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def spawn(self) -> None:
        self.started += 1
        log = self.logs / f"worker-{self.started}.log"
        self.workers.append(SpineProcess(["worker", "--concurrency", "1"], self.env, log))

    def run(self) -> None:
        rng = random.Random(6)
        while not self.stop.wait(KILL_EVERY_SECONDS * rng.uniform(0.7, 1.3)):
            victim = self.workers.pop(rng.randrange(len(self.workers)))
            victim.kill()
            self.kills += 1
            self.spawn()


@dataclass
class Prober:
    """Asks each API for /readyz every 100 ms; every answer that is not 200 is kept."""

    urls: list[str]
    probes: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.wait(0.1):
                for url in self.urls:
                    self.probes += 1
                    try:
                        status = client.get(f"{url}/readyz").status_code
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{url}: {type(exc).__name__}")
                        continue
                    if status != 200:
                        self.failures.append(f"{url}: {status}")


@pytest.fixture
def cluster(tmp_path: Path, backend_settings: dict[str, str]) -> Iterator[tuple[list[str], Chaos]]:
    # PostgreSQL, S3 (its AWS variables are in this environment) and Redis of this test.
    env = process_env(
        tmp_path / "data",
        TEST_SECRET,
        **backend_settings,
        job_lease_seconds=str(LEASE_SECONDS),
        # Idle workers wake on NOTIFY; the poll is only the fallback.
        job_poll_seconds="2",
        job_max_attempts="10",
        # Three model processes share two cores here: one inference thread each.
        embed_threads="1",
    )
    apis = [
        SpineProcess.serve(tmp_path / f"api-{index}", env, workers=0)
        for index in range(API_PROCESSES)
    ]
    chaos = Chaos(env, tmp_path)
    for _ in range(WORKER_PROCESSES):
        chaos.spawn()
    try:
        yield [url for _, url in apis], chaos
    finally:
        for process, _ in apis:
            process.stop()
        for worker in chaos.workers:
            worker.stop()


def body(index: int) -> bytes:
    return (
        f"Report {index} on topic marker{index}x. Workers claim jobs with SKIP LOCKED, "
        "renew their leases, and a killed worker's job is reaped and run again."
    ).encode()


def upload(
    client: httpx.Client, tokens: dict[str, dict[str, str]], urls: list[str], index: int
) -> tuple[int, str, int, str]:
    """One document through API ``index % 2``: (index, job id, status, document id)."""
    tenant = TENANTS[index % len(TENANTS)]
    headers = {
        **tokens[tenant],
        # A retried upload after a transport error must not queue a second job.
        "Idempotency-Key": f"doc-{index}",
    }
    url = urls[index % len(urls)]
    for attempt in range(5):
        try:
            response = client.post(
                f"{url}/v1/documents",
                headers=headers,
                files={"file": (f"doc-{index}.txt", body(index), "text/plain")},
                timeout=30,
            )
        except httpx.TransportError:
            time.sleep(0.2 * (attempt + 1))
            continue
        if response.status_code != 202:
            return index, "", response.status_code, ""
        answer = response.json()
        return index, answer["job"]["id"], 202, answer["document"]["id"]
    return index, "", 0, ""


def settle(url: str) -> None:
    """Wait until no job is PENDING, RUNNING or RETRYING."""
    db = open_database(url)
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            with db.read() as uow:
                open_jobs = (
                    unscoped(uow)
                    .execute(
                        text("SELECT count(*) FROM jobs WHERE state NOT IN ('SUCCEEDED', 'FAILED')")
                    )
                    .scalar()
                )
                total = unscoped(uow).execute(text("SELECT count(*) FROM jobs")).scalar()
            if total == DOCUMENTS and open_jobs == 0:
                return
            time.sleep(0.5)
    finally:
        db.close()
    raise AssertionError(f"jobs still open after {SETTLE_TIMEOUT_SECONDS} s")


def overlapping_attempts(events: list[Any]) -> list[str]:
    """Each job's history must be claim, end of that attempt, claim, ...: a second claim
    while an attempt is open, or an attempt ended by lease expiry before its lease could
    have run out, is a job in two workers at once."""
    problems = []
    open_claim: datetime | None = None
    attempts = 0
    for event in events:
        if event.to_state == "RUNNING":
            if open_claim is not None:
                problems.append(f"{event.job_id}: claimed again while running")
            attempt = int(_ATTEMPT.search(event.detail).group(1))  # type: ignore[union-attr]
            if attempt != attempts + 1:
                problems.append(f"{event.job_id}: attempt {attempt} after {attempts}")
            attempts = attempt
            open_claim = event.at
        elif event.from_state == "RUNNING":
            if open_claim is None:
                problems.append(f"{event.job_id}: an attempt ended that never started")
            elif event.detail.startswith("lease-expired") and (
                (event.at - open_claim).total_seconds() < LEASE_SECONDS
            ):
                problems.append(f"{event.job_id}: reaped {event.at - open_claim} after its claim")
            open_claim = None
    return problems


def test_two_apis_and_three_workers_survive_sigkill_chaos_exactly_once(
    cluster: tuple[list[str], Chaos], backend_settings: dict[str, str]
) -> None:
    urls, chaos = cluster
    prober = Prober(urls)
    threads = [threading.Thread(target=prober.run), threading.Thread(target=chaos.run)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        # One client for every thread (httpx's is thread-safe), and a token per tenant:
        # a client or a Settings per upload cost the test more CPU than the APIs spent.
        tokens = {tenant: bearer(Settings(), TEST_SECRET, tenant) for tenant in TENANTS}
        limits = httpx.Limits(max_connections=UPLOAD_THREADS * len(urls))
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool, httpx.Client(limits=limits) as client:
            uploads = list(pool.map(lambda i: upload(client, tokens, urls, i), range(DOCUMENTS)))
        uploaded_seconds = time.monotonic() - started
        settle(backend_settings["database_url"])
        settled_seconds = time.monotonic() - started
    finally:
        chaos.stop.set()
        prober.stop.set()
        for thread in threads:
            thread.join()

    assert [status for _, _, status, _ in uploads if status != 202] == []
    db = open_database(backend_settings["database_url"])
    try:
        with db.read() as uow:
            conn = unscoped(uow)
            states = Counter(
                dict(conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all())
            )
            succeeded_events = Counter(
                row[0]
                for row in conn.execute(
                    text("SELECT job_id FROM job_events WHERE to_state = 'SUCCEEDED'")
                )
            )
            duplicates = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks "
                    "GROUP BY document_id, ordinal HAVING count(*) > 1) AS twice"
                )
            ).scalar()
            missing_chunks = conn.execute(
                text(
                    "SELECT count(*) FROM documents d WHERE d.chunk_count < 1 OR d.chunk_count "
                    "<> (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
                )
            ).scalar()
            events = conn.execute(
                text(
                    "SELECT job_id, from_state, to_state, at, detail FROM job_events "
                    "ORDER BY job_id, id"
                )
            ).all()
            latency = conn.execute(
                text(
                    "SELECT max(extract(epoch FROM finished_at - created_at)), "
                    "percentile_cont(0.5) WITHIN GROUP "
                    "(ORDER BY extract(epoch FROM finished_at - created_at)) "
                    "FROM jobs WHERE state = 'SUCCEEDED'"
                )
            ).one()
            retried = conn.execute(text("SELECT count(*) FROM jobs WHERE attempts > 1")).scalar()
    finally:
        db.close()
    by_job: dict[str, list[Any]] = {}
    for event in events:
        by_job.setdefault(event.job_id, []).append(event)
    overlaps = [problem for history in by_job.values() for problem in overlapping_attempts(history)]
    job_ids = {job_id for _, job_id, _, _ in uploads}
    lost = DOCUMENTS - states.get("SUCCEEDED", 0)
    report = {
        "documents": DOCUMENTS,
        "api_processes": API_PROCESSES,
        "worker_processes": WORKER_PROCESSES,
        "kills": chaos.kills,
        "jobs_retried": retried,
        "duplicate_chunks": duplicates,
        "lost_jobs": lost,
        "jobs_in_two_workers": len(overlaps),
        "probes": prober.probes,
        "probe_failures": len(prober.failures),
        "upload_seconds": round(uploaded_seconds, 1),
        "all_searchable_seconds": round(settled_seconds, 1),
        "upload_to_searchable_p50_seconds": round(float(latency[1]), 2),
        "upload_to_searchable_max_seconds": round(float(latency[0]), 2),
    }
    print("topology:", json.dumps(report))
    if os.environ.get("SPINE_TOPOLOGY_REPORT"):
        Path(os.environ["SPINE_TOPOLOGY_REPORT"]).write_text(json.dumps(report, indent=2))

    assert len(job_ids) == DOCUMENTS
    assert chaos.kills >= 3, "the chaos loop must have killed workers during the run"
    assert dict(states) == {"SUCCEEDED": DOCUMENTS}
    assert set(succeeded_events) == job_ids
    assert max(succeeded_events.values()) == 1
    assert duplicates == 0
    assert missing_chunks == 0
    assert overlaps == []
    assert prober.failures == []
    # Searchable through either API: its unique word finds each sampled document first.
    for index, _, _, document_id in random.Random(7).sample(uploads, 20):
        tenant = TENANTS[index % len(TENANTS)]
        response = httpx.get(
            f"{urls[(index + 1) % len(urls)]}/v1/search",
            headers=bearer(Settings(), TEST_SECRET, tenant, subject="reader"),
            params={"q": f"marker{index}x", "mode": "keyword"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["document_id"] == document_id
