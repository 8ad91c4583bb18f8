"""SqlSloRepository on a real, migrated SQLite file: additive upserts (several processes
sum up), series, totals, the purge, and the overdue jobs the freshness SLO counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from spine.adapters.sqlite.database import SqliteDatabase
from spine.domain.jobs import Job
from spine.observability.metrics import Metrics
from spine.service.slo import SloRecorder
from spine.settings import Settings
from support.rows import job_row

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def rows(db: SqliteDatabase, slo: str = "availability") -> list[tuple[datetime, int, int]]:
    with db.read() as uow:
        return uow.slo.series(slo, T0 - timedelta(days=365))


def test_add_creates_rows_and_adds_to_existing_ones(db: SqliteDatabase) -> None:
    with db.write() as uow:
        uow.slo.add({("availability", T0): (9, 10), ("availability", T0 + MINUTE): (1, 1)})
    with db.write() as uow:
        uow.slo.add({("availability", T0): (5, 7)})
    assert rows(db) == [(T0, 14, 17), (T0 + MINUTE, 1, 1)]


def test_two_processes_flushing_the_same_minute_sum_up(db: SqliteDatabase, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)  # only the SLO objectives are read
    first, second = SloRecorder(settings, Metrics()), SloRecorder(settings, Metrics())
    at = T0 + timedelta(seconds=20)
    for _ in range(3):
        first.record("availability", True, at)
    first.record("availability", False, at)
    second.record("availability", True, at + timedelta(seconds=30))
    second.record("search_latency", False, at)

    assert first.flush(db, now=T0)
    assert second.flush(db, now=T0)

    assert rows(db) == [(T0, 4, 5)]
    assert rows(db, "search_latency") == [(T0, 0, 1)]
    assert first.pending() == {}
    assert second.pending() == {}


def test_series_is_oldest_first_after_since_and_of_one_slo(db: SqliteDatabase) -> None:
    with db.write() as uow:
        uow.slo.add(
            {
                ("freshness", T0 + 2 * MINUTE): (1, 2),
                ("freshness", T0): (3, 3),
                ("freshness", T0 + MINUTE): (0, 1),
                ("availability", T0 + MINUTE): (7, 7),
            }
        )
    with db.read() as uow:
        assert uow.slo.series("freshness", T0) == [(T0 + MINUTE, 0, 1), (T0 + 2 * MINUTE, 1, 2)]
        assert uow.slo.totals("freshness", T0 - MINUTE) == (4, 6)
        assert uow.slo.totals("freshness", T0) == (1, 3)
        assert uow.slo.totals("search_latency", T0 - MINUTE) == (0, 0)


def test_purge_drops_only_minutes_before_the_cutoff(db: SqliteDatabase) -> None:
    with db.write() as uow:
        uow.slo.add({("availability", T0 + i * MINUTE): (1, 1) for i in range(5)})
    with db.write() as uow:
        assert uow.slo.purge_older_than(T0 + 3 * MINUTE) == 3
    assert [minute for minute, _, _ in rows(db)] == [T0 + 3 * MINUTE, T0 + 4 * MINUTE]


def job(created_at: datetime, tenant: str = "acme") -> Job:
    return job_row(tenant, created_at=created_at)


def test_overdue_jobs_counts_unfinished_jobs_of_every_tenant_past_the_threshold(
    db: SqliteDatabase,
) -> None:
    now = T0 + timedelta(minutes=10)
    with db.write() as uow:
        uow.jobs.enqueue("acme", job(T0 - MINUTE))
    with db.write() as uow:
        # Finished: the worker counted it when it finished, the report must not.
        done = uow.dispatch.claim(worker_id="w", now=now, lease_seconds=30)
        assert done is not None
        assert done.lease_token is not None
        uow.jobs.succeed("acme", done.id, lease_token=done.lease_token, now=now)
    with db.write() as uow:
        for tenant in ("acme", "globex"):
            uow.jobs.enqueue(tenant, job(T0, tenant))  # 10 minutes old: overdue
        uow.jobs.enqueue("acme", job(now - timedelta(seconds=30)))  # on time so far
    with db.write() as uow:
        # A RUNNING job is as unfinished as a PENDING one, whichever is claimed.
        assert uow.dispatch.claim(worker_id="w", now=now, lease_seconds=30) is not None
    with db.read() as uow:
        assert uow.slo.overdue_jobs(now, 60) == 2
        assert uow.slo.overdue_jobs(now, 20) == 3
        assert uow.slo.overdue_jobs(now, 3600) == 0
