"""SLO event counts per minute, summed over every process that serves or works.

These rows are not tenant data: one row counts the events of all tenants in a minute,
so the repository is cross-tenant by design, like :class:`SqlHousekeeping` (see
:mod:`spine.ports`). Only the SLO recorder, the report and ``spine slo`` use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, select

from spine.adapters.sql.dialects import conflict_insert
from spine.adapters.sql.tables import jobs, slo_minutes
from spine.domain.jobs import JobState

#: The states of a job whose document is not searchable yet.
UNFINISHED = (JobState.PENDING.value, JobState.RUNNING.value, JobState.RETRYING.value)


class SqlSloRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, counts: Mapping[tuple[str, datetime], tuple[int, int]]) -> None:
        """Add (good, total) to the row of each (slo, minute), creating it if needed.

        The addition happens in the database (an upsert adding to the stored values,
        never a read-then-write), so processes flushing the same minute all count."""
        if not counts:
            return
        rows = [
            {"slo": slo, "minute": minute, "good": good, "total": total}
            for (slo, minute), (good, total) in counts.items()
        ]
        insert = conflict_insert(self._conn, slo_minutes)
        statement = insert.on_conflict_do_update(
            index_elements=[slo_minutes.c.slo, slo_minutes.c.minute],
            set_={
                "good": slo_minutes.c.good + insert.excluded.good,
                "total": slo_minutes.c.total + insert.excluded.total,
            },
        )
        self._conn.execute(statement, rows)

    def series(self, slo: str, since: datetime) -> list[tuple[datetime, int, int]]:
        """(minute, good, total) of the minutes after ``since``, oldest first."""
        rows = self._conn.execute(
            select(slo_minutes.c.minute, slo_minutes.c.good, slo_minutes.c.total)
            .where((slo_minutes.c.slo == slo) & (slo_minutes.c.minute > since))
            .order_by(slo_minutes.c.minute)
        )
        return [(minute, int(good), int(total)) for minute, good, total in rows]

    def totals(self, slo: str, since: datetime) -> tuple[int, int]:
        """(good, total) summed over the minutes after ``since``: a 28-day window is
        40 000 rows per SLO, summed where they are rather than shipped to Python."""
        good, total = self._conn.execute(
            select(
                func.coalesce(func.sum(slo_minutes.c.good), 0),
                func.coalesce(func.sum(slo_minutes.c.total), 0),
            ).where((slo_minutes.c.slo == slo) & (slo_minutes.c.minute > since))
        ).one()
        return int(good), int(total)

    def purge_older_than(self, cutoff: datetime) -> int:
        """Drop the minutes that started before ``cutoff``; returns how many."""
        result = self._conn.execute(delete(slo_minutes).where(slo_minutes.c.minute < cutoff))
        return int(result.rowcount)

    def overdue_jobs(self, now: datetime, older_than_seconds: float) -> int:
        """Unfinished jobs of any tenant queued more than ``older_than_seconds`` ago: the
        uploads that already missed the freshness threshold but have no outcome yet."""
        cutoff = now - timedelta(seconds=older_than_seconds)
        count = self._conn.execute(
            select(func.count())
            .select_from(jobs)
            .where(jobs.c.state.in_(UNFINISHED) & (jobs.c.created_at < cutoff))
        ).scalar_one()
        return int(count)
