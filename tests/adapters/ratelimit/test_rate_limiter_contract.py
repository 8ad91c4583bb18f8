"""The RateLimiter port's contract, run against every store: in-process and Redis.

Redis is the one at ``SPINE_TEST_REDIS_URL`` (default: this machine's, database 15). It
is skipped where no Redis answers, except in CI, where a missing Redis fails the run.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
import redis

from spine.adapters.ratelimit.memory import InProcessRateLimiter
from spine.adapters.ratelimit.redis import RedisRateLimiter
from spine.domain.ratelimit import BucketRequest, RatePolicy
from spine.errors import Unavailable
from spine.ports import RateLimiter

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


@pytest.fixture(params=["in-process", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> object:
    """A factory: each call is another process's view of the same store."""
    if request.param == "in-process":
        shared = InProcessRateLimiter()
        return lambda: shared
    client = request.getfixturevalue("redis_client")
    redis_prefix = request.getfixturevalue("redis_prefix")
    return lambda: RedisRateLimiter(client, prefix=redis_prefix)


def test_buckets_are_kept_between_calls(make_limiter) -> None:  # type: ignore[no-untyped-def]
    limiter: RateLimiter = make_limiter()
    assert limiter.acquire([bucket("a")], T0).allowed
    assert not limiter.acquire([bucket("a")], T0).allowed
    assert limiter.acquire([bucket("b")], T0).allowed  # another key, another bucket
    assert limiter.acquire([bucket("a")], T0 + 1).allowed


def test_a_shared_empty_bucket_refuses_without_charging_the_other(make_limiter) -> None:  # type: ignore[no-untyped-def]
    limiter: RateLimiter = make_limiter()
    shared = bucket("tenant", name="tenant")
    assert limiter.acquire([bucket("alice", RatePolicy(1, 2)), shared], T0).allowed

    refused = limiter.acquire([bucket("bob", RatePolicy(1, 2)), shared], T0)

    assert not refused.allowed
    bob_alone = limiter.acquire([bucket("bob", RatePolicy(1, 2))], T0)
    assert bob_alone.limiting.remaining == 1  # bob's burst of 2 is whole: one taken now


def test_processes_sharing_the_store_share_the_buckets(make_limiter) -> None:  # type: ignore[no-untyped-def]
    first, second = make_limiter(), make_limiter()
    policy = RatePolicy(rate=1, burst=3)
    granted = [first.acquire([bucket("k", policy)], T0).allowed for _ in range(2)]
    granted += [second.acquire([bucket("k", policy)], T0).allowed for _ in range(2)]
    assert granted == [True, True, True, False]


@pytest.mark.usefixtures("busy_threads")
def test_threads_together_never_get_more_than_the_burst(make_limiter) -> None:  # type: ignore[no-untyped-def]
    burst = 300
    policy = RatePolicy(rate=1e-9, burst=burst)  # no refill within the test
    granted = [0] * 6
    start = threading.Barrier(len(granted))

    def hammer(slot: int) -> None:
        limiter: RateLimiter = make_limiter()  # a view per thread, like a process each
        start.wait()
        for _ in range(burst // 2):
            request = [bucket("shared", policy), bucket("tenant", policy, "tenant")]
            if limiter.acquire(request, T0).allowed:
                granted[slot] += 1

    threads = [threading.Thread(target=hammer, args=(slot,)) for slot in range(len(granted))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(granted) == burst


def test_redis_buckets_expire_once_they_would_be_full(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=redis_prefix)
    limiter.acquire([bucket("slow", RatePolicy(rate=0.1, burst=2))], T0)
    ttl = redis_client.ttl(f"{redis_prefix}slow")
    assert 0 < ttl <= 20  # 2 tokens at 0.1/s: full again after 20 s


def test_an_unreachable_redis_is_a_503_not_a_free_pass() -> None:
    limiter = RedisRateLimiter(redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5))
    with pytest.raises(Unavailable) as raised:
        limiter.acquire([bucket("a")], T0)
    assert raised.value.retry_after
