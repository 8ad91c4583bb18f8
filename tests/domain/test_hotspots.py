"""The space-saving sketch keeps the paper's guarantees on any stream (Metwally et al.
2005): bounded memory, every heavy key present, every count within its error bound."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spine.domain.hotspots import SpaceSaving

#: Half the draws go to two hot keys, the rest to 28 others: streams where some keys are
#: heavy, and where many keys compete for a few counters.
KEYS = st.one_of(
    st.sampled_from(["hot-1", "hot-2"]), st.sampled_from([f"tenant-{n}" for n in range(28)])
)
STREAMS = st.lists(st.tuples(KEYS, st.integers(1, 5)), max_size=300)
SIZES = st.integers(1, 8)


def run(k: int, stream: list[tuple[str, int]]) -> tuple[SpaceSaving[str], Counter[str]]:
    sketch: SpaceSaving[str] = SpaceSaving(k)
    truth: Counter[str] = Counter()
    for key, weight in stream:
        sketch.offer(key, weight)
        truth[key] += weight
        assert len(sketch) <= k
    return sketch, truth


@given(k=SIZES, stream=STREAMS)
def test_memory_never_exceeds_k_counters_and_the_counts_add_up_to_the_total(
    k: int, stream: list[tuple[str, int]]
) -> None:
    sketch, truth = run(k, stream)

    assert len(sketch.top()) == len(sketch) == min(k, len(truth))
    assert sketch.total == sum(truth.values())
    assert sum(count for _, count, _ in sketch.top()) == sketch.total


@given(k=SIZES, stream=STREAMS)
def test_every_key_with_more_than_total_over_k_is_in_the_sketch(
    k: int, stream: list[tuple[str, int]]
) -> None:
    sketch, truth = run(k, stream)

    heavy = {key for key, count in truth.items() if count * k > sketch.total}
    assert heavy <= {key for key, _, _ in sketch.top()}


@given(k=SIZES, stream=STREAMS)
def test_each_count_overestimates_the_true_count_by_at_most_its_error(
    k: int, stream: list[tuple[str, int]]
) -> None:
    sketch, truth = run(k, stream)

    for key, count, error in sketch.top():
        assert count - error <= truth[key] <= count, key
        assert 0 <= error <= sketch.total // k


@given(k=SIZES, stream=STREAMS)
def test_a_key_outside_the_sketch_was_seen_at_most_floor_times(
    k: int, stream: list[tuple[str, int]]
) -> None:
    sketch, truth = run(k, stream)

    assert sketch.floor * k <= sketch.total
    for key, count in truth.items():
        if key not in sketch:
            assert count <= sketch.floor, key


@given(k=SIZES, stream=STREAMS)
def test_top_lists_the_largest_counts_first(k: int, stream: list[tuple[str, int]]) -> None:
    sketch, _ = run(k, stream)

    counts = [count for _, count, _ in sketch.top()]
    assert counts == sorted(counts, reverse=True)


@given(stream=STREAMS)
def test_with_no_more_keys_than_counters_the_counts_are_exact(
    stream: list[tuple[str, int]],
) -> None:
    sketch, truth = run(30, stream)

    assert {key: (count, error) for key, count, error in sketch.top()} == {
        key: (count, 0) for key, count in truth.items()
    }
    assert sketch.floor == 0


def test_a_hundred_thousand_distinct_keys_take_k_counters_and_the_heavy_one_stays() -> None:
    sketch: SpaceSaving[str] = SpaceSaving(10)
    for n in range(100_000):
        sketch.offer(f"one-off-{n}")
        if n % 4 == 0:
            sketch.offer("heavy")

    assert len(sketch) == 10
    key, count, error = sketch.top()[0]
    assert key == "heavy"
    assert count - error <= 25_000 <= count


def test_an_evicting_key_inherits_the_smallest_count_as_its_error() -> None:
    sketch: SpaceSaving[str] = SpaceSaving(2)
    sketch.offer("a", 5)
    sketch.offer("b", 2)
    sketch.offer("c")

    assert sketch.top() == [("a", 5, 0), ("c", 3, 2)]


@pytest.mark.parametrize("weight", [0, -1])
def test_a_weight_must_be_positive(weight: int) -> None:
    with pytest.raises(ValueError, match="weight"):
        SpaceSaving[str](3).offer("a", weight)


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must"):
        SpaceSaving[str](0)
