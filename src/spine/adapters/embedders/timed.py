"""An embedder that reports how long each call took: the model's latency, per batch."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from spine.ports import Embedder


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class TimedEmbedder:
    def __init__(self, inner: Embedder, seconds: Observer) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self._seconds = seconds

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self._seconds.observe(time.perf_counter() - started)
