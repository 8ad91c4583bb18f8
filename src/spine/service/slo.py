"""SLOs as code: count each SLO's events, keep them per minute, report budgets and burn.

Every process counts events in memory (:class:`SloRecorder`) and adds them to the
``slo_minutes`` rows every ``slo_flush_seconds`` (:class:`SloFlusher`); the rows sum
every process's counts. :func:`build_report` reads them back: each SLO's SLI and error
budget over ``slo_window_days``, its burn rates over the :data:`BURN_WINDOWS`, and its
error ratio hour by hour for a sparkline. The arithmetic is in :mod:`spine.domain.slo`.

Freshness is the one SLO whose bad events can be late to arrive: an upload stuck in the
queue has no outcome yet. The report counts every unfinished job that is already past
the threshold as a bad event of the current minute (never stored, so it is not counted
twice once the job finishes late), so a stuck queue burns budget while it is stuck.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from spine.domain import slo as domain
from spine.domain.slo import Counts, MinuteCounts, Objective
from spine.observability.metrics import Metrics
from spine.ports import Database
from spine.settings import Settings

if TYPE_CHECKING:
    from spine.service.container import Services

log = structlog.get_logger("spine.slo")

#: The burn-rate windows of the multiwindow alerts (SRE workbook, chapter 5): a short
#: window confirms a long one is still burning. Name -> length.
BURN_WINDOWS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
}
#: Hours of error ratio a report carries, newest last: the sparkline's width.
HISTORY_HOURS = 24
#: Old rows go at most this often: the purge is one DELETE, but each flush need not run it.
PURGE_INTERVAL = timedelta(hours=1)


def objectives_of(settings: Settings) -> tuple[Objective, ...]:
    return domain.objectives(
        availability=settings.slo_availability_objective,
        search_latency=settings.slo_search_latency_objective,
        search_latency_seconds=settings.slo_search_latency_seconds,
        freshness=settings.slo_freshness_objective,
        freshness_seconds=settings.slo_freshness_seconds,
    )


class SloRecorder:
    """This process's SLO events not yet in the database, per (slo, minute).

    ``record`` is called on every request, so it only takes a lock and adds to a dict;
    ``flush`` writes outside that lock and gives the counts back if the write fails."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.objectives = objectives_of(settings)
        self._metrics = metrics
        self._lock = threading.Lock()
        self._pending: defaultdict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
        self._last_purge: datetime | None = None
        for objective in self.objectives:
            metrics.slo_objective.labels(slo=objective.name).set(objective.target)

    def record(self, slo: str, good: bool, at: datetime) -> None:
        """Count one event of ``slo`` at ``at``, good or bad."""
        if slo not in domain.NAMES:
            # A typo would make a series no report reads and a metric label no alert uses.
            raise ValueError(f"unknown SLO {slo!r}")
        key = (slo, domain.minute_of(at))
        with self._lock:
            counts = self._pending[key]
            counts[0] += int(good)
            counts[1] += 1
        self._metrics.slo_events.labels(slo=slo, outcome="good" if good else "bad").inc()

    def pending(self) -> dict[tuple[str, datetime], tuple[int, int]]:
        """A copy of the counts not yet written: (slo, minute) -> (good, total)."""
        with self._lock:
            return {key: (good, total) for key, (good, total) in self._pending.items()}

    def flush(self, db: Database, *, now: datetime | None = None) -> bool:
        """Add the pending counts to the database in one write transaction; False when
        that failed (logged as ``slo.flush_failed``), in which case the counts are pending
        again and the next flush retries them. Rows older than the SLO window are purged
        here too, at most once per :data:`PURGE_INTERVAL`."""
        now = now or datetime.now(UTC)
        with self._lock:
            batch = {key: (good, total) for key, (good, total) in self._pending.items()}
            self._pending.clear()
            purge = self._last_purge is None or now - self._last_purge >= PURGE_INTERVAL
        if not batch and not purge:
            return True
        try:
            with db.write() as uow:
                uow.slo.add(batch)
                purged = (
                    uow.slo.purge_older_than(now - timedelta(days=self.settings.slo_window_days))
                    if purge
                    else 0
                )
        except Exception:
            # The transaction rolled back, so none of the batch is stored: put it back,
            # on top of whatever was recorded meanwhile.
            with self._lock:
                for key, (good, total) in batch.items():
                    counts = self._pending[key]
                    counts[0] += good
                    counts[1] += total
            log.exception("slo.flush_failed", minutes=len(batch))
            return False
        if purge:
            with self._lock:
                self._last_purge = now
            if purged:
                log.info("slo.purged", rows=purged)
        return True


class SloFlusher:
    """A daemon thread flushing the recorder every ``slo_flush_seconds``, and once more
    on ``stop`` so a clean shutdown loses nothing."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="slo-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        services = self._services
        while not self._stop.wait(services.settings.slo_flush_seconds):
            services.slo.flush(services.db, now=services.clock())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._services.slo.flush(self._services.db, now=self._services.clock())


# -- the report ---------------------------------------------------------------------


@dataclass(frozen=True)
class SloStatus:
    """One SLO over the report's window. ``budget_remaining`` is not clamped: -4.0 means
    five times the allowed bad events."""

    name: str
    objective: float
    description: str
    threshold_seconds: float | None
    good: int
    total: int
    sli: float
    budget_allowed: float
    budget_bad: int
    budget_remaining: float
    burn_rates: dict[str, float]
    history: list[float | None]
    """The error ratio of each of the last HISTORY_HOURS hours, oldest first; None for an
    hour without events."""
    overdue_jobs: int
    """Freshness only: unfinished jobs already past the threshold, counted as bad events."""


@dataclass(frozen=True)
class SloReport:
    generated_at: datetime
    window_days: int
    slos: list[SloStatus]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON values (the API's response body has the same shape)."""
        data = asdict(self)
        data["generated_at"] = self.generated_at.isoformat()
        return data


def build_report(db: Database, settings: Settings, now: datetime) -> SloReport:
    """The SLO report as of ``now`` from the stored counts alone: what ``spine slo``
    runs without a server. A server's own pending counts are not in it (see ``report``)."""
    window_start = now - timedelta(days=settings.slo_window_days)
    # The longest of the burn windows and the history, read minute by minute.
    recent_start = now - max([*BURN_WINDOWS.values(), domain.HOUR * HISTORY_HOURS])
    current = domain.minute_of(now)
    statuses = []
    with db.read() as uow:
        overdue = uow.slo.overdue_jobs(now, settings.slo_freshness_seconds)
        for objective in objectives_of(settings):
            good, total = uow.slo.totals(objective.name, window_start)
            recent: list[MinuteCounts] = uow.slo.series(objective.name, recent_start)
            late = overdue if objective.name == domain.FRESHNESS else 0
            if late:
                total += late
                recent.append((current, 0, late))
            statuses.append(_status(objective, Counts(good, total), recent, now, late))
    return SloReport(generated_at=now, window_days=settings.slo_window_days, slos=statuses)


def _status(
    objective: Objective, counts: Counts, recent: list[MinuteCounts], now: datetime, late: int
) -> SloStatus:
    target = objective.target
    return SloStatus(
        name=objective.name,
        objective=target,
        description=objective.description,
        threshold_seconds=objective.threshold_seconds,
        good=counts.good,
        total=counts.total,
        sli=domain.sli(counts),
        budget_allowed=domain.allowed_bad(target, counts),
        budget_bad=counts.bad,
        budget_remaining=domain.budget_remaining(target, counts),
        burn_rates={
            name: domain.burn_rate(target, domain.within(recent, now=now, window=window))
            for name, window in BURN_WINDOWS.items()
        },
        history=domain.hourly_error_ratios(recent, now=now, hours=HISTORY_HOURS),
        overdue_jobs=late,
    )


def report(services: Services, now: datetime | None = None) -> SloReport:
    """The report of a running service: its own pending counts are flushed first, so
    events it just recorded are in it."""
    now = now or services.clock()
    services.slo.flush(services.db, now=now)
    return build_report(services.db, services.settings, now)
