"""A cache in Redis: one set of entries for every API process that shares it (scale-out).

Values are plain strings with a millisecond expiry (``SET ... PX``); Redis bounds the
memory with its own ``maxmemory`` and eviction policy (``volatile-lru`` or
``allkeys-lru``: every key here has an expiry). The fill lock is ``SET NX PX`` of a
random token, released by a script that deletes the key only if it still holds that
token, so a caller whose lock expired never releases the next holder's.

Unlike the rate limiter, which fails closed, the cache fails open: when Redis cannot be
reached, every call acts as on an empty store and the search computes its answer as if
there were no cache. The failure is logged and counted, and Redis is then left alone for
``retry_seconds``, so an outage costs one timeout per second, not one per call.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

import redis
import structlog
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

log = structlog.get_logger("spine.cache")

KEY_PREFIX = "spine:cache:"
LOCK_PREFIX = "lock:"
#: A cache that answers slower than the search it saves is worse than none.
TIMEOUT_SECONDS = 0.25
RETRY_SECONDS = 1.0
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisCache:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = KEY_PREFIX,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._release = client.register_script(_RELEASE)
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._down_until = float("-inf")
        self._errors_lock = threading.Lock()
        self.errors = 0
        """Calls that failed since this store was made."""

    @classmethod
    def from_url(cls, url: str, *, prefix: str = KEY_PREFIX) -> RedisCache:
        # No retries: computing the answer is cheaper than waiting to ask again.
        client = redis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix=prefix)

    def get(self, key: str) -> bytes | None:
        if self._resting():
            return None
        try:
            value = self._client.get(self._prefix + key)
        except RedisError as exc:
            self._failed("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if self._resting():
            return
        try:
            if ttl_seconds <= 0:
                self._client.delete(self._prefix + key)
            else:
                self._client.set(self._prefix + key, value, px=_milliseconds(ttl_seconds))
        except RedisError as exc:
            self._failed("set", exc)

    def acquire_fill_lock(self, key: str, ttl_seconds: float) -> str | None:
        token = secrets.token_hex(8)
        if self._resting():
            return token  # nobody can hold a lock we cannot see: compute
        try:
            taken = self._client.set(
                self._lock_key(key), token, nx=True, px=_milliseconds(ttl_seconds)
            )
        except RedisError as exc:
            self._failed("lock", exc)
            return token
        return token if taken else None

    def release_fill_lock(self, key: str, token: str) -> None:
        if self._resting():
            return  # it expires by itself
        try:
            self._release(keys=[self._lock_key(key)], args=[token])
        except RedisError as exc:
            self._failed("unlock", exc)

    def _lock_key(self, key: str) -> str:
        return self._prefix + LOCK_PREFIX + key

    def _resting(self) -> bool:
        return self._clock() < self._down_until

    def _failed(self, operation: str, exc: RedisError) -> None:
        with self._errors_lock:
            self.errors += 1
            self._down_until = self._clock() + self._retry_seconds
        log.warning(
            "cache.unavailable",
            operation=operation,
            error=type(exc).__name__,
            detail=str(exc),
            retry_in_seconds=self._retry_seconds,
        )


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
