"""The in-process bucket store: atomic under threads, bounded in memory."""

from __future__ import annotations

import pytest

from spine.adapters.ratelimit.memory import InProcessRateLimiter
from spine.domain.ratelimit import BucketRequest, RatePolicy

T0 = 1_700_000_000.0
ONE_A_SECOND = RatePolicy(rate=1, burst=1)


def bucket(key: str, policy: RatePolicy = ONE_A_SECOND, name: str = "subject") -> BucketRequest:
    return BucketRequest(key=key, policy=policy, name=name)


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
