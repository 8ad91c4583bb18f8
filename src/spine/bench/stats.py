"""Summaries every benchmark reports the same way."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated linearly between ranks (numpy's
    default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def significant(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits: what a measurement can claim,
    whatever its magnitude (0 and non-finite values unchanged)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one number: their median and their range."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float], digits: int = 4) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one value")
        return cls(
            significant(statistics.median(values), digits),
            significant(min(values), digits),
            significant(max(values), digits),
        )
