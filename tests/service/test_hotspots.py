"""The radar: shares over the last one or two windows, rotated by the clock; shares and
``other`` add up to 1; tenants over the threshold are hot; uploads and retries count as
queued work, once committed."""

from __future__ import annotations

import io
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.core import GaugeMetricFamily

from spine.domain.jobs import JobError, JobState, RetryDecision
from spine.queue.worker import claim_next
from spine.service import documents, jobs
from spine.service.container import Services
from spine.service.hotspots import OTHER, HotspotRadar, TenantShare, hotspot_gauges

WINDOW = 60.0
#: The start of a window: epoch seconds divisible by the window.
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def radar(k: int = 3, threshold: float = 0.5) -> tuple[HotspotRadar, FakeClock]:
    clock = FakeClock()
    return HotspotRadar(k, WINDOW, threshold, clock), clock


def counts(shares: list[TenantShare]) -> dict[str, int]:
    return {share.tenant: share.count for share in shares}


# -- windows -------------------------------------------------------------------------------


def test_counts_last_through_the_next_window_and_are_gone_after_it() -> None:
    hotspots, clock = radar()
    hotspots.observe("requests", "acme", 4)

    clock.advance(WINDOW)  # the next window: acme's are in the previous one
    hotspots.observe("requests", "globex")
    assert counts(hotspots.shares("requests")) == {"acme": 4, "globex": 1, OTHER: 0}

    clock.advance(WINDOW)  # acme's window is two back: forgotten
    assert counts(hotspots.shares("requests")) == {"globex": 1, OTHER: 0}

    clock.advance(WINDOW)
    assert counts(hotspots.shares("requests")) == {OTHER: 0}


def test_a_gap_of_several_windows_forgets_everything() -> None:
    hotspots, clock = radar()
    hotspots.observe("jobs", "acme", 9)

    clock.advance(5 * WINDOW)

    report = hotspots.report("jobs")
    assert report.total == 0
    assert report.top == []
    assert report.other == TenantShare(OTHER, 0, 0, 0.0)


def test_windows_are_aligned_to_the_clock_not_to_the_first_event() -> None:
    hotspots, clock = radar()
    clock.advance(WINDOW - 1)
    hotspots.observe("requests", "acme")

    clock.advance(1)  # a new window starts: acme's second is now the previous window
    assert hotspots.report("requests").since == T0
    clock.advance(WINDOW)
    assert hotspots.report("requests").total == 0
    assert hotspots.report("requests").since == T0 + timedelta(seconds=WINDOW)


def test_a_clock_stepping_back_keeps_counting_into_the_current_window() -> None:
    hotspots, clock = radar()
    hotspots.observe("requests", "acme")
    clock.advance(-3 * WINDOW)
    hotspots.observe("requests", "acme")

    assert counts(hotspots.shares("requests")) == {"acme": 2, OTHER: 0}


def test_dimensions_are_counted_apart() -> None:
    hotspots, _ = radar()
    hotspots.observe("requests", "acme", 3)
    hotspots.observe("jobs", "globex", 2)

    assert counts(hotspots.shares("requests")) == {"acme": 3, OTHER: 0}
    assert counts(hotspots.shares("jobs")) == {"globex": 2, OTHER: 0}


def test_an_unknown_dimension_is_refused_and_a_weight_of_zero_counts_nothing() -> None:
    hotspots, _ = radar()
    with pytest.raises(ValueError, match="dimension"):
        hotspots.observe("bytes", "acme")
    hotspots.observe("jobs", "acme", 0)
    assert hotspots.report("jobs").total == 0


# -- shares --------------------------------------------------------------------------------


def test_beyond_k_tenants_the_rest_is_other_and_the_shares_add_up_to_one() -> None:
    hotspots, _ = radar(k=2)
    for _ in range(5):
        for tenant, weight in {"acme": 10, "globex": 6, "initech": 1, "umbrella": 1}.items():
            hotspots.observe("requests", tenant, weight)

    shares = hotspots.shares("requests")

    assert len(shares) == 3
    assert shares[-1].tenant == OTHER
    assert sum(share.share for share in shares) == pytest.approx(1.0)
    acme = shares[0]
    assert acme.tenant == "acme"  # 50 of 90: more than total / k, so always named
    assert acme.count - acme.error <= 50 <= acme.count
    assert shares[-1].count == 90 - shares[0].count - shares[1].count


def test_with_no_more_tenants_than_k_the_counts_are_exact() -> None:
    hotspots, _ = radar(k=3)
    for tenant, weight in {"acme": 5, "globex": 3, "initech": 2}.items():
        hotspots.observe("requests", tenant, weight)

    assert hotspots.shares("requests") == [
        TenantShare("acme", 5, 0, 0.5),
        TenantShare("globex", 3, 0, 0.3),
        TenantShare("initech", 2, 0, 0.2),
        TenantShare(OTHER, 0, 0, 0.0),
    ]


def test_only_tenants_above_the_threshold_are_hot() -> None:
    hotspots, _ = radar(threshold=0.5)
    hotspots.observe("jobs", "acme", 6)
    hotspots.observe("jobs", "globex", 4)
    assert [share.tenant for share in hotspots.hot("jobs")] == ["acme"]

    hotspots.observe("jobs", "globex", 2)  # 6 of 12 is not more than half
    assert hotspots.hot("jobs") == []


def test_a_quiet_radar_reports_no_share_and_nobody_hot() -> None:
    hotspots, _ = radar()
    assert hotspots.shares("requests") == [TenantShare(OTHER, 0, 0, 0.0)]
    assert hotspots.hot("requests") == []


EVENTS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 10.0, WINDOW]),  # seconds to advance the clock first
        st.one_of(st.just("whale"), st.sampled_from([f"t{n}" for n in range(12)])),
        st.integers(1, 4),
    ),
    max_size=200,
)


@given(k=st.integers(1, 5), events=EVENTS)
def test_over_two_windows_heavy_tenants_are_named_and_counts_bound_the_truth(
    k: int, events: list[tuple[float, str, int]]
) -> None:
    hotspots, clock = radar(k=k)
    timeline: list[tuple[datetime, str, int]] = []
    for seconds, tenant, weight in events:
        clock.advance(seconds)
        hotspots.observe("requests", tenant, weight)
        timeline.append((clock.now, tenant, weight))

    report = hotspots.report("requests")
    truth: Counter[str] = Counter()
    for at, tenant, weight in timeline:
        if at >= report.since:
            truth[tenant] += weight
    assert report.total == sum(truth.values())
    assert len(report.top) <= k
    for share in report.top:
        assert share.count - share.error <= truth[share.tenant] <= share.count, share
    named = {share.tenant for share in report.top}
    heavy = {tenant for tenant, count in truth.items() if count * k > report.total}
    assert heavy <= named
    rest = sum(count for tenant, count in truth.items() if tenant not in named)
    assert report.other.count <= rest <= report.other.count + report.other.error
    if report.total:
        # Upper-bound counts may overlap; without evictions they are exact.
        shares = sum(s.share for s in [*report.top, report.other])
        assert shares >= 1.0 - 1e-9
        if all(share.error == 0 for share in report.top):
            assert shares == pytest.approx(1.0)


def test_observers_on_many_threads_lose_no_event() -> None:
    hotspots, _ = radar(k=4)

    def observe(tenant: str) -> None:
        for _ in range(2_000):
            hotspots.observe("requests", tenant)

    threads = [threading.Thread(target=observe, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert hotspots.report("requests").total == 16_000


# -- metrics -------------------------------------------------------------------------------


def values(families: list[GaugeMetricFamily]) -> dict[tuple[str, str | None, str | None], float]:
    """(name, dimension, tenant) -> value of every sample."""
    return {
        (sample.name, sample.labels.get("dimension"), sample.labels.get("tenant")): sample.value
        for family in families
        for sample in family.samples
    }


def test_gauges_give_each_top_tenants_share_other_and_the_threshold() -> None:
    hotspots, _ = radar(k=1, threshold=0.4)
    hotspots.observe("jobs", "globex", 1)
    hotspots.observe("jobs", "acme", 3)  # takes globex's counter: 4, of which 1 may be error

    assert values(hotspot_gauges(hotspots)) == {
        ("spine_hotspot_share", "jobs", "acme"): 1.0,
        ("spine_hotspot_share", "jobs", OTHER): 0.0,
        ("spine_hotspot_share_threshold", None, None): 0.4,
    }


def test_a_tenant_named_other_is_folded_into_the_other_series() -> None:
    hotspots, _ = radar(k=2)
    hotspots.observe("requests", OTHER, 2)
    hotspots.observe("requests", "acme", 1)
    hotspots.observe("requests", "globex", 1)  # takes acme's counter: 2, 1 of them error

    [shares] = [s for s in hotspot_gauges(hotspots) if s.name == "spine_hotspot_share"]
    values = {sample.labels["tenant"]: sample.value for sample in shares.samples}

    assert values == {"globex": 0.5, OTHER: 0.5}
    assert len(shares.samples) == 2


def test_bootstrap_registers_the_gauges_on_the_metrics_registry(services: Services) -> None:
    services.radar.observe("requests", "acme")

    value = services.metrics.registry.get_sample_value(
        "spine_hotspot_share", {"dimension": "requests", "tenant": "acme"}
    )

    assert value == 1.0
    assert services.metrics.registry.get_sample_value("spine_hotspot_share_threshold") == 0.5


# -- what counts as queued work --------------------------------------------------------------


def upload(services: Services, tenant: str, text: str) -> documents.Accepted:
    return documents.upload(
        services,
        tenant,
        documents.Upload(io.BytesIO(text.encode()), "a.txt", "text/plain", None, {}),
    )


def jobs_of(services: Services) -> dict[str, int]:
    return {share.tenant: share.count for share in services.radar.report("jobs").top}


def test_each_upload_that_queues_a_job_counts_and_a_duplicate_does_not(
    services: Services,
) -> None:
    upload(services, "acme", "first")
    upload(services, "acme", "second")
    upload(services, "globex", "first")
    duplicate = upload(services, "acme", "first")

    assert duplicate.duplicate
    assert jobs_of(services) == {"acme": 2, "globex": 1}


def test_retries_count_as_queued_work_one_per_job_requeued(services: Services) -> None:
    for n in range(3):
        upload(services, "acme", f"document {n}")
    for _ in range(3):
        job = claim_next(services, "w1")
        assert job is not None
        assert job.lease_token is not None
        with services.db.write() as uow:
            uow.jobs.fail(
                "acme",
                job.id,
                lease_token=job.lease_token,
                decision=RetryDecision(JobState.FAILED, None, "permanent"),
                error=JobError("extraction-failed", "boom"),
                now=services.clock(),
            )
    with services.db.read() as uow:
        failed = uow.jobs.failed_ids("acme", error_type=None, limit=10)
    assert jobs_of(services) == {"acme": 3}

    jobs.retry(services, "acme", failed[0], created_by=None, subject="alice")
    assert jobs_of(services) == {"acme": 4}

    requeued = jobs.retry_failed(
        services, "acme", created_by=None, subject="alice", error_type=None, limit=10
    )
    assert len(requeued) == 2
    assert jobs_of(services) == {"acme": 6}

    jobs.retry_failed(services, "acme", created_by=None, subject="alice", error_type=None, limit=10)
    assert jobs_of(services) == {"acme": 6}
