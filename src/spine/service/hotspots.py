"""The hot-spot radar: which tenants take the largest shares of requests and queued work.

Per dimension (``requests``: HTTP requests a tenant's callers make, counted by the
telemetry middleware; ``jobs``: jobs a tenant queues by uploading or retrying) two
space-saving sketches of ``k`` counters each (:mod:`spine.domain.hotspots`): the current
window and the one before it. Windows are aligned to the epoch and ``window_seconds``
long; when the clock enters a new window the current sketch becomes the previous one and
an empty one starts, so shares always cover the last one to two windows, never all time,
in O(k) memory however many tenants there are.

A share is a tenant's count over both windows divided by the total of both. Counts are
upper bounds, as space-saving's are: a window's sketch that does not hold a tenant adds
its floor (the most it can have missed). The true count is within ``error`` below the
reported one, any tenant with more than 1/k of the traffic is named, and ``other`` gets
what the top leaves (so shares add up to 1 unless estimates overlap, then a little more).
A tenant whose share exceeds ``threshold`` is hot.

The radar counts in this process only: each process reports its own shares, and the
alert (deploy/prometheus) takes the maximum over instances.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily

from spine.domain.hotspots import SpaceSaving

DIMENSIONS = ("requests", "jobs")
#: The label of everyone outside the top k.
OTHER = "other"


@dataclass(frozen=True)
class TenantShare:
    tenant: str
    count: int
    """Estimated events of the tenant over the windows."""
    error: int
    """The true count is within ``count - error`` and ``count + error``."""
    share: float
    """``count / total``; 0.0 while there is no event at all."""


@dataclass(frozen=True)
class HotspotReport:
    """One dimension's shares at one moment."""

    dimension: str
    window_seconds: float
    threshold: float
    since: datetime
    """Start of the earliest window counted (the previous one)."""
    total: int
    top: list[TenantShare]
    """Up to ``k`` tenants, the largest share first."""
    other: TenantShare
    """Everyone else, as one: ``tenant`` is ``"other"``."""

    def is_hot(self, share: TenantShare) -> bool:
        return share.share > self.threshold

    def hot(self) -> list[TenantShare]:
        return [share for share in self.top if self.is_hot(share)]


class _Windows:
    def __init__(self, k: int) -> None:
        self.k = k
        self.current: SpaceSaving[str] = SpaceSaving(k)
        self.previous: SpaceSaving[str] = SpaceSaving(k)

    def rotate(self, steps: int) -> None:
        if steps >= 1:
            self.previous = self.current if steps == 1 else SpaceSaving(self.k)
            self.current = SpaceSaving(self.k)


class HotspotRadar:
    """Thread-safe: request handlers, workers and the metrics scrape share one radar."""

    def __init__(
        self, k: int, window_seconds: float, threshold: float, clock: Callable[[], datetime]
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.k = k
        self.window_seconds = window_seconds
        self.threshold = threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._windows = {dimension: _Windows(k) for dimension in DIMENSIONS}
        self._index: int | None = None

    def observe(self, dimension: str, tenant_id: str, weight: int = 1) -> None:
        """Count ``weight`` events of ``tenant_id``; a weight of 0 counts nothing."""
        windows = self._dimension(dimension)
        if weight == 0:
            return
        with self._lock:
            self._advance()
            windows.current.offer(tenant_id, weight)

    def report(self, dimension: str) -> HotspotReport:
        windows = self._dimension(dimension)
        with self._lock:
            index = self._advance()
            sketches = (windows.previous, windows.current)
            total = sum(sketch.total for sketch in sketches)
            tables = [
                ({key: (count, error) for key, count, error in sketch.top()}, sketch.floor)
                for sketch in sketches
            ]
        # Merged as mergeable summaries are (Agarwal et al. 2012): a window that did not
        # keep a tenant may still have seen up to its floor of it, so the estimate adds
        # that floor (space-saving counts are upper bounds, and must stay so for the
        # guarantee) and the error widens by as much. Ranking by lower counts instead
        # would drop a tenant that is heavy over both windows but was evicted from one.
        estimates = []
        for tenant in set().union(*(table for table, _ in tables)):
            count = error = 0
            for table, floor in tables:
                kept, kept_error = table.get(tenant, (floor, floor))
                count += kept
                error += kept_error
            estimates.append((tenant, count, error))
        estimates.sort(key=lambda estimate: (-estimate[1], estimate[2], estimate[0]))
        top = [_share(tenant, count, error, total) for tenant, count, error in estimates[: self.k]]
        # The top's counts are upper bounds: what they leave for everyone else is a lower
        # bound, never below zero, and at most the top's errors short of the truth.
        other_count = max(0, total - sum(share.count for share in top))
        other_error = sum(share.error for share in top)
        since = datetime.fromtimestamp((index - 1) * self.window_seconds, UTC)
        return HotspotReport(
            dimension=dimension,
            window_seconds=self.window_seconds,
            threshold=self.threshold,
            since=since,
            total=total,
            top=top,
            other=_share(OTHER, other_count, other_error, total),
        )

    def shares(self, dimension: str) -> list[TenantShare]:
        """The top ``k`` tenants' shares, then ``other``'s: together they add up to 1."""
        report = self.report(dimension)
        return [*report.top, report.other]

    def hot(self, dimension: str) -> list[TenantShare]:
        """The tenants whose share exceeds the threshold."""
        return self.report(dimension).hot()

    def _dimension(self, dimension: str) -> _Windows:
        try:
            return self._windows[dimension]
        except KeyError:
            raise ValueError(f"unknown dimension {dimension!r}; one of {DIMENSIONS}") from None

    def _advance(self) -> int:
        """Rotate every dimension's windows up to the clock's; the lock is held."""
        index = math.floor(self._clock().timestamp() / self.window_seconds)
        if self._index is None:
            self._index = index
        elif index > self._index:
            for windows in self._windows.values():
                windows.rotate(index - self._index)
            self._index = index
        # A clock that steps back keeps counting into the current window.
        return self._index


def _share(tenant: str, count: int, error: int, total: int) -> TenantShare:
    return TenantShare(tenant, count, error, count / total if total else 0.0)


def hotspot_gauges(radar: HotspotRadar) -> list[GaugeMetricFamily]:
    """``spine_hotspot_share{dimension, tenant}`` and ``spine_hotspot_share_threshold``,
    for ``Metrics.register(CallbackCollector(...))``.

    A dimension without events has no share series. A tenant whose id is ``other`` is
    added to the ``other`` series, so that two series never carry the same labels.
    """
    shares = GaugeMetricFamily(
        "spine_hotspot_share",
        "Share of requests or of queued jobs over the last one or two radar windows, per "
        "top-k tenant and 'other' for the rest.",
        labels=["dimension", "tenant"],
    )
    for dimension in DIMENSIONS:
        report = radar.report(dimension)
        if report.total == 0:
            continue
        other = report.other.share
        for share in report.top:
            if share.tenant == OTHER:
                other += share.share
            else:
                shares.add_metric([dimension, share.tenant], share.share)
        shares.add_metric([dimension, OTHER], other)
    threshold = GaugeMetricFamily(
        "spine_hotspot_share_threshold",
        "A tenant's share of requests or jobs above which it is a hot spot.",
        value=radar.threshold,
    )
    return [shares, threshold]
