"""chunk_text: exact offsets, full coverage, order, token bounds, overlap."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine.pipeline.chunk import ChunkSpan, approximate_token_count, chunk_text

WORDS = ["alpha", "beta", "gamma", "Delta", "e.g.", "Dr.", "42", "x-ray", "naïve", "(note)"]


def check_invariants(
    text: str,
    chunks: list[ChunkSpan],
    max_tokens: int,
    count: Callable[[str], int] = approximate_token_count,
) -> None:
    covered = [False] * len(text)
    for index, chunk in enumerate(chunks):
        assert chunk.text, "empty chunk"
        assert chunk.text == text[chunk.start : chunk.end], "offsets do not match the text"
        assert chunk.text == chunk.text.strip(), "chunk not trimmed"
        if index:
            previous = chunks[index - 1]
            assert chunk.start > previous.start, "starts out of order"
            assert chunk.end > previous.end, "ends out of order"
        if count(chunk.text) > max_tokens:
            assert not any(char.isspace() for char in chunk.text), "over max_tokens, not one word"
        for position in range(chunk.start, chunk.end):
            covered[position] = True
    missed = [i for i, char in enumerate(text) if not char.isspace() and not covered[i]]
    assert not missed, f"characters not in any chunk at {missed[:10]}"


# --- properties --------------------------------------------------------------------------------

sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=30).map(
    lambda words: " ".join(words).capitalize() + "."
)
paragraph = st.lists(sentence, min_size=1, max_size=12).map(" ".join)
separator = st.sampled_from(["\n\n", "\n \n", "\n\n\n\n", "\r\n\r\n", "\n", " "])
prose = st.lists(st.tuples(paragraph, separator), max_size=15).map(
    lambda parts: "".join(p + s for p, s in parts)
)
# Anything at all, but with plenty of whitespace, sentence ends and newlines in the mix.
noise = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" \n\n\t.!?AaBb1\"'\u3002\u00a0\u2029")),
        st.characters(codec="utf-8"),
    ),
    max_size=1500,
)


@st.composite
def limits(draw: st.DrawFn) -> tuple[int, int, int]:
    target = draw(st.integers(min_value=1, max_value=80))
    maximum = draw(st.integers(min_value=target, max_value=target + 40))
    overlap = draw(st.integers(min_value=0, max_value=target - 1))
    return target, maximum, overlap


@settings(max_examples=300, deadline=None)
@given(st.one_of(prose, noise), limits())
def test_chunks_are_exact_ordered_covering_and_bounded(
    text: str, bounds: tuple[int, int, int]
) -> None:
    target, maximum, overlap = bounds
    chunks = chunk_text(text, target_tokens=target, max_tokens=maximum, overlap_tokens=overlap)
    check_invariants(text, chunks, maximum)
    if text.strip():
        assert chunks
    else:
        assert chunks == []


@settings(max_examples=100, deadline=None)
@given(st.one_of(prose, noise), limits())
def test_invariants_hold_with_a_character_counter(text: str, bounds: tuple[int, int, int]) -> None:
    target, maximum, overlap = bounds
    chunks = chunk_text(
        text, target_tokens=target, max_tokens=maximum, overlap_tokens=overlap, count_tokens=len
    )
    check_invariants(text, chunks, maximum, count=len)
    # with characters as tokens no chunk may exceed the maximum, even a single word
    assert all(len(chunk.text) <= maximum for chunk in chunks)


@settings(max_examples=50, deadline=None)
@given(prose, limits())
def test_chunking_is_deterministic(text: str, bounds: tuple[int, int, int]) -> None:
    target, maximum, overlap = bounds
    first = chunk_text(text, target_tokens=target, max_tokens=maximum, overlap_tokens=overlap)
    second = chunk_text(text, target_tokens=target, max_tokens=maximum, overlap_tokens=overlap)
    assert first == second


# --- examples ----------------------------------------------------------------------------------


def long_text(paragraphs: int = 30, seed: int = 5) -> str:
    rng = random.Random(seed)
    vocabulary = ["river", "stone", "cloud", "lantern", "harbor", "meadow", "copper", "violin"]
    result = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(2, 7)):
            words = [rng.choice(vocabulary) for _ in range(rng.randint(5, 18))]
            sentences.append(" ".join(words).capitalize() + ".")
        result.append(" ".join(sentences))
    return "\n\n".join(result)


def test_short_text_is_one_chunk_trimmed() -> None:
    text = "\n\n  Hello world. This is a short note.\n\nSecond paragraph.  \n"
    chunks = chunk_text(text)
    assert len(chunks) == 1
    assert chunks[0].text == "Hello world. This is a short note.\n\nSecond paragraph."
    assert text[chunks[0].start : chunks[0].end] == chunks[0].text


def test_empty_and_whitespace_text_give_no_chunks() -> None:
    assert chunk_text("") == []
    assert chunk_text(" \n\n\t \r\n") == []


def test_long_text_gives_several_overlapping_chunks() -> None:
    text = long_text()
    chunks = chunk_text(text, target_tokens=100, max_tokens=130, overlap_tokens=20)
    check_invariants(text, chunks, 130)
    assert len(chunks) >= 5
    overlapping = 0
    for previous, current in itertools.pairwise(chunks):
        if current.start < previous.end:
            overlapping += 1
            shared = text[current.start : previous.end]
            assert 0 < approximate_token_count(shared) <= 20
            assert previous.text.endswith(shared)
            assert current.text.startswith(shared)
    assert overlapping == len(chunks) - 1
    for chunk in chunks:
        assert approximate_token_count(chunk.text) <= 130


def test_overlap_prefers_whole_sentences() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(60)]  # 6 tokens each
    text = " ".join(sentences)
    chunks = chunk_text(text, target_tokens=40, max_tokens=50, overlap_tokens=12)
    assert len(chunks) > 3
    for previous, current in itertools.pairwise(chunks):
        shared = text[current.start : previous.end]
        assert shared.startswith("Sentence number")  # begins at a sentence start
        assert shared.endswith(".")
        assert approximate_token_count(shared) == 12  # two whole sentences


def test_no_overlap_when_overlap_is_zero() -> None:
    text = long_text()
    chunks = chunk_text(text, target_tokens=60, max_tokens=80, overlap_tokens=0)
    assert len(chunks) > 1
    for previous, current in itertools.pairwise(chunks):
        assert current.start >= previous.end


def test_paragraphs_are_packed_whole_when_they_fit() -> None:
    paragraphs = [f"Paragraph {i} has exactly seven tokens." for i in range(10)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, target_tokens=14, max_tokens=20, overlap_tokens=0)
    assert [chunk.text for chunk in chunks] == [
        f"{paragraphs[i]}\n\n{paragraphs[i + 1]}" for i in range(0, 10, 2)
    ]


def test_an_oversized_paragraph_is_split_at_sentences() -> None:
    text = " ".join(f"Unit {i} ends here." for i in range(40))  # 5 tokens a sentence
    chunks = chunk_text(text, target_tokens=20, max_tokens=25, overlap_tokens=0)
    assert len(chunks) == 10
    for chunk in chunks:
        assert chunk.text.startswith("Unit ")
        assert chunk.text.endswith("ends here.")


def test_sentence_boundaries_and_abbreviations() -> None:
    # target_tokens=1: every sentence of the oversized paragraph becomes a chunk of its own.
    sentences = [
        "Dr. Smith met J. R. Jones at No. 5 in St. Louis, e.g. with Mr. Brown.",
        "Then they left!",
        "Did they?",
        '"Yes," she said. "Quoted start."',
        "Done with part 3.",
        "4 is a number\u2026",
        "\u00c9t\u00e9 starts with an accent.",
        "the lower-case start. does not split here.",
    ]
    text = " ".join(sentences[:3]) + "\n" + " ".join(sentences[3:])
    chunks = chunk_text(text, target_tokens=1, max_tokens=40, overlap_tokens=0)
    check_invariants(text, chunks, 40)
    assert [chunk.text for chunk in chunks] == [
        sentences[0],
        sentences[1],
        sentences[2],
        '"Yes," she said.',
        '"Quoted start."',
        sentences[4],
        sentences[5],
        sentences[6] + " " + sentences[7],  # a lower-case word after "." starts no sentence
    ]


def test_a_sentence_without_punctuation_is_split_by_words() -> None:
    text = " ".join(f"word{i}" for i in range(1000))
    chunks = chunk_text(text, target_tokens=100, max_tokens=120, overlap_tokens=10)
    check_invariants(text, chunks, 120)
    assert len(chunks) >= 10
    for chunk in chunks:
        assert approximate_token_count(chunk.text) <= 120


def test_a_giant_word_is_cut_to_fit() -> None:
    text = "start " + "-" * 1000 + " end"
    chunks = chunk_text(text, target_tokens=100, max_tokens=120, overlap_tokens=10)
    check_invariants(text, chunks, 120)
    assert all(approximate_token_count(chunk.text) <= 120 for chunk in chunks)
    assert "".join(c.text for c in chunks if "-" in c.text).count("-") >= 1000


def test_cjk_full_stops_end_sentences() -> None:
    text = "\u4f60\u597d\u4e16\u754c\u3002" * 100
    chunks = chunk_text(text, target_tokens=20, max_tokens=30, overlap_tokens=4)
    check_invariants(text, chunks, 30)
    assert len(chunks) > 1
    assert all(chunk.text.endswith("\u3002") for chunk in chunks)


def test_custom_counter_is_used() -> None:
    text = long_text(5)
    chunks = chunk_text(
        text, target_tokens=200, max_tokens=250, overlap_tokens=20, count_tokens=len
    )
    assert len(chunks) > 1
    assert all(len(chunk.text) <= 250 for chunk in chunks)


@pytest.mark.parametrize(
    ("target", "maximum", "overlap"),
    [(0, 10, 0), (10, 9, 0), (10, 20, 10), (10, 20, -1)],
)
def test_invalid_limits_are_rejected(target: int, maximum: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="tokens"):
        chunk_text("text", target_tokens=target, max_tokens=maximum, overlap_tokens=overlap)


def test_approximate_token_count() -> None:
    assert approximate_token_count("") == 0
    assert approximate_token_count("Hello, world!") == 4
    assert approximate_token_count("don't stop-me now") == 7
    assert approximate_token_count("  spaced   out  ") == 2
