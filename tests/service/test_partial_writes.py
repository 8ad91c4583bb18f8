"""A failure between any two steps of the write path leaves nothing or a whole document.

The steps: blob written -> document and job rows committed -> chunks and both indexes
replaced together with the job's SUCCEEDED state. Each test injects a failure at one
seam (a test double named *_fake) and checks what is stored afterwards.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy import text

from spine.adapters.sql.jobs import SqlJobRepository
from spine.adapters.sqlite.search_index import SqliteSearchIndex, fts_table
from spine.domain.jobs import JobState
from spine.queue.worker import claim_next
from spine.service import documents, processing
from spine.service.container import Services
from spine.service.gc import sweep_blobs

TEXT = "Partial writes must never leave half a document behind. " * 120


def upload(services: Services, body: str = TEXT) -> documents.Accepted:
    return documents.upload(
        services,
        "acme",
        documents.Upload(io.BytesIO(body.encode()), "a.txt", "text/plain", None, {}),
    )


def counts(services: Services) -> dict[str, int]:
    with services.db.read() as uow:
        conn = uow.documents._conn  # the test reads the tables behind the repositories
        found = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            for table in ("documents", "jobs", "chunks", "chunks_vec")
        }
        # acme's full-text table is made by its first index write, in that write's
        # transaction: before one commits, there is no table, and so no row.
        fts = fts_table("acme")
        exists = conn.execute(
            text("SELECT count(*) FROM sqlite_master WHERE name = :name"), {"name": fts}
        ).scalar_one()
        found["chunks_fts"] = (
            conn.execute(text(f"SELECT count(*) FROM {fts}")).scalar_one() if exists else 0  # noqa: S608
        )
        return found


def run_one_job(services: Services) -> JobState | None:
    job = claim_next(services, "test-worker")
    assert job is not None
    return processing.process(services, job)


class InjectedFailure(RuntimeError):
    pass


def test_failure_after_the_blob_before_the_rows_leaves_only_an_orphan_that_gc_sweeps(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def enqueue_fails_fake(self: Any, *args: Any, **kwargs: Any) -> None:
        raise InjectedFailure("database write failed after the blob was stored")

    monkeypatch.setattr(SqlJobRepository, "enqueue", enqueue_fails_fake)
    with pytest.raises(InjectedFailure):
        upload(services)
    assert counts(services)["documents"] == 0  # the document row rolled back with the job
    assert len([b for b in services.blobs.list_blobs() if not b.temporary]) == 1

    kept = sweep_blobs(services.db, services.blobs, grace_seconds=3600)
    assert (kept.removed, kept.kept_recent) == (0, 1)  # too young: may be an upload in flight
    swept = sweep_blobs(services.db, services.blobs, grace_seconds=0)
    assert swept.removed == 1
    assert list(services.blobs.list_blobs()) == []


def test_gc_keeps_every_referenced_blob(services: Services) -> None:
    upload(services)
    report = sweep_blobs(services.db, services.blobs, grace_seconds=0)
    assert report.removed == 0
    assert report.examined == 1


@pytest.mark.parametrize("seam", ["mid-index", "before-succeeded"])
def test_failure_inside_the_index_write_leaves_no_chunks_and_the_retry_completes(
    services: Services, embedder: Any, monkeypatch: pytest.MonkeyPatch, seam: str
) -> None:
    accepted = upload(services)
    real_replace = SqliteSearchIndex.replace
    real_succeed = SqlJobRepository.succeed

    def replace_half_then_fail_fake(
        self: Any, tenant: str, doc: str, title: str, chunks: Any
    ) -> None:
        real_replace(self, tenant, doc, title, chunks[: max(1, len(chunks) // 2)])
        raise InjectedFailure("crash in the middle of the index write")

    def succeed_fails_fake(self: Any, *args: Any, **kwargs: Any) -> None:
        raise InjectedFailure("crash after the index write, before SUCCEEDED")

    if seam == "mid-index":
        monkeypatch.setattr(SqliteSearchIndex, "replace", replace_half_then_fail_fake)
    else:
        monkeypatch.setattr(SqlJobRepository, "succeed", succeed_fails_fake)
    assert run_one_job(services) is JobState.RETRYING
    after_failure = counts(services)
    assert (after_failure["chunks"], after_failure["chunks_fts"], after_failure["chunks_vec"]) == (
        0,
        0,
        0,
    )

    monkeypatch.setattr(SqliteSearchIndex, "replace", real_replace)
    monkeypatch.setattr(SqlJobRepository, "succeed", real_succeed)
    services.clock = lambda: processing_time_after_backoff(services)
    assert run_one_job(services) is JobState.SUCCEEDED
    done = counts(services)
    document = documents.get(services, "acme", accepted.document.id)
    assert document.chunk_count > 1
    assert done["chunks"] == done["chunks_fts"] == done["chunks_vec"] == document.chunk_count


def processing_time_after_backoff(services: Services) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=services.settings.retry_max_seconds + 1)
