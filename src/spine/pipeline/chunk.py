"""Chunking: extracted text in, overlapping spans of about ``target_tokens`` tokens out.

Paragraphs (separated by blank lines) are packed together up to ``target_tokens``. A paragraph
over ``max_tokens`` is cut into sentences, a sentence over ``max_tokens`` into words, and a word
over ``max_tokens`` (a long run of symbols, say) into pieces that fit. Each chunk after the first
starts with the last sentences (or, failing that, words) of the previous chunk, about
``overlap_tokens`` of them. Every chunk is an exact, whitespace-trimmed slice of the input, so
``text[start:end] == chunk.text`` always holds and search hits can point back into the document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

TokenCounter = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """A chunk and where it sits in the text it came from: ``text == source[start:end]``."""

    text: str
    start: int
    end: int


_TOKEN = re.compile(r"\w+|[^\w\s]")


def approximate_token_count(text: str) -> int:
    """Words and single punctuation marks: a fair proxy of WordPiece tokens for English."""
    return len(_TOKEN.findall(text))


_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_WORDS = re.compile(r"\S+")
# A sentence ends at . ! ? or an ellipsis (closing quotes and brackets may follow) before
# whitespace, or at a CJK full stop, where no whitespace follows. The look-behinds and possessive
# runs keep a long run of "!!!!" linear: a match can only start where the run starts.
_SENTENCE_END = re.compile(
    r"(?<![.!?\u2026])(?P<mark>[.!?\u2026]++)[\"'\u201d\u2019\u00bb)\]]*+\s+"
    r"|(?<![\u3002\uff01\uff1f])[\u3002\uff01\uff1f]++"
)
_SENTENCE_OPENERS = frozenset("\"'\u201c\u2018\u00ab([\u00bf\u00a1")
# "Dr. Smith": a period after these does not end a sentence.
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "col", "lt", "sgt",
        "capt", "rev", "gov", "sen", "rep", "vs", "cf", "al", "inc", "ltd", "co", "corp", "dept",
        "approx", "ca",
    }
)  # fmt: skip
# "No. 5", "Fig. 3": only an abbreviation when a number follows.
_NUMBER_ABBREVIATIONS = frozenset(
    {"no", "nos", "vol", "vols", "p", "pp", "fig", "figs", "eq", "ch", "sec", "art"}
)


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    position = start
    for match in _PARAGRAPH_BREAK.finditer(text, start, end):
        span = _strip(text, position, match.start())
        if span is not None:
            yield span
        position = match.end()
    span = _strip(text, position, end)
    if span is not None:
        yield span


def _word_before(text: str, end: int, floor: int) -> str:
    start = end
    while start > floor and text[start - 1].isalnum():
        start -= 1
    return text[start:end]


def _ends_sentence(text: str, match: re.Match[str], end: int, floor: int) -> bool:
    mark = match.group("mark")
    if mark is None:  # CJK full stop
        return True
    following = match.end()
    if following >= end:
        return False
    char = text[following]
    if not (char.isdigit() or char in _SENTENCE_OPENERS or (char.isalpha() and not char.islower())):
        return False
    if mark == ".":
        word = _word_before(text, match.start(), floor)
        lowered = word.lower()
        if len(word) == 1 and word.isalpha():  # initials, "e.g.", "U.S."
            return False
        if lowered in _ABBREVIATIONS or (lowered in _NUMBER_ABBREVIATIONS and char.isdigit()):
            return False
    return True


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Sentences of one paragraph, trimmed; together they hold all its non-space characters."""
    position = start
    for match in _SENTENCE_END.finditer(text, start, end):
        if not _ends_sentence(text, match, end, start):
            continue
        span = _strip(text, position, match.end())
        if span is not None:
            yield span
        position = match.end()
    span = _strip(text, position, end)
    if span is not None:
        yield span


def _sentence_starts(text: str, start: int, end: int) -> list[int]:
    return [
        sentence_start
        for paragraph_start, paragraph_end in _paragraphs(text, start, end)
        for sentence_start, _ in _sentences(text, paragraph_start, paragraph_end)
    ]


def _split_long_word(
    text: str, start: int, end: int, count: TokenCounter, max_tokens: int
) -> Iterator[tuple[int, int, int]]:
    """Cut a word over ``max_tokens`` into the longest pieces that fit (at least one char each)."""
    while start < end:
        good = start + 1
        bad: int | None = None
        size = 2
        while bad is None:  # gallop, then bisect: the cost stays near the piece's own length
            probe = min(start + size, end)
            if count(text[start:probe]) <= max_tokens:
                good = probe
                if probe == end:
                    break
                size *= 2
            else:
                bad = probe
        if bad is not None:
            while bad - good > 1:
                middle = (good + bad) // 2
                if count(text[start:middle]) <= max_tokens:
                    good = middle
                else:
                    bad = middle
        yield start, good, count(text[start:good])
        start = good


def _units(text: str, count: TokenCounter, max_tokens: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of the pieces never cut further: paragraphs, else sentences, else
    words, else pieces of words."""
    for paragraph_start, paragraph_end in _paragraphs(text, 0, len(text)):
        tokens = count(text[paragraph_start:paragraph_end])
        if tokens <= max_tokens:
            yield paragraph_start, paragraph_end, tokens
            continue
        for sentence_start, sentence_end in _sentences(text, paragraph_start, paragraph_end):
            tokens = count(text[sentence_start:sentence_end])
            if tokens <= max_tokens:
                yield sentence_start, sentence_end, tokens
                continue
            for word in _WORDS.finditer(text, sentence_start, sentence_end):
                tokens = count(word.group())
                if tokens <= max_tokens:
                    yield word.start(), word.end(), tokens
                else:
                    yield from _split_long_word(text, word.start(), word.end(), count, max_tokens)


def _overlap_start(
    text: str,
    starts: list[int],
    previous_end: int,
    unit_end: int,
    limits: tuple[int, int],
    count: TokenCounter,
) -> tuple[int, int] | None:
    """The earliest of ``starts`` whose overlap fits: (start, overlap tokens) or None.

    The overlap ``text[start:previous_end]`` must hold at most ``overlap_tokens`` tokens and the
    whole new chunk ``text[start:unit_end]`` at most ``max_tokens``.
    """
    overlap_tokens, max_tokens = limits
    best: tuple[int, int] | None = None
    for start in reversed(starts):
        tokens = count(text[start:previous_end])
        if tokens > overlap_tokens or count(text[start:unit_end]) > max_tokens:
            break
        best = (start, tokens)
    return best


def _next_chunk_start(
    text: str,
    previous: tuple[int, int],
    unit: tuple[int, int],
    limits: tuple[int, int],
    count: TokenCounter,
) -> tuple[int, int]:
    """Where the chunk that begins with ``unit`` starts: inside the previous chunk, or at unit.

    Whole sentences from the end of the previous chunk, as many as fit; words when sentences
    give less than half of ``overlap_tokens``. Never the whole previous chunk. Returns the start
    and the overlap's tokens.
    """
    overlap_tokens = limits[0]
    if overlap_tokens == 0:
        return unit[0], 0
    start, end = previous
    sentences = [s for s in _sentence_starts(text, start, end) if s > start]
    best = _overlap_start(text, sentences, end, unit[1], limits, count)
    if best is None or 2 * best[1] < overlap_tokens:
        words = [m.start() for m in _WORDS.finditer(text, start, end) if m.start() > start]
        by_words = _overlap_start(text, words, end, unit[1], limits, count)
        if by_words is not None and (best is None or by_words[1] > best[1]):
            best = by_words
    return (unit[0], 0) if best is None else best


def chunk_text(
    text: str,
    *,
    target_tokens: int = 256,
    max_tokens: int = 320,
    overlap_tokens: int = 32,
    count_tokens: TokenCounter | None = None,
) -> list[ChunkSpan]:
    """Cut ``text`` into ordered, overlapping chunks of about ``target_tokens`` tokens.

    Guarantees: every chunk is ``text[start:end]``, not empty, with no leading or trailing
    whitespace; chunks are in order (starts and ends strictly increase); every non-whitespace
    character is in at least one chunk; ``count_tokens(chunk.text) <= max_tokens`` (tokens by
    ``approximate_token_count`` unless another counter is given) unless a single character
    alone counts more, for any counter that does not shrink when text grows. Whitespace-only
    text gives no chunks. Deterministic.
    """
    if target_tokens < 1:
        raise ValueError("target_tokens must be at least 1")
    if max_tokens < target_tokens:
        raise ValueError("max_tokens must be at least target_tokens")
    if not 0 <= overlap_tokens < target_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than target_tokens")
    count = count_tokens or approximate_token_count
    limits = (overlap_tokens, max_tokens)

    # The default counter never counts a text as more than the sum of its whitespace-separated
    # parts, so running sums bound a chunk's count; any other counter is asked about the chunk.
    summable = count is approximate_token_count
    spans: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    tokens = 0
    for unit_start, unit_end, unit_tokens in _units(text, count, max_tokens):
        if current is None:
            current, tokens = (unit_start, unit_end), unit_tokens
            continue
        grown = tokens + unit_tokens if summable else count(text[current[0] : unit_end])
        if grown <= target_tokens:
            current, tokens = (current[0], unit_end), grown
            continue
        spans.append(current)
        start, overlap = _next_chunk_start(text, current, (unit_start, unit_end), limits, count)
        current = (start, unit_end)
        tokens = overlap + unit_tokens if summable else count(text[start:unit_end])
    if current is not None:
        spans.append(current)
    return [ChunkSpan(text[start:end], start, end) for start, end in spans]
