"""The heaviest keys of a stream in bounded memory: the space-saving sketch.

Metwally, Agrawal and El Abbadi, "Efficient Computation of Frequent and Top-k Elements
in Data Streams" (ICDT 2005). The sketch keeps at most ``k`` counters. A key it already
counts adds its weight; a new key takes a free counter, or else evicts the key with the
smallest count ``m`` and starts from ``m + weight`` with ``error = m`` (it may have been
seen up to ``m`` times while it was not counted). The counts always add up to the stream's
total, so the smallest is at most ``total / k``, and the paper's guarantees follow:

- every key whose true count exceeds ``total / k`` is in the sketch;
- a reported count overestimates the true count by at most its ``error``:
  ``count - error <= true count <= count``.

Written here rather than taken from a library: it is twenty lines, it is the product's
own core (the radar's numbers are only as good as these guarantees, which the tests check
as properties), and the sketch libraries on offer bring native code for much bigger jobs.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class SpaceSaving(Generic[K]):
    """Top-k heavy hitters of a weighted stream in O(k) memory, whatever the number of keys.

    Not thread-safe: the caller holds a lock (see :mod:`spine.service.hotspots`). An
    eviction scans the ``k`` counters for the smallest: with ``k`` at most in the hundreds
    that costs less than the linked "stream summary" of the paper would in Python.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self._counts: dict[K, int] = {}
        self._errors: dict[K, int] = {}
        self._total = 0

    @property
    def total(self) -> int:
        """The sum of every weight offered."""
        return self._total

    @property
    def floor(self) -> int:
        """An upper bound on the true count of any key not in the sketch: the smallest
        count once every counter is taken, else 0 (a key not counted was never seen)."""
        return min(self._counts.values()) if len(self._counts) >= self.k else 0

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, key: object) -> bool:
        return key in self._counts

    def offer(self, key: K, weight: int = 1) -> None:
        """Count ``weight`` (a positive integer) more occurrences of ``key``."""
        if weight < 1:
            raise ValueError("weight must be a positive integer")
        self._total += weight
        if key in self._counts:
            self._counts[key] += weight
            return
        if len(self._counts) < self.k:
            self._counts[key] = weight
            self._errors[key] = 0
            return
        smallest = min(self._counts, key=self._counts.__getitem__)
        floor = self._counts.pop(smallest)
        del self._errors[smallest]
        self._counts[key] = floor + weight
        self._errors[key] = floor

    def top(self) -> list[tuple[K, int, int]]:
        """``(key, count, error)`` of every counted key, the largest count first (then the
        smallest error). ``count`` is an upper bound on the key's true count, and
        ``count - error`` a lower bound."""
        return sorted(
            ((key, count, self._errors[key]) for key, count in self._counts.items()),
            key=lambda counted: (-counted[1], counted[2]),
        )
