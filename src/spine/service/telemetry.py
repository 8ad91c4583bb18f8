"""Series read at scrape time from the system's own state: the queue, the breaker."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from prometheus_client.core import GaugeMetricFamily

from spine.domain.jobs import JobState
from spine.observability.metrics import BREAKER_STATES, CallbackCollector
from spine.ports import Breaker
from spine.service.container import Services

log = structlog.get_logger("spine.telemetry")


def queue_gauges(services: Services) -> Iterable[GaugeMetricFamily]:
    """Jobs by state, the oldest runnable job's age and the DLQ's depth, from the database.

    Every process that serves /metrics reports the same numbers (there is one queue):
    dashboards take ``max`` over instances, not ``sum``.
    """
    now = services.clock()
    try:
        with services.db.read() as uow:
            snapshot = uow.dispatch.snapshot(now=now)
    except Exception as exc:
        # A scrape must not fail with the database: the HTTP series still matter most then.
        log.warning("metrics.queue_unavailable", error_type=type(exc).__name__)
        return []
    jobs = GaugeMetricFamily("spine_jobs", "Jobs in each state.", labels=["state"])
    for state in JobState:
        jobs.add_metric([state.value], snapshot.counts.get(state, 0))
    oldest = snapshot.oldest_runnable_at
    age = GaugeMetricFamily(
        "spine_queue_oldest_runnable_age_seconds",
        "How long the longest-waiting runnable job has been runnable (0: none).",
        value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )
    dlq = GaugeMetricFamily(
        "spine_dlq_depth",
        "Jobs in the dead-letter queue (FAILED).",
        value=snapshot.counts.get(JobState.FAILED, 0),
    )
    return [jobs, age, dlq]


def breaker_gauges(breaker: Breaker, name: str) -> Iterable[GaugeMetricFamily]:
    family = GaugeMetricFamily(
        "spine_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        labels=["name"],
    )
    family.add_metric([name], BREAKER_STATES[breaker.state.replace("-", "_")])
    return [family]


def install_collectors(services: Services) -> None:
    services.metrics.register(CallbackCollector(lambda: queue_gauges(services)))
    breaker = services.breaker
    if breaker is not None:
        services.metrics.register(CallbackCollector(lambda: breaker_gauges(breaker, "embedder")))
