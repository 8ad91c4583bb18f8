"""Wakes idle workers before their poll interval ends: rung when a job may have become
runnable (a PostgreSQL notification) and when the pool stops."""

from __future__ import annotations

import threading


class Doorbell:
    """A ring counter under a condition. A worker reads :attr:`rings` before it looks for
    work and waits for a ring after that: a ring between its look and its wait is not
    lost, as it would be with an Event cleared by whoever woke first."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._rings = 0

    @property
    def rings(self) -> int:
        with self._condition:
            return self._rings

    def ring(self) -> None:
        with self._condition:
            self._rings += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ring after ``seen``; True if one came."""
        with self._condition:
            return self._condition.wait_for(lambda: self._rings != seen, timeout)
