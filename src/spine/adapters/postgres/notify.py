"""LISTEN/NOTIFY: an idle worker wakes when a job is queued, instead of on its next poll.

Queueing a job sends ``NOTIFY spine_jobs`` in the queueing transaction (PostgreSQL
delivers it at commit, and only then). One listener thread per process holds one
connection of its own, LISTENs, and calls back on every notification; the workers'
poll stays as the fallback for jobs that become runnable by the clock (a retry's
backoff ending) and for the moments the listener is reconnecting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy.engine import make_url

from spine.adapters.sql.jobs import JOBS_CHANNEL

log = structlog.get_logger("spine.db")
#: How often the listener looks up from its socket to see whether it should stop.
_WAKE_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 30.0


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (any driver suffix) as the libpq URL psycopg connects with."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class JobListener:
    """A daemon thread calling ``on_job`` on each ``spine_jobs`` notification."""

    def __init__(self, url: str, on_job: Callable[[], None]) -> None:
        self._url = libpq_url(url)
        self._on_job = on_job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spine-job-listener", daemon=True)
        self.listening = threading.Event()

    def start(self) -> JobListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=_WAKE_SECONDS * 3)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=5, application_name="spine-listen"
                ) as conn:
                    conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    self.listening.set()
                    failures = 0
                    # Jobs queued while the listener was away woke no one: look now.
                    self._on_job()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=_WAKE_SECONDS):
                            self._on_job()
            except psycopg.Error as exc:
                self.listening.clear()
                failures += 1
                log.warning("db.listen_failed", error=type(exc).__name__, failures=failures)
                self._stop.wait(min(_MAX_BACKOFF_SECONDS, 0.5 * 2**failures))
        self.listening.clear()
