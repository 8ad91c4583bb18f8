"""The synthetic corpus: real sentences, recombined reproducibly into pages and chunks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from spine.bench import corpus

SLICE = Path(__file__).parent / "data" / "scifact-slice"


@pytest.fixture(scope="module")
def pool() -> corpus.SentencePool:
    return corpus.load_pool(SLICE)


def test_the_pool_holds_distinct_sentences_of_the_source_in_its_order(
    pool: corpus.SentencePool,
) -> None:
    first = json.loads((SLICE / "corpus.jsonl").read_text().splitlines()[0])

    assert len(set(pool.sentences)) == len(pool.sentences) > 100
    assert pool.sentences[0].startswith(first["title"])
    assert all(
        corpus.MIN_SENTENCE_CHARS <= len(s) <= corpus.MAX_SENTENCE_CHARS for s in pool.sentences
    )
    assert corpus.load_pool(SLICE, size=10).sentences == pool.sentences[:10]


def test_pages_are_two_to_four_kilobytes_of_pool_sentences_and_reproducible(
    pool: corpus.SentencePool,
) -> None:
    pages = list(corpus.pages(pool, 50, seed=7))
    sentences = set(pool.sentences)

    assert pages == list(corpus.pages(pool, 50, seed=7))
    assert pages != list(corpus.pages(pool, 50, seed=8))
    assert len({page.name for page in pages}) == len({page.text for page in pages}) == 50
    for page in pages:
        size = len(page.text.encode("utf-8"))
        assert corpus.PAGE_MIN_BYTES - 1 <= size <= corpus.PAGE_MAX_BYTES, page.name
        assert page.text.startswith(page.title)
        paragraphs = [p for p in page.text.split("\n\n") if not p.startswith("Contact: ")]
        assert any(p.split(". ")[0] in " ".join(sentences) for p in paragraphs)


def test_some_pages_carry_personal_data_for_the_pipeline_to_tokenise(
    pool: corpus.SentencePool,
) -> None:
    pages = list(corpus.pages(pool, 200, pii_rate=0.25))
    with_contact = [page for page in pages if "@example.org" in page.text]

    assert 25 <= len(with_contact) <= 75
    assert not [page for page in corpus.pages(pool, 50, pii_rate=0) if "@" in page.text]


def test_chunks_are_runs_of_the_sentences_they_name(pool: corpus.SentencePool) -> None:
    chunks = corpus.chunk_texts(pool, 30, target_chars=600)

    for chunk in chunks:
        assert chunk.text == " ".join(pool.sentences[i] for i in chunk.sentences)
        assert len(chunk.text) >= 600
    assert chunks == corpus.chunk_texts(pool, 30, target_chars=600)


def test_queries_are_a_few_lowercase_words_from_a_sentence(pool: corpus.SentencePool) -> None:
    sentences = [set(re.findall(r"[a-z][a-z-]+", s.lower())) for s in pool.sentences]
    queries = corpus.queries(pool, 20)

    assert len(queries) == 20
    assert all(3 <= len(q.split()) <= 6 and q == q.lower() for q in queries)
    assert all(any(set(q.split()) <= words for words in sentences) for q in queries)


def test_a_missing_or_malformed_source_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(corpus.SourceError, match="no such file"):
        corpus.load_pool(tmp_path / "nowhere")
    (tmp_path / "corpus.jsonl").write_text('{"title": "x"}\n')
    with pytest.raises(corpus.SourceError, match=r"corpus.jsonl:1: not a BEIR corpus record"):
        corpus.load_pool(tmp_path)
