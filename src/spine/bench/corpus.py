"""Synthetic corpora for the ingest and search benchmarks, made from real sentences.

A benchmark at 10k documents or 100k chunks needs more text than the repository carries,
and text shaped like what tenants upload: pages of 2-4 KB (the notebook's size), in
paragraphs of real prose, some with personal data in them. Every page and chunk here is a
seeded recombination of sentences from a BEIR corpus (SciFact's abstracts by default), so
the vocabulary, sentence lengths and term frequencies are those of real text while the
count is whatever the run asks for, and the same seed gives the same corpus anywhere.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Where this workplace keeps its benchmark data sets, from the project root.
DEFAULT_SOURCE = Path("../shared/data/beir/scifact")
#: Sentences kept from the source: enough for a varied vocabulary, few enough that the
#: search bench can embed each once (about a minute on two cores).
POOL_SIZE = 10_000
MIN_SENTENCE_CHARS = 40
MAX_SENTENCE_CHARS = 400
PAGE_MIN_BYTES = 2048
PAGE_MAX_BYTES = 4096
#: Share of pages that carry a contact line with an e-mail address and a phone number,
#: so the PII step finds and tokenises something, as it would in real uploads.
PII_RATE = 0.1

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")
_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen")


class SourceError(ValueError):
    """The sentence source cannot be read; the message says which file and why."""


@dataclass(frozen=True)
class SentencePool:
    sentences: tuple[str, ...]
    source: str
    """Where the sentences came from, as the results record it."""

    @property
    def fingerprint(self) -> str:
        """Names the pool's exact text: a cache of its embeddings is keyed by it."""
        digest = hashlib.sha256("\n".join(self.sentences).encode("utf-8"))
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    text: str


@dataclass(frozen=True)
class SyntheticChunk:
    text: str
    sentences: tuple[int, ...]
    """Indexes into the pool of the sentences the text is made of, in order."""


def load_pool(source: Path = DEFAULT_SOURCE, *, size: int = POOL_SIZE) -> SentencePool:
    """The first ``size`` distinct sentences of a BEIR ``corpus.jsonl`` (or of the one in
    folder ``source``), in corpus order."""
    path = source / "corpus.jsonl" if source.is_dir() else source
    if not path.is_file():
        raise SourceError(f"{path}: no such file (a BEIR corpus.jsonl or its folder)")
    seen: dict[str, None] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                text = f"{record.get('title', '')}. {record['text']}"
            except (ValueError, KeyError, TypeError) as exc:
                raise SourceError(f"{path}:{number}: not a BEIR corpus record ({exc})") from exc
            for sentence in _SENTENCE_END.split(" ".join(text.split())):
                if MIN_SENTENCE_CHARS <= len(sentence) <= MAX_SENTENCE_CHARS:
                    seen.setdefault(sentence)
            if len(seen) >= size:
                break
    if not seen:
        raise SourceError(f"{path}: no sentences of {MIN_SENTENCE_CHARS}+ characters")
    return SentencePool(tuple(seen)[:size], source=str(source))


def pages(
    pool: SentencePool,
    count: int,
    *,
    seed: int = 0,
    min_bytes: int = PAGE_MIN_BYTES,
    max_bytes: int = PAGE_MAX_BYTES,
    pii_rate: float = PII_RATE,
) -> Iterator[Page]:
    """``count`` distinct pages of ``min_bytes``-``max_bytes`` UTF-8 bytes (uniform), in
    paragraphs of three to six sentences, each titled by the start of its first sentence."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    for number in range(count):
        size = rng.randint(min_bytes, max_bytes)
        contact = _contact_line(rng) if rng.random() < pii_rate else ""
        paragraphs: list[str] = []
        paragraph: list[str] = []
        used = len(contact.encode("utf-8"))
        first = ""
        while True:
            sentence = pool.sentences[rng.randrange(len(pool.sentences))]
            cost = len(sentence.encode("utf-8")) + 1
            if used + cost > size and used >= min_bytes:
                break
            first = first or sentence
            paragraph.append(sentence)
            used += cost
            if len(paragraph) >= rng.randint(3, 6):
                paragraphs.append(" ".join(paragraph))
                paragraph = []
                used += 1  # the blank line between paragraphs
        if paragraph:
            paragraphs.append(" ".join(paragraph))
        if contact:
            paragraphs.insert(rng.randint(0, len(paragraphs)), contact)
        title = " ".join(first.split()[:8]).rstrip(".,;:")
        yield Page(name=f"page-{number:06d}.txt", title=title, text="\n\n".join(paragraphs))


def chunk_texts(
    pool: SentencePool, count: int, *, seed: int = 0, target_chars: int = 1000
) -> list[SyntheticChunk]:
    """``count`` chunks of about ``target_chars`` characters (the size of the pipeline's
    256-token chunks), each a run of random pool sentences."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    chunks: list[SyntheticChunk] = []
    for _ in range(count):
        picked: list[int] = []
        length = 0
        while length < target_chars:
            index = rng.randrange(len(pool.sentences))
            picked.append(index)
            length += len(pool.sentences[index]) + 1
        chunks.append(
            SyntheticChunk(" ".join(pool.sentences[i] for i in picked), sentences=tuple(picked))
        )
    return chunks


def queries(pool: SentencePool, count: int, *, seed: int = 1) -> list[str]:
    """``count`` queries of three to six consecutive words from pool sentences: what a
    person types after reading a passage."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    result: list[str] = []
    while len(result) < count:
        sentence = pool.sentences[rng.randrange(len(pool.sentences))]
        words = re.findall(r"[A-Za-z][A-Za-z-]+", sentence)
        if len(words) < 6:
            continue
        length = rng.randint(3, 6)
        start = rng.randrange(len(words) - length + 1)
        result.append(" ".join(words[start : start + length]).lower())
    return result


def _contact_line(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    return (
        f"Contact: {first} {last}, {first.lower()}.{last.lower()}@example.org, "
        f"+1 415 555 {rng.randint(100, 199):04d}"
    )
