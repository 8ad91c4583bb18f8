"""Token buckets in this process's memory: the embedded default (one API process)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from spine.domain.ratelimit import BucketRequest, BucketState, Decision, acquire

#: About 100 bytes of key and state each: some 10 MB at the default.
DEFAULT_MAX_BUCKETS = 100_000


class InProcessRateLimiter:
    """Buckets in an LRU map under one lock, so a request's check-and-charge of its
    buckets is atomic across the server's threads.

    Memory is bounded: past ``max_buckets`` the least recently used bucket goes. Going
    loses nothing worth keeping: a bucket untouched the longest has had the longest to
    refill, and a full bucket is the same as a missing one. Only a store with more busy
    keys than ``max_buckets`` at once forgets debts, and then the oldest ones first.
    """

    def __init__(self, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be at least 1")
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, BucketState] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, buckets: Sequence[BucketRequest], now: float) -> Decision:
        if len(buckets) > self.max_buckets:
            # Its own buckets would be evicted as they were charged.
            raise ValueError(f"a request may use at most {self.max_buckets} buckets")
        with self._lock:
            states = [self._buckets.get(request.key) for request in buckets]
            decision, updated = acquire(buckets, states, now)
            for request, state in zip(buckets, updated, strict=True):
                self._buckets[request.key] = state
                self._buckets.move_to_end(request.key)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        return decision

    def __len__(self) -> int:
        return len(self._buckets)
