"""Service level objectives and their arithmetic: SLIs, error budgets, burn rates.

The definitions follow Google's *The Site Reliability Workbook*, chapter 2
("Implementing SLOs") and chapter 5 ("Alerting on SLOs"):

- an SLI is the share of good events among valid events, ``good / total``;
- the error budget over a window is the bad events the objective allows there,
  ``(1 - target) * total``, and what is left of it is ``1 - bad / allowed``;
- a burn rate is how fast a window spends the budget relative to spending it exactly
  evenly over the SLO window, ``(bad / total) / (1 - target)``: 1 uses up the budget
  exactly at the window's end, 14.4 over one hour spends 2 % of a 30-day budget.

Events are counted per SLO and per minute (``minute_of``); everything here is plain
arithmetic over such counts, with no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

AVAILABILITY = "availability"
SEARCH_LATENCY = "search_latency"
FRESHNESS = "freshness"
#: Every SLO Spine keeps, in the order reports list them. Metric labels and stored rows
#: use these names, so never rename one.
NAMES: tuple[str, ...] = (AVAILABILITY, SEARCH_LATENCY, FRESHNESS)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)

#: One minute's counts of one SLO, as stored: (minute, good, total).
MinuteCounts = tuple[datetime, int, int]


@dataclass(frozen=True)
class Objective:
    """What share of events must be good (``target``), and what makes an event good."""

    name: str
    target: float
    description: str
    threshold_seconds: float | None = None

    def __post_init__(self) -> None:
        # 1.0 would leave no budget at all (every burn rate a division by zero): the
        # workbook's point is that 100 % is the wrong target for anything.
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"SLO target must be strictly between 0 and 1, not {self.target}")


def objectives(
    *,
    availability: float,
    search_latency: float,
    search_latency_seconds: float,
    freshness: float,
    freshness_seconds: float,
) -> tuple[Objective, ...]:
    """Spine's three SLOs from plain numbers (the settings' ``slo_*`` values)."""
    return (
        Objective(
            AVAILABILITY,
            availability,
            "API requests answered with anything but a 5xx.",
        ),
        Objective(
            SEARCH_LATENCY,
            search_latency,
            f"Searches answered within {search_latency_seconds * 1000:g} ms.",
            search_latency_seconds,
        ),
        Objective(
            FRESHNESS,
            freshness,
            f"Uploads searchable within {freshness_seconds:g} s of being queued.",
            freshness_seconds,
        ),
    )


def minute_of(at: datetime) -> datetime:
    """The UTC minute an event at ``at`` is counted in."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: SLO events are counted in UTC minutes")
    return at.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass(frozen=True)
class Counts:
    good: int = 0
    total: int = 0

    @property
    def bad(self) -> int:
        return self.total - self.good

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.good + other.good, self.total + other.total)


def sli(counts: Counts) -> float:
    """The share of good events; 1.0 when there were none (nothing went wrong)."""
    return counts.good / counts.total if counts.total else 1.0


def error_ratio(counts: Counts) -> float | None:
    """The share of bad events; None when there were none (no data is not "no errors")."""
    return counts.bad / counts.total if counts.total else None


def allowed_bad(target: float, counts: Counts) -> float:
    """The error budget in events: how many of ``counts.total`` may be bad."""
    return (1.0 - target) * counts.total


def budget_remaining(target: float, counts: Counts) -> float:
    """The unspent share of the error budget, ``1 - bad / allowed``: 1.0 untouched,
    0.0 spent exactly, negative when overspent (not clamped: how far over is worth
    knowing; displays may clamp). 1.0 when there were no events."""
    allowed = allowed_bad(target, counts)
    return 1.0 - counts.bad / allowed if allowed else 1.0


def burn_rate(target: float, counts: Counts) -> float:
    """How fast these events spend the budget, ``(bad / total) / (1 - target)``; 0.0
    when there were none."""
    if not counts.total:
        return 0.0
    return (counts.bad / counts.total) / (1.0 - target)


def within(series: Iterable[MinuteCounts], *, now: datetime, window: timedelta) -> Counts:
    """The counts of the minutes that started after ``now - window``: for a 5-minute
    window, the current minute and the four before it. Minutes ahead of ``now`` count
    too: they are another process's clock running a little fast, not the future."""
    start = now - window
    good = total = 0
    for minute, minute_good, minute_total in series:
        if minute > start:
            good += minute_good
            total += minute_total
    return Counts(good, total)


def hourly_error_ratios(
    series: Sequence[MinuteCounts], *, now: datetime, hours: int
) -> list[float | None]:
    """The error ratio of each of the last ``hours`` hours, oldest first, the last one
    ending at ``now``; None for an hour without events."""
    buckets = [Counts() for _ in range(hours)]
    for minute, good, total in series:
        age = now - minute
        if age >= hours * HOUR:
            continue
        # A minute slightly ahead of ``now`` (another process's clock) is the newest hour.
        index = hours - 1 - max(0, int(age / HOUR))
        buckets[index] = buckets[index] + Counts(good, total)
    return [error_ratio(bucket) for bucket in buckets]
