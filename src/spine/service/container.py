"""What every use case receives: the ports and the policies, wired once by bootstrap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from spine.domain.jobs import RetryPolicy
from spine.ports import BlobStore, Database, Embedder, Extractor, RateLimiter
from spine.service.keyring import Keyring
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
    clock: Callable[[], datetime] = utc_now

    def close(self) -> None:
        self.extractor.close()
        self.db.close()
