"""The SLO arithmetic: SLIs, error budgets, burn rates, windows and hourly ratios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from spine.domain import slo
from spine.domain.slo import Counts, Objective

NOW = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)


def test_sli_is_the_share_of_good_events() -> None:
    assert slo.sli(Counts(good=999, total=1000)) == pytest.approx(0.999)


def test_sli_without_events_is_perfect_but_the_error_ratio_is_unknown() -> None:
    assert slo.sli(Counts()) == 1.0
    assert slo.error_ratio(Counts()) is None
    assert slo.error_ratio(Counts(good=3, total=4)) == pytest.approx(0.25)


def test_the_budget_allows_one_minus_target_of_the_events() -> None:
    assert slo.allowed_bad(0.999, Counts(good=1000, total=1000)) == pytest.approx(1.0)
    assert slo.allowed_bad(0.95, Counts(good=0, total=200)) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("counts", "remaining"),
    [
        (Counts(good=1000, total=1000), 1.0),  # untouched
        (Counts(good=9_995, total=10_000), 0.5),  # 5 of 10 allowed spent
        (Counts(good=9_990, total=10_000), 0.0),  # exactly spent
        (Counts(good=995, total=1000), -4.0),  # 5 bad of 1 allowed: not clamped
        (Counts(), 1.0),  # no events spend nothing
    ],
)
def test_budget_remaining(counts: Counts, remaining: float) -> None:
    assert slo.budget_remaining(0.999, counts) == pytest.approx(remaining)


def test_burn_rate_is_the_error_ratio_over_the_allowed_ratio() -> None:
    # The workbook's example: 1 % errors against a 99.9 % objective burns 10x.
    assert slo.burn_rate(0.999, Counts(good=990, total=1000)) == pytest.approx(10.0)
    # Exactly the allowed ratio spends the budget exactly over the window.
    assert slo.burn_rate(0.99, Counts(good=99, total=100)) == pytest.approx(1.0)
    assert slo.burn_rate(0.99, Counts(good=100, total=100)) == 0.0


def test_burn_rate_without_events_is_zero() -> None:
    assert slo.burn_rate(0.999, Counts()) == 0.0


def test_budget_remaining_is_one_minus_the_burn_rate_over_the_whole_window() -> None:
    counts = Counts(good=9_973, total=10_000)
    assert slo.budget_remaining(0.999, counts) == pytest.approx(1 - slo.burn_rate(0.999, counts))


@pytest.mark.parametrize("target", [0.0, 1.0, 1.5, -0.1])
def test_an_objective_needs_a_target_strictly_between_0_and_1(target: float) -> None:
    with pytest.raises(ValueError, match="strictly between"):
        Objective("availability", target, "requests")


def test_objectives_builds_the_three_slos_from_numbers() -> None:
    built = slo.objectives(
        availability=0.999,
        search_latency=0.99,
        search_latency_seconds=0.25,
        freshness=0.95,
        freshness_seconds=60,
    )
    assert [o.name for o in built] == list(slo.NAMES)
    assert [o.target for o in built] == [0.999, 0.99, 0.95]
    assert [o.threshold_seconds for o in built] == [None, 0.25, 60]
    assert "250 ms" in built[1].description
    assert "60 s" in built[2].description


def test_minute_of_truncates_to_the_utc_minute() -> None:
    paris = timezone(timedelta(hours=1))
    at = datetime(2030, 1, 1, 13, 4, 59, 999_999, tzinfo=paris)
    assert slo.minute_of(at) == datetime(2030, 1, 1, 12, 4, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        slo.minute_of(datetime(2030, 1, 1))


def test_a_five_minute_window_is_the_current_minute_and_the_four_before() -> None:
    current = slo.minute_of(NOW)
    series = [(current - timedelta(minutes=age), 1, 1 + age) for age in range(8)]
    counts = slo.within(series, now=NOW, window=timedelta(minutes=5))
    # Ages 0..4: good 5, total 1+2+3+4+5.
    assert counts == Counts(good=5, total=15)


def test_a_window_counts_minutes_slightly_ahead_of_now() -> None:
    ahead = slo.minute_of(NOW) + timedelta(minutes=1)
    assert slo.within([(ahead, 0, 2)], now=NOW, window=timedelta(hours=1)) == Counts(0, 2)


def test_hourly_error_ratios_are_oldest_first_with_gaps_for_quiet_hours() -> None:
    current = slo.minute_of(NOW)
    series = [
        (current, 9, 10),  # newest hour: 10 % errors
        (current - timedelta(minutes=59), 10, 10),  # still the newest hour
        (current - timedelta(hours=2, minutes=1), 0, 4),  # third newest: all bad
        (current - timedelta(hours=30), 0, 100),  # outside the 24 hours
    ]
    ratios = slo.hourly_error_ratios(series, now=NOW, hours=24)
    assert len(ratios) == 24
    assert ratios[-1] == pytest.approx(1 / 20)
    assert ratios[-2] is None
    assert ratios[-3] == 1.0
    assert ratios[:-3] == [None] * 21
