"""The job state machine's transition table and the retry policy (backoff with full jitter)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spine.domain.jobs import (
    RUNNABLE,
    TRANSITIONS,
    JobState,
    RetryPolicy,
    check_transition,
)
from spine.errors import IllegalTransition

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

# Written out by hand on purpose: the test must not derive its expectation from the code.
ALLOWED = {
    (JobState.PENDING, JobState.RUNNING),
    (JobState.RUNNING, JobState.SUCCEEDED),
    (JobState.RUNNING, JobState.RETRYING),
    (JobState.RETRYING, JobState.RUNNING),
    (JobState.RUNNING, JobState.FAILED),
    (JobState.FAILED, JobState.PENDING),  # a person retries a dead letter
}
EVERY_PAIR = list(itertools.product(JobState, JobState))
FORBIDDEN = [pair for pair in EVERY_PAIR if pair not in ALLOWED]


class LowestDrawRandomFake(random.Random):
    """Always draws the lower bound of ``uniform``: the earliest retry the policy allows."""

    def uniform(self, a: float, b: float) -> float:
        return a


class HighestDrawRandomFake(random.Random):
    """Always draws the upper bound of ``uniform``: the latest retry the policy allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


# -- the transition table --------------------------------------------------------------


def test_transition_table_is_exactly_the_six_documented_pairs() -> None:
    assert set(TRANSITIONS) == ALLOWED
    assert len(EVERY_PAIR) == 25
    assert len(FORBIDDEN) == 19


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transition_passes_the_check(current: JobState, target: JobState) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), FORBIDDEN)
def test_every_other_transition_raises_illegal_transition(
    current: JobState, target: JobState
) -> None:
    with pytest.raises(IllegalTransition, match=f"{current} -> {target}"):
        check_transition(current, target)


def test_only_succeeded_and_failed_are_terminal_and_only_a_retry_leaves_failed() -> None:
    assert {state for state in JobState if state.terminal} == {
        JobState.SUCCEEDED,
        JobState.FAILED,
    }
    leaving_terminal = {(c, t) for c, t in ALLOWED if c.terminal}
    assert leaving_terminal == {(JobState.FAILED, JobState.PENDING)}


def test_workers_claim_only_from_pending_and_retrying() -> None:
    assert set(RUNNABLE) == {JobState.PENDING, JobState.RETRYING}


# -- the retry policy --------------------------------------------------------------------


def test_permanent_error_fails_the_job_even_with_attempts_left() -> None:
    decision = RetryPolicy().decide(
        attempts=1, max_attempts=5, transient=False, now=NOW, rng=random.Random(1)
    )

    assert decision.state is JobState.FAILED
    assert decision.next_run_at is None


@pytest.mark.parametrize(("attempts", "max_attempts"), [(1, 2), (1, 5), (4, 5), (9, 10)])
def test_transient_error_with_attempts_left_retries_within_the_backoff_ceiling(
    attempts: int, max_attempts: int
) -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=300.0)

    decision = policy.decide(
        attempts=attempts,
        max_attempts=max_attempts,
        transient=True,
        now=NOW,
        rng=random.Random(attempts),
    )

    assert decision.state is JobState.RETRYING
    assert decision.next_run_at is not None
    ceiling = timedelta(seconds=policy.ceiling(attempts))
    assert NOW <= decision.next_run_at <= NOW + ceiling


@pytest.mark.parametrize(("attempts", "ceiling_seconds"), [(1, 2.0), (3, 8.0), (6, 64.0)])
def test_retry_window_spans_from_now_to_the_ceiling_of_the_attempts_made(
    attempts: int, ceiling_seconds: float
) -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=300.0)

    earliest = policy.decide(
        attempts=attempts,
        max_attempts=10,
        transient=True,
        now=NOW,
        rng=LowestDrawRandomFake(),
    )
    latest = policy.decide(
        attempts=attempts,
        max_attempts=10,
        transient=True,
        now=NOW,
        rng=HighestDrawRandomFake(),
    )

    assert earliest.next_run_at == NOW
    assert latest.next_run_at == NOW + timedelta(seconds=ceiling_seconds)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(5, 5), (6, 5), (1, 1)])
def test_transient_error_fails_the_job_once_attempts_are_exhausted(
    attempts: int, max_attempts: int
) -> None:
    decision = RetryPolicy().decide(
        attempts=attempts,
        max_attempts=max_attempts,
        transient=True,
        now=NOW,
        rng=random.Random(1),
    )

    assert decision.state is JobState.FAILED
    assert decision.next_run_at is None
    assert str(attempts) in decision.reason


def test_ceiling_doubles_with_each_attempt_from_the_base() -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=10_000.0)

    assert [policy.ceiling(n) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]


def test_ceiling_before_any_attempt_is_the_base() -> None:
    assert RetryPolicy(base_seconds=3.0, max_seconds=300.0).ceiling(0) == 3.0


def test_ceiling_caps_at_max_seconds() -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=300.0)

    assert policy.ceiling(8) == 256.0
    assert policy.ceiling(9) == 300.0
    assert policy.ceiling(60) == 300.0


def test_ceiling_stays_capped_for_attempt_counts_beyond_float_range() -> None:
    # 2.0 * 2**1100 does not fit in a float; the cap must still hold instead of raising.
    policy = RetryPolicy(base_seconds=2.0, max_seconds=300.0)

    assert policy.ceiling(1100) == 300.0
    decision = policy.decide(
        attempts=1100, max_attempts=2000, transient=True, now=NOW, rng=random.Random(1)
    )
    assert decision.state is JobState.RETRYING


@given(
    attempts=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=0.01, max_value=100.0),
    cap=st.floats(min_value=0.01, max_value=10_000.0),
)
def test_ceiling_never_exceeds_max_seconds_and_never_shrinks_with_more_attempts(
    attempts: int, base: float, cap: float
) -> None:
    policy = RetryPolicy(base_seconds=base, max_seconds=cap)

    assert 0.0 < policy.ceiling(attempts) <= cap
    assert policy.ceiling(attempts) <= policy.ceiling(attempts + 1)


def test_full_jitter_spreads_retries_over_the_whole_window() -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=300.0)
    ceiling = policy.ceiling(5)  # 32 s
    rng = random.Random(20300101)

    delays = []
    for _ in range(500):
        decision = policy.decide(attempts=5, max_attempts=10, transient=True, now=NOW, rng=rng)
        assert decision.next_run_at is not None
        delays.append((decision.next_run_at - NOW).total_seconds())

    assert all(0.0 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 400  # jobs that failed together do not come back together
    # Full jitter, not "ceiling plus a little noise": draws reach both ends of the window.
    assert min(delays) < ceiling * 0.1
    assert max(delays) > ceiling * 0.9


def test_decide_without_an_rng_still_retries_within_the_window() -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=300.0)

    decision = policy.decide(attempts=2, max_attempts=5, transient=True, now=NOW)

    assert decision.state is JobState.RETRYING
    assert decision.next_run_at is not None
    assert NOW <= decision.next_run_at <= NOW + timedelta(seconds=4.0)
