"""A thread-safe circuit breaker for a downstream service (closed -> open -> half-open).

- **closed**: calls go through. ``failure_threshold`` failures in a row open it.
- **open**: calls fail at once with :class:`DownstreamUnavailable`, without touching the
  downstream, until ``reset_seconds`` have passed since it opened.
- **half-open**: the reset time has passed. The next call is let through as the one probe;
  while it runs, every other call still fails at once. The probe's success closes the
  breaker, its failure opens it again for another ``reset_seconds``.

Written here rather than taken from a library: ``pybreaker`` holds one lock around the whole
guarded call, so it would run the worker threads' embedding requests one at a time, and it
reads ``datetime.now`` itself (no injectable clock); ``purgatory`` has no locking at all
and lets every call through while half-open.

Only the state changes are under the lock, never the guarded call. A call that was let in
while closed and finishes after the breaker opened changes nothing (a late success does
not close it, a late failure does not push the probe further away).

What counts as a failure is a predicate; by default every exception except a permanent
:class:`~spine.errors.PipelineError`, which means the downstream answered: a bad request
is not an outage.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, TypeVar

import structlog

from spine.errors import DownstreamUnavailable, PipelineError

__all__ = ["BreakerState", "CircuitBreaker", "utc_now"]

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half-open"]
Clock = Callable[[], datetime]

log = structlog.get_logger("spine.breaker")


def utc_now() -> datetime:
    return datetime.now(UTC)


def counts_as_failure(exc: BaseException) -> bool:
    """Default predicate: a permanent pipeline error is an answer, anything else an outage."""
    return not (isinstance(exc, PipelineError) and not exc.transient)


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        name: str = "downstream",
        clock: Clock = utc_now,
        is_failure: Callable[[BaseException], bool] = counts_as_failure,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if reset_seconds <= 0:
            raise ValueError(f"reset_seconds must be positive, got {reset_seconds}")
        self.failure_threshold: Final = failure_threshold
        self.reset: Final = timedelta(seconds=reset_seconds)
        self.name: Final = name
        self._clock: Final = clock
        self._is_failure: Final = is_failure
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: datetime | None = None  # None: closed
        self._probe_started_at: datetime | None = None  # a half-open probe is running
        self._probe: _Probe | None = None

    # -- reading ------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state(self._clock())

    @property
    def next_probe_at(self) -> datetime | None:
        """When a call will next be let through; None while closed, in the past if now."""
        with self._lock:
            return self._next_probe_at()

    @property
    def failure_count(self) -> int:
        """Failures in a row while closed."""
        with self._lock:
            return self._failures

    def _state(self, now: datetime) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._probe_started_at is None and now < self._opened_at + self.reset:
            return "open"
        return "half-open"

    def _next_probe_at(self) -> datetime | None:
        if self._opened_at is None:
            return None
        if self._probe_started_at is not None:
            # A probe is out; if it never reports back, its slot expires after reset.
            return self._probe_started_at + self.reset
        return self._opened_at + self.reset

    # -- guarding -----------------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        with self.guard():
            return fn()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run the block if the breaker allows it, and record how it ended."""
        probe = self._admit()
        try:
            yield
        except Exception as exc:
            if self._is_failure(exc):
                self._record_failure(probe)
            else:
                self._record_success(probe)
            raise
        except BaseException:
            self._release(probe)  # interrupted: says nothing about the downstream
            raise
        self._record_success(probe)

    def _admit(self) -> _Probe | None:
        """The probe's token if the caller is the half-open probe, None while closed.

        Raises :class:`DownstreamUnavailable` while open or while another probe runs.
        """
        with self._lock:
            retry_at = self._next_probe_at()
            if retry_at is None:
                return None
            now = self._clock()
            if now < retry_at:
                state = self._state(now)
                raise DownstreamUnavailable(
                    f"{self.name} is unavailable (circuit {state}); next try at "
                    f"{retry_at.isoformat()}",
                    retry_at=retry_at,
                    retry_after=max(1, math.ceil((retry_at - now).total_seconds())),
                )
            self._probe = _Probe()
            self._probe_started_at = now
            log.info("breaker.half_open", breaker=self.name)
            return self._probe

    def _record_success(self, probe: _Probe | None) -> None:
        with self._lock:
            if probe is None:
                if self._opened_at is None:
                    self._failures = 0
            elif probe is self._probe:
                log.info("breaker.closed", breaker=self.name)
                self._opened_at = self._probe_started_at = self._probe = None
                self._failures = 0

    def _release(self, probe: _Probe | None) -> None:
        with self._lock:
            if probe is not None and probe is self._probe:
                self._probe_started_at = self._probe = None

    def _record_failure(self, probe: _Probe | None) -> None:
        with self._lock:
            now = self._clock()
            if probe is None:
                if self._opened_at is None:
                    self._failures += 1
                    if self._failures >= self.failure_threshold:
                        self._open(now)
            elif probe is self._probe:
                self._open(now)

    def _open(self, now: datetime) -> None:
        self._opened_at = now
        self._probe_started_at = self._probe = None
        self._failures = 0
        log.warning("breaker.opened", breaker=self.name, retry_at=(now + self.reset).isoformat())


class _Probe:
    """Identifies one half-open probe, so a probe whose slot expired cannot decide."""

    __slots__ = ()
