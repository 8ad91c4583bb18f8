"""The circuit breaker's states, on a fake clock: closed -> open -> half-open -> closed/open."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from spine.adapters.embedders.breaker import CircuitBreaker
from spine.errors import DownstreamUnavailable, PipelineError, TransientError

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Downstream:
    """Counts calls; fails with ``error`` while it is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_seconds=30, clock=clock, name="model")


def fail_times(breaker: CircuitBreaker, downstream: Downstream, times: int) -> None:
    downstream.error = TransientError("down")
    for _ in range(times):
        with pytest.raises(TransientError, match="down"):
            breaker.call(downstream)


def test_starts_closed_and_passes_results_through(breaker: CircuitBreaker) -> None:
    assert breaker.state == "closed"
    assert breaker.next_probe_at is None
    assert breaker.call(lambda: 42) == 42


def test_opens_after_the_threshold_of_consecutive_failures(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    downstream = Downstream()
    fail_times(breaker, downstream, 2)
    assert breaker.state == "closed"
    assert breaker.failure_count == 2

    fail_times(breaker, downstream, 1)

    assert breaker.state == "open"
    assert breaker.next_probe_at == T0 + timedelta(seconds=30)


def test_a_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    downstream = Downstream()
    fail_times(breaker, downstream, 2)
    downstream.error = None
    breaker.call(downstream)
    fail_times(breaker, downstream, 2)

    assert breaker.state == "closed"
    assert breaker.failure_count == 2


def test_open_fails_at_once_without_calling(breaker: CircuitBreaker, clock: FakeClock) -> None:
    downstream = Downstream()
    fail_times(breaker, downstream, 3)
    clock.advance(10)

    with pytest.raises(DownstreamUnavailable) as raised:
        breaker.call(downstream)

    assert downstream.calls == 3
    assert raised.value.retry_at == T0 + timedelta(seconds=30)
    assert raised.value.retry_after == 20  # whole seconds, for a Retry-After header
    assert raised.value.transient
    assert isinstance(raised.value, TransientError)
    assert "model" in raised.value.message


def test_half_open_after_the_reset_time_and_a_good_probe_closes(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    downstream = Downstream()
    fail_times(breaker, downstream, 3)
    clock.advance(29.999)
    assert breaker.state == "open"
    clock.advance(0.001)
    assert breaker.state == "half-open"
    assert breaker.next_probe_at == clock.now

    downstream.error = None
    assert breaker.call(downstream) == "ok"

    assert breaker.state == "closed"
    assert breaker.next_probe_at is None
    assert breaker.failure_count == 0
    assert downstream.calls == 4


def test_a_failed_probe_opens_again_for_another_reset_period(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    downstream = Downstream()
    fail_times(breaker, downstream, 3)
    clock.advance(31)

    fail_times(breaker, downstream, 1)  # the probe: one failure is enough

    assert breaker.state == "open"
    assert breaker.next_probe_at == T0 + timedelta(seconds=61)
    with pytest.raises(DownstreamUnavailable):
        breaker.call(downstream)
    assert downstream.calls == 4


def test_half_open_lets_exactly_one_probe_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail_times(breaker, Downstream(), 3)
    clock.advance(30)
    probe_inside = threading.Event()
    release_probe = threading.Event()

    def slow_probe() -> str:
        probe_inside.set()
        assert release_probe.wait(10)
        return "probed"

    results: list[str] = []
    probe = threading.Thread(target=lambda: results.append(breaker.call(slow_probe)))
    probe.start()
    assert probe_inside.wait(10)

    # While the probe runs, everyone else is refused at once, without calling.
    others = Downstream()
    for _ in range(5):
        with pytest.raises(DownstreamUnavailable) as raised:
            breaker.call(others)
    assert others.calls == 0
    assert breaker.state == "half-open"
    assert raised.value.retry_at == clock.now + timedelta(seconds=30)

    release_probe.set()
    probe.join(10)
    assert results == ["probed"]
    assert breaker.state == "closed"


def test_a_probe_that_never_reports_lets_another_probe_after_reset(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail_times(breaker, Downstream(), 3)
    clock.advance(30)
    stuck = breaker.guard()
    stuck.__enter__()  # the probe starts and never ends
    with pytest.raises(DownstreamUnavailable):
        breaker.call(lambda: None)

    clock.advance(30)
    assert breaker.call(lambda: "second probe") == "second probe"
    assert breaker.state == "closed"

    # The stale probe's late failure no longer decides anything.
    late = TransientError("late")
    assert stuck.__exit__(TransientError, late, None) is False  # re-raised to its caller
    assert breaker.state == "closed"
    assert breaker.failure_count == 0


def test_late_results_of_calls_admitted_while_closed_do_not_change_an_open_breaker(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    slow = breaker.guard()
    slow.__enter__()  # admitted while closed
    fail_times(breaker, Downstream(), 3)
    slow.__exit__(None, None, None)  # its success arrives after the breaker opened

    assert breaker.state == "open"
    assert breaker.next_probe_at == T0 + timedelta(seconds=30)


def test_a_permanent_error_is_an_answer_not_a_failure(breaker: CircuitBreaker) -> None:
    downstream = Downstream()
    fail_times(breaker, downstream, 2)
    downstream.error = PipelineError("400: bad input")

    for _ in range(5):
        with pytest.raises(PipelineError, match="bad input"):
            breaker.call(downstream)

    assert breaker.state == "closed"
    assert breaker.failure_count == 0


def test_other_exceptions_count_by_default_and_the_predicate_decides(clock: FakeClock) -> None:
    default = CircuitBreaker(failure_threshold=1, reset_seconds=5, clock=clock)
    with pytest.raises(OSError, match="refused"):
        default.call(_raise_os_error)
    assert default.state == "open"

    picky = CircuitBreaker(
        failure_threshold=1,
        reset_seconds=5,
        clock=clock,
        is_failure=lambda exc: isinstance(exc, TimeoutError),
    )
    with pytest.raises(OSError, match="refused"):
        picky.call(_raise_os_error)
    assert picky.state == "closed"


def _raise_os_error() -> None:
    raise OSError("connection refused")


def test_a_base_exception_in_a_probe_frees_the_probe_slot(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail_times(breaker, Downstream(), 3)
    clock.advance(30)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)

    assert breaker.state == "half-open"
    assert breaker.call(lambda: "next probe") == "next probe"
    assert breaker.state == "closed"


def test_concurrent_failures_open_it_once_and_count_exactly(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=400, reset_seconds=30, clock=clock)
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        for _ in range(49):
            with pytest.raises(TransientError):
                breaker.call(_raise_transient)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert breaker.failure_count == 8 * 49
    for _ in range(400 - 8 * 49 - 1):
        with pytest.raises(TransientError):
            breaker.call(_raise_transient)
    assert breaker.state == "closed"
    with pytest.raises(TransientError):
        breaker.call(_raise_transient)
    assert breaker.state == "open"


def _raise_transient() -> None:
    raise TransientError("down")


@pytest.mark.parametrize(
    ("threshold", "reset"), [(0, 1.0), (1, 0.0), (1, -1.0)], ids=["threshold", "zero", "neg"]
)
def test_bad_settings_are_refused(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(failure_threshold=threshold, reset_seconds=reset)
