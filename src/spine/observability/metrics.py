"""Every Prometheus series Spine exports, in one registry per process (or per app in tests).

Labels are bounded by construction: routes are templates (``/v1/documents/{document_id}``),
status is a class (``2xx``), steps, states, outcomes and caches are fixed words, and the
only tenant ids are the radar's top k plus ``other``. No id of a document, job or
request is ever a label. ``deploy/prometheus`` and ``deploy/grafana`` use these names;
tests/deploy checks that every name they use is here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from spine import __version__

# A `_created` gauge beside every counter and histogram doubles the series for nothing
# Prometheus uses (it derives resets itself).
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Seconds; 0.25 is the search SLO's default threshold and must stay a bucket bound.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FRESHNESS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 10)
#: Breaker states as numbers, so one alert compares a gauge: open is the highest.
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # -- RED, per route ------------------------------------------------------------
        self.http_requests = Counter(
            "spine_http_requests",
            "HTTP requests answered, by route template, method and status class.",
            ["route", "method", "status_class"],
            registry=r,
        )
        self.http_duration = Histogram(
            "spine_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "spine_http_requests_in_flight", "HTTP requests being answered now.", registry=r
        )
        # -- SLOs ----------------------------------------------------------------------
        self.slo_events = Counter(
            "spine_slo_events",
            "Events of each SLO, classified good or bad by Spine's configured thresholds.",
            ["slo", "outcome"],
            registry=r,
        )
        self.slo_objective = Gauge(
            "spine_slo_objective", "Target share of good events of each SLO.", ["slo"], registry=r
        )
        # -- the queue and the workers (USE) -------------------------------------------
        self.upload_to_searchable = Histogram(
            "spine_job_upload_to_searchable_seconds",
            "Time from a job's queueing to its document being searchable.",
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self.step_duration = Histogram(
            "spine_pipeline_step_duration_seconds",
            "Time of one pipeline step of one job.",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.job_runs = Counter(
            "spine_job_runs",
            "Job attempts by outcome: succeeded, retrying, failed (dead-lettered), lease_lost.",
            ["outcome"],
            registry=r,
        )
        self.attempts_until_done = Histogram(
            "spine_job_attempts_until_done",
            "Attempts a job took to succeed or be dead-lettered.",
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        self.workers = Gauge("spine_workers", "Worker threads in this process.", registry=r)
        self.workers_busy = Gauge(
            "spine_workers_busy", "Worker threads running a job now.", registry=r
        )
        self.worker_busy_seconds = Counter(
            "spine_worker_busy_seconds",
            "Seconds worker threads spent running jobs; rate / spine_workers is the busy ratio.",
            registry=r,
        )
        # -- the embedder --------------------------------------------------------------
        self.embed_duration = Histogram(
            "spine_embed_duration_seconds",
            "Time of one embedding call (one batch).",
            ["embedder"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        # -- caches --------------------------------------------------------------------
        self.cache_requests = Counter(
            "spine_cache_requests",
            "Cache lookups by cache and result (hit or miss).",
            ["cache", "result"],
            registry=r,
        )
        build = Gauge("spine_build_info", "Spine's version.", ["version"], registry=r)
        build.labels(version=__version__).set(1)

    def cache(self, name: str) -> Callable[[bool], None]:
        """A recorder for one cache's lookups: ``record(hit)``."""
        hit = self.cache_requests.labels(cache=name, result="hit")
        miss = self.cache_requests.labels(cache=name, result="miss")

        def record(was_hit: bool) -> None:
            (hit if was_hit else miss).inc()

        return record

    @contextmanager
    def busy_worker(self) -> Iterator[None]:
        self.workers_busy.inc()
        started = time.monotonic()
        try:
            yield
        finally:
            self.worker_busy_seconds.inc(time.monotonic() - started)
            self.workers_busy.dec()

    def register(self, collector: Collector) -> None:
        """Add series read at scrape time (the queue's depth, the breaker's state)."""
        self.registry.register(collector)


class CallbackCollector(Collector):
    """Gauges computed when Prometheus scrapes, by a function of the caller's."""

    def __init__(self, collect: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._collect()
