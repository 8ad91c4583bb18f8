"""Embedder throughput on realistic chunks: the physical limit of ingestion on a machine.

The chunks come from the real chunker over a BEIR ``corpus.jsonl`` when one is given, else
over the docstrings of Python's standard library (English prose that every install has).
Runs are repeated; the median and the spread are reported, never one run.
"""

from __future__ import annotations

import importlib
import inspect
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from spine.bench.machine import machine
from spine.pipeline.chunk import approximate_token_count, chunk_text
from spine.ports import Embedder

STDLIB_MODULES = (
    "argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "decimal",
    "email", "enum", "functools", "http.client", "importlib", "inspect", "itertools", "json",
    "logging", "pathlib", "pickle", "re", "shutil", "socket", "sqlite3", "ssl", "statistics",
    "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest", "zipfile",
)  # fmt: skip


DOCUMENT_CHARS = 16_000  # about four pages of 4 KB


@dataclass(frozen=True)
class EmbedBenchResult:
    model_id: str
    chunks: int
    chars_median: float
    tokens_median: float
    batch_size: int
    repeats: int
    load_seconds: float
    chunks_per_second_median: float
    chunks_per_second_min: float
    chunks_per_second_max: float
    machine: dict[str, str]


def stdlib_texts() -> Iterator[str]:
    for name in STDLIB_MODULES:
        module = importlib.import_module(name)
        for obj in (module, *(value for _, value in sorted(vars(module).items()))):
            doc = inspect.getdoc(obj) if (callable(obj) or obj is module) else None
            if doc and len(doc) > 200:
                yield doc


def beir_texts(corpus: Path) -> Iterator[str]:
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            yield f"{record.get('title', '')}\n\n{record.get('text', '')}".strip()


def make_chunks(texts: Iterator[str], count: int, target_tokens: int) -> list[str]:
    """Chunks as the pipeline makes them from multi-page documents: short texts are joined
    into documents of about ``DOCUMENT_CHARS`` first, so chunks reach their target size."""
    chunks: list[str] = []
    document: list[str] = []
    for text in texts:
        document.append(text)
        if sum(map(len, document)) < DOCUMENT_CHARS:
            continue
        spans = chunk_text(
            "\n\n".join(document), target_tokens=target_tokens, max_tokens=target_tokens + 64
        )
        chunks += [span.text for span in spans]
        document = []
        if len(chunks) >= count:
            break
    return chunks[:count]


def run(
    make_embedder: Callable[[], Embedder],
    chunks: list[str],
    *,
    batch_size: int,
    repeats: int,
    on_run: Callable[[int, float], None] | None = None,
) -> EmbedBenchResult:
    started = time.perf_counter()
    embedder = make_embedder()
    load_seconds = time.perf_counter() - started
    embedder.embed(chunks[:batch_size])  # warm-up: first-call allocations are not throughput
    rates: list[float] = []
    for index in range(repeats):
        started = time.perf_counter()
        vectors = embedder.embed(chunks)
        elapsed = time.perf_counter() - started
        if len(vectors) != len(chunks):
            raise RuntimeError("the embedder returned the wrong number of vectors")
        rates.append(len(chunks) / elapsed)
        if on_run:
            on_run(index, rates[-1])
    return EmbedBenchResult(
        model_id=embedder.model_id,
        chunks=len(chunks),
        chars_median=statistics.median(len(c) for c in chunks),
        tokens_median=statistics.median(approximate_token_count(c) for c in chunks),
        batch_size=batch_size,
        repeats=repeats,
        load_seconds=round(load_seconds, 3),
        chunks_per_second_median=round(statistics.median(rates), 2),
        chunks_per_second_min=round(min(rates), 2),
        chunks_per_second_max=round(max(rates), 2),
        machine=machine(),
    )


def write(result: EmbedBenchResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "embed.json"
    path.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return path
