"""The composition root: the one place that turns settings into concrete adapters."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from spine.adapters.auth.jwks import JwksKeySet
from spine.adapters.blob.local import LocalBlobStore
from spine.adapters.blob.s3 import S3BlobStore
from spine.adapters.cache.memory import InProcessCache
from spine.adapters.cache.redis import RedisCache
from spine.adapters.embedders.breaker import CircuitBreaker
from spine.adapters.embedders.http import HttpEmbedder
from spine.adapters.embedders.timed import TimedEmbedder
from spine.adapters.postgres.database import PostgresDatabase
from spine.adapters.ratelimit.memory import InProcessRateLimiter
from spine.adapters.ratelimit.redis import RedisRateLimiter
from spine.adapters.sql import migrate
from spine.adapters.sqlite.database import SqliteDatabase
from spine.domain.jobs import RetryPolicy
from spine.observability.metrics import CallbackCollector, Metrics
from spine.pipeline.sandbox import ExtractionSandbox
from spine.ports import BlobStore, Cache, Database, Embedder
from spine.service.container import Services, utc_now
from spine.service.hotspots import HotspotRadar, hotspot_gauges
from spine.service.keyring import Keyring, load_master_key
from spine.service.search_cache import SearchCache
from spine.service.slo import SloRecorder
from spine.service.telemetry import install_collectors
from spine.service.tokens import ALGORITHM, TokenVerifier, load_or_create_secret
from spine.settings import Settings


def open_database(
    url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10, max_overflow: int = 10
) -> Database:
    """The database at ``url``, migrated to the current schema first.

    Migrating at start-up suits one process (the embedded default). With many processes
    on PostgreSQL, ``spine migrate up`` is a deploy step of its own; the processes that
    start afterwards find nothing left to do (Alembic's version row says so).
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        migrate.upgrade(url)
        return SqliteDatabase(url, busy_timeout_ms=busy_timeout_ms)
    if scheme == "postgresql":
        migrate.upgrade(url)
        return PostgresDatabase(
            url, pool_size=pool_size, max_overflow=max_overflow, lock_timeout_ms=busy_timeout_ms
        )
    raise ValueError(f"unsupported database URL scheme: {scheme}")


def open_blob_store(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    if parsed.scheme == "s3":
        return S3BlobStore.from_url(url)
    raise ValueError(f"unsupported blob store URL scheme: {parsed.scheme}")


def open_cache(settings: Settings) -> Cache:
    """Redis when several API processes share one (``SPINE_REDIS_URL``): each would
    otherwise compute and keep every answer once more. One process keeps them in memory."""
    if settings.redis_url:
        return RedisCache.from_url(settings.redis_url, prefix=f"{settings.redis_namespace}:cache:")
    return InProcessCache(settings.search_cache_max_entries)


def open_breaker(settings: Settings) -> CircuitBreaker | None:
    """The remote embedder's breaker; the local model has none (it cannot be down)."""
    if not settings.embedder_url:
        return None
    return CircuitBreaker(
        failure_threshold=settings.breaker_failure_threshold,
        reset_seconds=settings.breaker_reset_seconds,
        name="embedder",
    )


def open_embedder(settings: Settings, breaker: CircuitBreaker | None = None) -> Embedder:
    if settings.embedder_url:
        return HttpEmbedder(
            settings.embedder_url,
            model=settings.embedder_model,
            dimension=settings.embedder_dimension,
            api_key=settings.embedder_api_key,
            batch_size=settings.embed_batch_size,
            timeout_seconds=settings.embedder_timeout_seconds,
            max_retries=settings.embedder_max_retries,
            retry_after_max_seconds=settings.embedder_retry_after_max_seconds,
            breaker=breaker or open_breaker(settings),
        )
    from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder

    return MiniLMOnnxEmbedder(batch_size=settings.embed_batch_size, threads=settings.embed_threads)


def open_verifier(settings: Settings, metrics: Metrics | None = None) -> TokenVerifier:
    """The API's token checker. The HS256 secret is read (or generated) only when HS256 is
    allowed, and the JWKS is fetched on first use, not here: an identity provider that is
    down at start-up delays logins, not the start."""
    secret = (
        load_or_create_secret(settings.jwt_secret, settings.data_dir)
        if ALGORITHM in settings.jwt_algorithms
        else None
    )
    keys = (
        JwksKeySet(
            settings.jwt_jwks_url,
            refresh_seconds=settings.jwt_jwks_refresh_seconds,
            on_lookup=metrics.cache("jwks") if metrics else None,
        )
        if settings.jwt_jwks_url
        else None
    )
    return TokenVerifier(settings, hs256_secret=secret, keys=keys)


def require_shared_secrets(settings: Settings) -> None:
    """On a shared database every process must hold the same master key and token secret.

    Left unset, each process would generate its own into its own data dir: tenant keys
    wrapped by one process would not unwrap in the next, and a token signed by one API
    process would be refused by the other. The embedded default (one SQLite file, one
    data dir) generates them once, as before.
    """
    if settings.resolved_database_url().startswith("sqlite"):
        return
    missing = []
    if not settings.master_key:
        missing.append("SPINE_MASTER_KEY")
    if ALGORITHM in settings.jwt_algorithms and not settings.jwt_secret:
        missing.append("SPINE_JWT_SECRET (or drop HS256 from SPINE_JWT_ALGORITHMS)")
    if missing:
        raise ValueError(
            f"{' and '.join(missing)} must be set when processes share a database: "
            "each would otherwise generate its own"
        )


def bootstrap(settings: Settings, *, embedder: Embedder | None = None) -> Services:
    require_shared_secrets(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Read first: a malformed SPINE_MASTER_KEY stops the start with a clear message.
    master_key = load_master_key(settings.master_key, settings.data_dir)
    db = open_database(
        settings.resolved_database_url(),
        busy_timeout_ms=settings.db_busy_timeout_ms,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    metrics = Metrics()
    if embedder is None:
        breaker = open_breaker(settings)
        model = open_embedder(settings, breaker)
    else:
        model = embedder
        breaker = embedder.breaker if isinstance(embedder, HttpEmbedder) else None
    services = Services(
        settings=settings,
        db=db,
        blobs=open_blob_store(settings.resolved_blob_url()),
        embedder=TimedEmbedder(
            model,
            metrics.embed_duration.labels(embedder="local" if breaker is None else "http"),
        ),
        # Children start on first use: an API-only process never starts one.
        extractor=ExtractionSandbox(
            settings.extract_timeout_seconds,
            settings.extract_memory_mb,
            settings.max_uncompressed_bytes,
            max_children=max(1, settings.workers),
        ),
        retry=RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds),
        # Several API processes share their buckets in Redis, or each would grant the
        # full rate; one process keeps them in memory.
        rate_limiter=RedisRateLimiter.from_url(
            settings.redis_url, prefix=f"{settings.redis_namespace}:ratelimit:"
        )
        if settings.redis_url
        else InProcessRateLimiter(),
        keyring=Keyring(master_key, db, utc_now, on_lookup=metrics.cache("tenant_keys")),
        metrics=metrics,
        radar=HotspotRadar(
            settings.hotspot_top_k,
            settings.hotspot_window_seconds,
            settings.hotspot_share_threshold,
            utc_now,
        ),
        slo=SloRecorder(settings, metrics),
        search_cache=SearchCache.from_settings(open_cache(settings), settings, metrics),
        breaker=breaker,
    )
    install_collectors(services)
    metrics.register(CallbackCollector(lambda: hotspot_gauges(services.radar)))
    return services
