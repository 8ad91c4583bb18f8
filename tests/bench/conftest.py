"""The committed SciFact slice, ingested once for every bench test that searches it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.bench import quality
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.settings import Settings

SLICE = Path(__file__).parent / "data" / "scifact-slice"
TENANT = "bench"


@dataclass(frozen=True)
class Ingested:
    data_dir: Path
    services: Services
    dataset: quality.Dataset
    ingested: quality.Ingested


def bench_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        workers=2,
        job_poll_seconds=0.05,
        retry_base_seconds=0.1,
        **quality.UNCACHED,
    )


@pytest.fixture(scope="session")
def slice_ingested(
    tmp_path_factory: pytest.TempPathFactory, embedder: MiniLMOnnxEmbedder
) -> Iterator[Ingested]:
    """The slice, ingested once for the session: the slow part of every test that
    searches it. Those tests only search it."""
    data_dir = tmp_path_factory.mktemp("scifact-slice")
    services = bootstrap(bench_settings(data_dir), embedder=embedder)
    dataset = quality.load_dataset(SLICE, "test")
    progress: list[quality.IngestProgress] = []
    ingested = quality.ingest(
        services, TENANT, dataset.corpus, workers=2, on_progress=progress.append
    )
    assert progress[-1].processed == progress[-1].documents == len(dataset.corpus)
    yield Ingested(data_dir, services, dataset, ingested)
    services.close()


@pytest.fixture
def fresh_services(tmp_path: Path, embedder: MiniLMOnnxEmbedder) -> Iterator[Services]:
    services = bootstrap(bench_settings(tmp_path / "data"), embedder=embedder)
    yield services
    services.close()


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The CLI configures logging for the process; the tests after this one get it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()
