"""What every use case receives: the ports and the policies, wired once by bootstrap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from spine.domain.jobs import RetryPolicy
from spine.observability.metrics import Metrics
from spine.ports import BlobStore, Breaker, Database, Embedder, Extractor, RateLimiter
from spine.service.hotspots import HotspotRadar
from spine.service.keyring import Keyring
from spine.service.search_cache import SearchCache
from spine.service.slo import SloRecorder
from spine.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    embedder: Embedder
    extractor: Extractor
    retry: RetryPolicy
    rate_limiter: RateLimiter
    keyring: Keyring
    metrics: Metrics
    radar: HotspotRadar
    slo: SloRecorder
    search_cache: SearchCache
    breaker: Breaker | None
    """The embedder's circuit breaker, when the embedder is remote."""
    clock: Callable[[], datetime] = utc_now

    def close(self) -> None:
        self.extractor.close()
        self.db.close()
