"""The in-process bucket store: atomic under threads, bounded in memory."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from spine.adapters.ratelimit.memory import InProcessRateLimiter
from spine.domain.ratelimit import BucketRequest, RatePolicy

T0 = 1_700_000_000.0
ONE_A_SECOND = RatePolicy(rate=1, burst=1)


def bucket(key: str, policy: RatePolicy = ONE_A_SECOND, name: str = "subject") -> BucketRequest:
    return BucketRequest(key=key, policy=policy, name=name)


@pytest.fixture
def busy_threads() -> Iterator[None]:
    """Switch threads as often as CPython allows, so that an unguarded read-modify-write
    of a bucket interleaves within a few thousand calls."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_buckets_are_kept_between_calls() -> None:
    limiter = InProcessRateLimiter()
    assert limiter.acquire([bucket("a")], T0).allowed
    assert not limiter.acquire([bucket("a")], T0).allowed
    assert limiter.acquire([bucket("b")], T0).allowed  # another key, another bucket
    assert limiter.acquire([bucket("a")], T0 + 1).allowed


def test_a_shared_empty_bucket_refuses_without_charging_the_other() -> None:
    limiter = InProcessRateLimiter()
    shared = bucket("tenant", name="tenant")
    assert limiter.acquire([bucket("alice", RatePolicy(1, 2)), shared], T0).allowed

    refused = limiter.acquire([bucket("bob", RatePolicy(1, 2)), shared], T0)

    assert not refused.allowed
    bob_alone = limiter.acquire([bucket("bob", RatePolicy(1, 2))], T0)
    assert bob_alone.limiting.remaining == 1  # bob's burst of 2 is whole: one taken now


def test_memory_stays_bounded_under_100k_distinct_keys() -> None:
    limiter = InProcessRateLimiter(max_buckets=10_000)
    for i in range(100_000):
        limiter.acquire([bucket(f"s:{i}"), bucket(f"t:{i % 7}", name="tenant")], T0)
        assert len(limiter) <= 10_000
    assert len(limiter) == 10_000


def test_the_least_recently_used_bucket_goes_first() -> None:
    limiter = InProcessRateLimiter(max_buckets=3)
    for key in ("busy", "old", "mid"):  # "busy" made first...
        limiter.acquire([bucket(key)], T0)
    limiter.acquire([bucket("busy")], T0)  # ...but used last (refused, still a use)
    limiter.acquire([bucket("new")], T0)  # evicts "old", the least recently used

    assert len(limiter) == 3
    # "busy" kept its debt; "old" was forgotten, i.e. full again.
    assert not limiter.acquire([bucket("busy")], T0).allowed
    assert limiter.acquire([bucket("old")], T0).allowed


def test_a_request_cannot_use_more_buckets_than_the_store_keeps() -> None:
    limiter = InProcessRateLimiter(max_buckets=1)
    with pytest.raises(ValueError, match="at most 1"):
        limiter.acquire([bucket("a"), bucket("b")], T0)
    with pytest.raises(ValueError, match="at least 1"):
        InProcessRateLimiter(max_buckets=0)


@pytest.mark.usefixtures("busy_threads")
def test_threads_together_never_get_more_than_the_burst() -> None:
    burst = 2_000
    limiter = InProcessRateLimiter()
    policy = RatePolicy(rate=1e-9, burst=burst)  # no refill within the test
    granted = [0] * 8
    start = threading.Barrier(len(granted))

    def hammer(slot: int) -> None:
        start.wait()
        for _ in range(burst):
            request = [bucket("shared", policy), bucket("tenant", policy, "tenant")]
            if limiter.acquire(request, T0).allowed:
                granted[slot] += 1

    threads = [threading.Thread(target=hammer, args=(slot,)) for slot in range(len(granted))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(granted) == burst
