"""Token buckets in Redis: one set of buckets for every API process (scale-out).

A request's check-and-charge is one optimistic transaction: WATCH its buckets, read them,
decide with the same domain function the in-process store uses, and write them back in
MULTI/EXEC; a concurrent change to any of them aborts the EXEC and the request decides
again. So the token bucket arithmetic lives once, in ``spine.domain.ratelimit``, not a
second time in a Lua script. Each bucket expires once it would be full again: a full
bucket and a missing one are the same, so Redis holds only the buckets in use.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from redis.exceptions import RedisError, WatchError

from spine.domain.ratelimit import BucketRequest, BucketState, Decision, acquire
from spine.errors import Unavailable

KEY_PREFIX = "spine:ratelimit:"
#: A request that keeps losing the race to other processes gives up and answers 503.
MAX_RACES = 50
RETRY_AFTER_SECONDS = 2


class RedisRateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = KEY_PREFIX) -> RedisRateLimiter:
        return cls(redis.Redis.from_url(url, socket_timeout=2.0), prefix=prefix)

    def acquire(self, buckets: Sequence[BucketRequest], now: float) -> Decision:
        keys = [self._prefix + request.key for request in buckets]
        try:
            for _ in range(MAX_RACES):
                with self._client.pipeline() as pipe:
                    try:
                        pipe.watch(*keys)  # type: ignore[no-untyped-call]
                        states = [_state(pipe.hmget(key, "tokens", "updated")) for key in keys]
                        decision, updated = acquire(buckets, states, now)
                        pipe.multi()
                        for key, request, state in zip(keys, buckets, updated, strict=True):
                            pipe.hset(
                                key,
                                mapping={
                                    "tokens": repr(state.tokens),
                                    "updated": repr(state.updated),
                                },
                            )
                            pipe.expire(key, request.policy.window_seconds)
                        pipe.execute()
                        return decision
                    except WatchError:
                        continue
        except RedisError as exc:
            # Failing closed: without the shared buckets no process can tell how much a
            # caller has used, and granting everything would make the limit nothing.
            raise Unavailable(
                "the rate limiter is unavailable", retry_after=RETRY_AFTER_SECONDS
            ) from exc
        raise Unavailable("the rate limiter is contended", retry_after=RETRY_AFTER_SECONDS)


def _state(raw: Sequence[bytes | str | None]) -> BucketState | None:
    tokens, updated = raw
    if tokens is None or updated is None:
        return None
    return BucketState(float(tokens), float(updated))
