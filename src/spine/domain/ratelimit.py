"""Token buckets: the policy text ("20/s burst 40"), the refill math, and the decision to
let a request through several buckets at once. Pure: the caller passes the time.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second; a request
takes one token from every bucket it is charged to, or from none of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Float slack: 0.1 tokens/s for 10 s must make a whole token, not 0.9999999999.
_EPSILON = 1e-9

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

_POLICY = re.compile(
    r"^\s*(?P<count>\d+(?:\.\d+)?)\s*/\s*(?P<unit>[smh])\s*(?:burst\s+(?P<burst>\d+))?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RatePolicy:
    """``rate`` tokens a second into a bucket of ``burst`` tokens."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"a rate must be a positive number, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"a burst must be at least 1, not {self.burst}")

    @classmethod
    def parse(cls, text: str) -> RatePolicy:
        """``"N/s burst M"`` (also ``/m``, ``/h``); without ``burst`` the bucket holds one
        unit's worth, so ``"100/h"`` allows 100 at once and then 100 an hour."""
        match = _POLICY.match(text)
        if match is None:
            raise ValueError(f"not a rate limit policy: {text!r} (expected e.g. '20/s burst 40')")
        count = float(match["count"])
        rate = count / _UNITS[match["unit"].lower()]
        burst = int(match["burst"]) if match["burst"] else max(1, math.ceil(count))
        return cls(rate=rate, burst=burst)

    def scaled(self, factor: float) -> RatePolicy:
        return RatePolicy(rate=self.rate * factor, burst=max(1, round(self.burst * factor)))

    @property
    def window_seconds(self) -> int:
        """Whole seconds an empty bucket takes to fill, rounded up: the quota window that
        ``burst`` tokens are advertised over."""
        return max(1, math.ceil(self.burst / self.rate - _EPSILON))


@dataclass(frozen=True)
class BucketState:
    tokens: float
    updated: float  # seconds, on the clock the caller passes as ``now``


@dataclass(frozen=True)
class BucketRequest:
    """One bucket a request is charged to: its store key, its policy, and a short name
    for the RateLimit-Policy header ("subject", "tenant")."""

    key: str
    policy: RatePolicy
    name: str


@dataclass(frozen=True)
class BucketStatus:
    """A bucket as it stands after the decision."""

    name: str
    policy: RatePolicy
    tokens: float
    retry_after: float
    """Seconds until the bucket holds one token; 0 when it holds one now."""

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.tokens + _EPSILON))

    @property
    def reset_after(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.policy.burst - self.tokens) / self.policy.rate)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    buckets: tuple[BucketStatus, ...]

    @property
    def limiting(self) -> BucketStatus:
        """The bucket closest to empty (the draft's "closest to exhaustion"); of equally
        empty ones, the one that takes longest to come back."""
        return min(self.buckets, key=lambda b: (b.remaining, -b.retry_after, -b.reset_after))

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, rounded up, until every bucket holds a token again."""
        wait = max((b.retry_after for b in self.buckets), default=0.0)
        return max(0, math.ceil(wait - _EPSILON))


def refill(state: BucketState | None, policy: RatePolicy, now: float) -> BucketState:
    """The bucket at ``now``. A missing bucket is a full one. A clock that went back
    refills nothing, and the bucket then counts from the earlier time: a wall clock
    stepped back by an hour must not freeze every bucket for that hour."""
    if state is None:
        return BucketState(float(policy.burst), now)
    elapsed = max(0.0, now - state.updated)
    return BucketState(min(float(policy.burst), state.tokens + elapsed * policy.rate), now)


def acquire(
    requests: Sequence[BucketRequest],
    states: Sequence[BucketState | None],
    now: float,
    cost: float = 1.0,
) -> tuple[Decision, list[BucketState]]:
    """Charge ``cost`` to every bucket, or, if any of them is short, to none.

    Returns the decision and the new state of each bucket (in ``requests`` order), which
    the store saves in the same critical section it read ``states`` in.
    """
    if len(requests) != len(states):
        raise ValueError("one state per bucket request")
    if not requests:
        raise ValueError("a request is charged to at least one bucket")
    refilled = [refill(s, r.policy, now) for r, s in zip(requests, states, strict=True)]
    allowed = all(s.tokens + _EPSILON >= cost for s in refilled)
    if allowed:
        refilled = [BucketState(s.tokens - cost, s.updated) for s in refilled]
    statuses = tuple(
        BucketStatus(
            name=r.name,
            policy=r.policy,
            tokens=s.tokens,
            retry_after=max(0.0, (cost - s.tokens) / r.policy.rate)
            if s.tokens + _EPSILON < cost
            else 0.0,
        )
        for r, s in zip(requests, refilled, strict=True)
    )
    return Decision(allowed=allowed, buckets=statuses), refilled
