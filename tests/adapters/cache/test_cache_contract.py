"""The Cache port's contract, run against every store: in-process and Redis.

Redis is the one at ``SPINE_TEST_REDIS_URL`` (default: this machine's, database 15). It
is skipped where no Redis answers, except in CI, where a missing Redis fails the run.
Time moves on the in-process store's injected clock and by sleeping on Redis, whose
expiry is its own; the TTLs are short so the Redis cases stay under a second or two.
"""

from __future__ import annotations

import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis

from spine.adapters.cache.memory import InProcessCache
from spine.adapters.cache.redis import RedisCache
from spine.ports import Cache
from spine.service.search_cache import jittered


@dataclass
class Store:
    """A factory of views of one store (each call: another process's), and its clock."""

    make: Callable[[], Cache]
    advance: Callable[[float], None]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["in-process", "redis"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "in-process":
        clock = FakeClock()
        shared = InProcessCache(clock=clock)
        return Store(lambda: shared, clock.advance)
    client = request.getfixturevalue("redis_client")
    redis_prefix = request.getfixturevalue("redis_prefix")
    return Store(lambda: RedisCache(client, prefix=redis_prefix), time.sleep)


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_value_is_kept_until_its_ttl_and_then_gone(store: Store) -> None:
    cache = store.make()
    assert cache.get("k") is None
    cache.set("k", b"\x00answer\xff", 0.3)
    cache.set("other", b"other", 5)
    assert cache.get("k") == b"\x00answer\xff"
    store.advance(0.4)
    assert cache.get("k") is None
    assert cache.get("other") == b"other"


def test_set_replaces_the_value_and_its_ttl(store: Store) -> None:
    cache = store.make()
    cache.set("k", b"old", 0.3)
    cache.set("k", b"new", 5)
    store.advance(0.4)
    assert cache.get("k") == b"new"


def test_processes_sharing_the_store_share_the_values(store: Store) -> None:
    first, second = store.make(), store.make()
    first.set("k", b"v", 5)
    assert second.get("k") == b"v"


def test_jittered_ttls_spread_the_expiries(store: Store) -> None:
    """Values cached together with the policy's jittered TTLs do not expire together."""
    cache = store.make()
    rng = random.Random(7)
    ttls = [jittered(2.0, 0.6, rng) for _ in range(40)]
    assert all(0.8 <= ttl <= 2.0 for ttl in ttls)
    for n, ttl in enumerate(ttls):
        cache.set(f"k{n}", b"v", ttl)

    store.advance(1.2)
    alive = {n for n in range(len(ttls)) if cache.get(f"k{n}") is not None}

    # Wide margins on the living side: on Redis the time between set and get is real.
    expected = {n for n, ttl in enumerate(ttls) if ttl > 1.6}
    dead = {n for n, ttl in enumerate(ttls) if ttl < 1.2}
    assert len(expected) >= 5  # the seed gives TTLs well on both sides of the moment
    assert len(dead) >= 5
    assert expected <= alive
    assert not dead & alive


def test_the_fill_lock_is_held_by_one_caller_at_a_time(store: Store) -> None:
    first, second = store.make(), store.make()
    token = first.acquire_fill_lock("k", 5)
    assert token is not None
    assert second.acquire_fill_lock("k", 5) is None
    assert second.acquire_fill_lock("other", 5) is not None  # per key
    first.release_fill_lock("k", token)
    assert second.acquire_fill_lock("k", 5) is not None


def test_among_racing_callers_exactly_one_gets_the_fill_lock(store: Store) -> None:
    winners: list[str] = []
    start = threading.Barrier(16)

    def race() -> None:
        cache = store.make()
        start.wait()
        if (token := cache.acquire_fill_lock("k", 5)) is not None:
            winners.append(token)

    threads = [threading.Thread(target=race) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_an_unreleased_fill_lock_expires_by_itself(store: Store) -> None:
    """A caller that died holding the lock blocks the others only for its TTL."""
    first, second = store.make(), store.make()
    assert first.acquire_fill_lock("k", 0.3) is not None
    assert second.acquire_fill_lock("k", 0.3) is None
    store.advance(0.4)
    assert second.acquire_fill_lock("k", 5) is not None


def test_a_stale_token_does_not_release_the_next_holders_lock(store: Store) -> None:
    first, second, third = store.make(), store.make(), store.make()
    stale = first.acquire_fill_lock("k", 0.3)
    assert stale is not None
    store.advance(0.4)
    assert second.acquire_fill_lock("k", 5) is not None
    first.release_fill_lock("k", stale)  # too late: the lock is the second caller's now
    assert third.acquire_fill_lock("k", 5) is None


def test_the_in_process_store_drops_the_least_recently_used_past_its_size() -> None:
    cache = InProcessCache(max_entries=2)
    cache.set("a", b"1", 60)
    cache.set("b", b"2", 60)
    assert cache.get("a") == b"1"  # "b" is now the least recently used
    cache.set("c", b"3", 60)
    assert [cache.get(key) for key in "abc"] == [b"1", None, b"3"]
    assert len(cache) == 2


def test_the_redis_store_keeps_values_under_spine_cache_with_their_ttl(
    redis_client: redis.Redis,
) -> None:
    key = f"test-{secrets.token_hex(6)}"
    try:
        RedisCache(redis_client).set(key, b"v", 30)
        assert redis_client.get(f"spine:cache:{key}") == b"v"
        assert 0 < redis_client.pttl(f"spine:cache:{key}") <= 30_000
    finally:
        redis_client.delete(f"spine:cache:{key}")


def test_an_unreachable_redis_acts_as_an_empty_store_quickly() -> None:
    """Redis down is a miss, never an error: the search computes as if no cache existed.
    After the first failure Redis is left alone for a while, so a burst of searches does
    not each pay a connection attempt."""
    cache = RedisCache.from_url(f"redis://127.0.0.1:{closed_port()}/15")
    started = time.monotonic()

    assert cache.get("k") is None
    cache.set("k", b"v", 60)
    assert cache.acquire_fill_lock("k", 5) is not None  # nobody else can hold it: compute
    cache.release_fill_lock("k", "token")
    for _ in range(100):
        assert cache.get("k") is None

    assert time.monotonic() - started < 0.5
    assert cache.errors == 1  # one refused connection; the rest skipped Redis


def test_a_redis_that_comes_back_is_used_again(
    redis_client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    cache = RedisCache(redis_client, prefix=redis_prefix, retry_seconds=1.0, clock=clock)

    def refused(*_args: object, **_kwargs: object) -> None:
        raise redis.ConnectionError("Connection refused")

    with monkeypatch.context() as outage:
        outage.setattr(redis_client, "set", refused)
        cache.set("k", b"lost", 60)
    assert cache.errors == 1
    cache.set("k", b"not sent", 60)  # resting: Redis is not asked
    assert redis_client.get(f"{redis_prefix}k") is None

    clock.advance(1.1)
    cache.set("k", b"kept", 60)
    assert cache.get("k") == b"kept"
    assert cache.errors == 1
