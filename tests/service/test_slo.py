"""The SLO recorder, its flusher and the report, on a real SQLite file.

The recorder must never lose a count: a flush that fails puts its batch back. The report
must put each event in the right windows, which a fixed clock makes exact."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from spine.adapters.sqlite.database import SqliteDatabase, SqliteUnitOfWork
from spine.domain.jobs import Job
from spine.errors import Unavailable
from spine.observability.metrics import Metrics
from spine.service import slo
from spine.service.container import Services
from spine.service.slo import SloFlusher, SloRecorder, build_report
from spine.settings import Settings
from support.rows import job_row

NOW = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


class FailingDatabaseFault:
    """The real database, except that a write transaction fails at commit (after its
    statements ran, so the rollback is real) while ``failing`` is set."""

    def __init__(self, real: SqliteDatabase) -> None:
        self.real = real
        self.failing = True
        self.writes = 0

    @contextmanager
    def write(self) -> Iterator[SqliteUnitOfWork]:
        self.writes += 1
        with self.real.write() as uow:
            yield uow
            if self.failing:
                raise Unavailable("the database is unavailable", retry_after=2)

    @contextmanager
    def read(self) -> Iterator[SqliteUnitOfWork]:
        with self.real.read() as uow:
            yield uow

    def ping(self) -> None:
        self.real.ping()

    def compact(self) -> None:
        self.real.compact()

    def on_jobs_queued(self, callback: Callable[[], None]) -> None:
        self.real.on_jobs_queued(callback)

    def close(self) -> None:
        self.real.close()


@pytest.fixture
def slo_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def recorder(slo_settings: Settings) -> SloRecorder:
    return SloRecorder(slo_settings, Metrics())


def stored(db: SqliteDatabase, name: str = "availability") -> list[tuple[datetime, int, int]]:
    with db.read() as uow:
        return uow.slo.series(name, NOW - timedelta(days=365))


def record(recorder: SloRecorder, name: str, good: int, bad: int, at: datetime) -> None:
    for _ in range(good):
        recorder.record(name, True, at)
    for _ in range(bad):
        recorder.record(name, False, at)


# -- the recorder -----------------------------------------------------------------------


def test_a_failed_flush_keeps_every_count_for_the_next_one(
    db: SqliteDatabase, recorder: SloRecorder
) -> None:
    faulty = FailingDatabaseFault(db)
    record(recorder, "availability", good=3, bad=1, at=NOW)

    with capture_logs() as logs:
        assert recorder.flush(faulty, now=NOW) is False
    assert [entry["event"] for entry in logs] == ["slo.flush_failed"]
    assert stored(db) == []  # rolled back, nothing half-written
    minute = NOW.replace(second=0)
    assert recorder.pending() == {("availability", minute): (3, 4)}

    # Events recorded meanwhile join the retried batch; nothing is counted twice.
    record(recorder, "availability", good=1, bad=0, at=NOW)
    assert recorder.flush(faulty, now=NOW) is False
    faulty.failing = False
    assert recorder.flush(faulty, now=NOW) is True

    assert stored(db) == [(minute, 4, 5)]
    assert recorder.pending() == {}
    assert faulty.writes == 3


def test_a_flush_with_nothing_to_write_after_a_purge_does_not_touch_the_database(
    db: SqliteDatabase, recorder: SloRecorder
) -> None:
    faulty = FailingDatabaseFault(db)
    faulty.failing = False
    assert recorder.flush(faulty, now=NOW)  # the first flush purges
    assert recorder.flush(faulty, now=NOW + MINUTE)
    assert faulty.writes == 1


def test_old_rows_are_purged_at_most_once_an_hour(
    db: SqliteDatabase, recorder: SloRecorder, slo_settings: Settings
) -> None:
    window = timedelta(days=slo_settings.slo_window_days)
    old = (NOW - window - HOUR).replace(second=0)
    with db.write() as uow:
        uow.slo.add({("availability", old): (1, 1)})
    assert recorder.flush(db, now=NOW)
    assert stored(db) == []

    with db.write() as uow:
        uow.slo.add({("availability", old): (1, 1)})
    record(recorder, "availability", good=1, bad=0, at=NOW)
    assert recorder.flush(db, now=NOW + 30 * MINUTE)
    assert [minute for minute, _, _ in stored(db)] == [old, NOW.replace(second=0)]

    assert recorder.flush(db, now=NOW + HOUR)
    assert [minute for minute, _, _ in stored(db)] == [NOW.replace(second=0)]


def test_recording_counts_the_prometheus_series_and_the_objectives_are_exported(
    slo_settings: Settings,
) -> None:
    metrics = Metrics()
    recorder = SloRecorder(slo_settings, metrics)
    record(recorder, "search_latency", good=2, bad=1, at=NOW)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("spine_slo_events_total", slo="search_latency", outcome="good") == 2
    assert sample("spine_slo_events_total", slo="search_latency", outcome="bad") == 1
    assert sample("spine_slo_objective", slo="availability") == 0.999
    assert sample("spine_slo_objective", slo="freshness") == 0.95


def test_an_unknown_slo_name_is_refused(recorder: SloRecorder) -> None:
    with pytest.raises(ValueError, match="unknown SLO"):
        recorder.record("availabilty", True, NOW)
    assert recorder.pending() == {}


# -- the report ---------------------------------------------------------------------------


def test_the_report_puts_each_event_in_its_windows(services: Services) -> None:
    services.clock = lambda: NOW
    recorder = services.slo
    # Old enough to be outside every window but the 28 days: 10000 good, 5 bad.
    record(recorder, "availability", good=10_000, bad=5, at=NOW - timedelta(days=3))
    # Outside the 28 days: counted nowhere.
    record(recorder, "availability", good=0, bad=50, at=NOW - timedelta(days=29))
    # 3 hours ago: in the 6 h window only (and in the history).
    record(recorder, "availability", good=990, bad=10, at=NOW - 3 * HOUR)
    # 2 minutes ago: in every window.
    record(recorder, "availability", good=99, bad=1, at=NOW - 2 * MINUTE)

    report = slo.report(services)  # flushes the recorder first
    assert recorder.pending() == {}

    status = {s.name: s for s in report.slos}["availability"]
    assert (status.good, status.total, status.budget_bad) == (11_089, 11_105, 16)
    assert status.budget_allowed == pytest.approx(11.105)
    assert status.budget_remaining == pytest.approx(1 - 16 / 11.105)
    assert status.sli == pytest.approx(11_089 / 11_105)
    # 5m and 1h: 1 bad of 100 = 1 %, ten times the 0.1 % allowed.
    assert status.burn_rates["5m"] == pytest.approx(10.0)
    assert status.burn_rates["1h"] == pytest.approx(10.0)
    # 6h: 11 bad of 1100 = 1 % too; the old errors are in no burn window.
    assert status.burn_rates["6h"] == pytest.approx(10.0)
    assert len(status.history) == 24
    assert status.history[-1] == pytest.approx(0.01)
    assert status.history[-4] == pytest.approx(0.01)
    assert status.history.count(None) == 22
    assert report.generated_at == NOW
    assert report.window_days == 28


def test_recent_errors_burn_the_short_window_faster_than_the_long_one(
    db: SqliteDatabase, slo_settings: Settings, recorder: SloRecorder
) -> None:
    record(recorder, "search_latency", good=5_000, bad=0, at=NOW - 5 * HOUR)
    record(recorder, "search_latency", good=100, bad=0, at=NOW - 30 * MINUTE)
    record(recorder, "search_latency", good=80, bad=20, at=NOW - MINUTE)
    assert recorder.flush(db, now=NOW)

    status = {s.name: s for s in build_report(db, slo_settings, NOW).slos}["search_latency"]
    # 20 % errors against 1 % allowed in the last 5 minutes; diluted over longer windows.
    assert status.burn_rates["5m"] == pytest.approx(20.0)
    assert status.burn_rates["1h"] == pytest.approx(10.0)
    assert status.burn_rates["6h"] == pytest.approx((20 / 5_200) / 0.01)
    assert status.burn_rates["5m"] > status.burn_rates["1h"] >= status.burn_rates["6h"]


def test_an_slo_without_events_is_untouched(db: SqliteDatabase, slo_settings: Settings) -> None:
    report = build_report(db, slo_settings, NOW)
    assert [s.name for s in report.slos] == ["availability", "search_latency", "freshness"]
    for status in report.slos:
        assert (status.total, status.sli, status.budget_remaining) == (0, 1.0, 1.0)
        assert set(status.burn_rates.values()) == {0.0}
        assert status.history == [None] * 24


def stuck_job(created_at: datetime) -> Job:
    return job_row("acme", created_at=created_at)


def test_jobs_stuck_past_the_threshold_burn_the_freshness_budget_without_being_stored(
    db: SqliteDatabase, slo_settings: Settings, recorder: SloRecorder
) -> None:
    record(recorder, "freshness", good=19, bad=0, at=NOW - 2 * HOUR)
    assert recorder.flush(db, now=NOW)
    with db.write() as uow:
        uow.jobs.enqueue("acme", stuck_job(NOW - 10 * MINUTE))
        uow.jobs.enqueue("acme", stuck_job(NOW - timedelta(seconds=5)))  # not late yet

    status = {s.name: s for s in build_report(db, slo_settings, NOW).slos}["freshness"]
    assert status.overdue_jobs == 1
    assert (status.good, status.total) == (19, 20)
    # 1 bad of 1 in the last 5 minutes against 5 % allowed.
    assert status.burn_rates["5m"] == pytest.approx(20.0)
    assert status.history[-1] == 1.0
    assert stored(db, "freshness") == [((NOW - 2 * HOUR).replace(second=0), 19, 19)]


# -- the flusher --------------------------------------------------------------------------


def test_the_flusher_writes_periodically_and_once_more_on_stop(services: Services) -> None:
    services.settings.slo_flush_seconds = 0.05
    flusher = SloFlusher(services)
    flusher.start()
    try:
        services.slo.record("availability", True, NOW)
        deadline = time.monotonic() + 5
        while not stored(services.db) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stored(services.db) == [(NOW.replace(second=0), 1, 1)]
        services.settings.slo_flush_seconds = 3600  # the next wait outlasts the test
        time.sleep(0.1)
        services.slo.record("availability", False, NOW)
    finally:
        flusher.stop()
    assert stored(services.db) == [(NOW.replace(second=0), 1, 2)]
