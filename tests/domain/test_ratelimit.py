"""Token bucket math and policy text, on explicit times: no clock, no sleeping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spine.domain.ratelimit import (
    BucketRequest,
    BucketState,
    Decision,
    RatePolicy,
    acquire,
    refill,
)

T0 = 1_700_000_000.0


def one(policy: RatePolicy, name: str = "subject") -> BucketRequest:
    return BucketRequest(key=name, policy=policy, name=name)


class Bucket:
    """One bucket's state carried between calls, as a store would keep it."""

    def __init__(self, policy: RatePolicy) -> None:
        self.request = one(policy)
        self.state: BucketState | None = None

    def take(self, now: float) -> Decision:
        decision, [self.state] = acquire([self.request], [self.state], now)
        return decision


# -- policy text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [
        ("20/s burst 40", 20.0, 40),
        ("  10 / S   BURST 20 ", 10.0, 20),
        ("0.5/s burst 1", 0.5, 1),
        ("120/m burst 10", 2.0, 10),
        ("3600/h burst 5", 1.0, 5),
        ("100/h", 100 / 3600, 100),
        ("0.5/s", 0.5, 1),
    ],
)
def test_policy_text_parses(text: str, rate: float, burst: int) -> None:
    policy = RatePolicy.parse(text)
    assert policy.rate == pytest.approx(rate)
    assert policy.burst == burst


@pytest.mark.parametrize(
    "text",
    ["", "20", "20/s burst", "burst 40", "20/d burst 40", "-1/s burst 2", "0/s burst 2",
     "20/s burst 0", "20/s burst 4.5", "20/s, burst 40", "20/s burst 40 extra"],
)  # fmt: skip
def test_bad_policy_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|burst|policy"):
        RatePolicy.parse(text)


def test_scaled_policy_multiplies_rate_and_burst() -> None:
    assert RatePolicy(20, 40).scaled(5) == RatePolicy(100, 200)
    assert RatePolicy(1, 1).scaled(0.1) == RatePolicy(0.1, 1)  # never an empty bucket


@pytest.mark.parametrize(
    ("policy", "window"),
    [(RatePolicy(20, 40), 2), (RatePolicy(10, 15), 2), (RatePolicy(1 / 3600, 1), 3600),
     (RatePolicy(100, 10), 1), (RatePolicy(0.1, 1), 10)],
)  # fmt: skip
def test_window_is_the_whole_seconds_an_empty_bucket_takes_to_fill(
    policy: RatePolicy, window: int
) -> None:
    assert policy.window_seconds == window


# -- one bucket -------------------------------------------------------------------------


def test_burst_then_refused_with_the_wait_for_one_token() -> None:
    bucket = Bucket(RatePolicy(rate=2, burst=3))
    remaining = [bucket.take(T0).limiting.remaining for _ in range(3)]
    assert remaining == [2, 1, 0]

    refused = bucket.take(T0)
    assert not refused.allowed
    assert refused.limiting.remaining == 0
    assert refused.limiting.retry_after == pytest.approx(0.5)
    assert refused.retry_after_seconds == 1  # whole seconds, rounded up


def test_a_refused_request_takes_nothing() -> None:
    bucket = Bucket(RatePolicy(rate=1, burst=1))
    assert bucket.take(T0).allowed
    for _ in range(5):
        assert not bucket.take(T0 + 0.5).allowed
    # Had the refusals been charged, the bucket would be in debt at T0 + 1.
    assert bucket.take(T0 + 1.0).allowed


@pytest.mark.parametrize(
    ("elapsed", "retry_after"), [(0.0, 4), (1.0, 3), (1.5, 3), (3.0, 1), (3.9, 1)]
)
def test_retry_after_rounds_the_remaining_wait_up(elapsed: float, retry_after: int) -> None:
    bucket = Bucket(RatePolicy(rate=0.25, burst=1))  # one token every 4 s
    assert bucket.take(T0).allowed
    refused = bucket.take(T0 + elapsed)
    assert not refused.allowed
    assert refused.retry_after_seconds == retry_after


def test_tokens_come_back_at_the_rate_and_stop_at_the_burst() -> None:
    policy = RatePolicy(rate=2, burst=4)
    empty = BucketState(tokens=0.0, updated=T0)
    assert refill(empty, policy, T0 + 0.25).tokens == pytest.approx(0.5)
    assert refill(empty, policy, T0 + 1.0).tokens == pytest.approx(2.0)
    assert refill(empty, policy, T0 + 3600).tokens == 4.0
    assert refill(None, policy, T0) == BucketState(4.0, T0)


def test_a_slow_rate_makes_a_whole_token_despite_float_error() -> None:
    bucket = Bucket(RatePolicy(rate=0.1, burst=1))
    assert bucket.take(T0).allowed
    assert not bucket.take(T0 + 9.99).allowed
    assert bucket.take(T0 + 10.0).allowed


def test_reset_is_the_time_until_the_bucket_is_full() -> None:
    bucket = Bucket(RatePolicy(rate=2, burst=4))
    for _ in range(3):
        decision = bucket.take(T0)
    assert decision.limiting.remaining == 1
    assert decision.limiting.reset_after == pytest.approx(1.5)


def test_a_clock_that_goes_back_neither_refills_nor_freezes_the_bucket() -> None:
    policy = RatePolicy(rate=1, burst=1)
    bucket = Bucket(policy)
    assert bucket.take(T0).allowed
    assert not bucket.take(T0 - 3600).allowed  # stepped back an hour: nothing gained
    # Counting resumes from the earlier time rather than waiting an hour for T0.
    assert bucket.take(T0 - 3600 + 1).allowed


# -- several buckets --------------------------------------------------------------------


def test_either_empty_bucket_refuses_and_neither_is_charged() -> None:
    subject = BucketRequest("s", RatePolicy(rate=1, burst=5), "subject")
    tenant = BucketRequest("t", RatePolicy(rate=1, burst=5), "tenant")
    states: list[BucketState | None] = [None, BucketState(tokens=0.0, updated=T0)]

    decision, after = acquire([subject, tenant], states, T0)

    assert not decision.allowed
    assert after[0].tokens == 5.0  # the subject's full bucket was not touched
    assert decision.limiting.name == "tenant"
    assert decision.retry_after_seconds == 1


def test_an_allowed_request_is_charged_to_every_bucket() -> None:
    subject = BucketRequest("s", RatePolicy(rate=1, burst=5), "subject")
    tenant = BucketRequest("t", RatePolicy(rate=1, burst=50), "tenant")
    decision, after = acquire([subject, tenant], [None, None], T0)
    assert decision.allowed
    assert [s.tokens for s in after] == [4.0, 49.0]
    assert decision.limiting.name == "subject"  # the one closer to empty


def test_retry_after_waits_for_the_slowest_empty_bucket() -> None:
    fast = BucketRequest("s", RatePolicy(rate=1, burst=1), "subject")
    slow = BucketRequest("t", RatePolicy(rate=0.1, burst=1), "tenant")
    empty = BucketState(tokens=0.0, updated=T0)
    decision, _ = acquire([fast, slow], [empty, empty], T0)
    assert decision.retry_after_seconds == 10
    assert decision.limiting.name == "tenant"


def test_a_request_needs_a_bucket_and_a_state_for_each() -> None:
    with pytest.raises(ValueError, match="at least one"):
        acquire([], [], T0)
    with pytest.raises(ValueError, match="one state"):
        acquire([one(RatePolicy(1, 1))], [], T0)


@given(
    rate=st.floats(min_value=0.01, max_value=100),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=300),
)
def test_no_window_ever_lets_through_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = Bucket(RatePolicy(rate=rate, burst=burst))
    now, allowed_at = T0, []
    for gap in gaps:
        now += gap
        if bucket.take(now).allowed:
            allowed_at.append(now)
    for i, start in enumerate(allowed_at):
        for j in range(i, len(allowed_at)):
            let_through = j - i + 1
            assert let_through <= burst + rate * (allowed_at[j] - start) + 1e-6


@given(
    rate=st.floats(min_value=0.01, max_value=100),
    burst=st.integers(min_value=1, max_value=50),
    idle=st.floats(min_value=0, max_value=1000),
)
def test_an_idle_bucket_grants_what_it_refilled(rate: float, burst: int, idle: float) -> None:
    bucket = Bucket(RatePolicy(rate=rate, burst=burst))
    while bucket.take(T0).allowed:
        pass
    granted = 0
    while bucket.take(T0 + idle).allowed:
        granted += 1
    assert granted == min(burst, math.floor(rate * idle + 1e-9))
