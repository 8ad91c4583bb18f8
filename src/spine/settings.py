"""All configuration, in one place: every field is a ``SPINE_*`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spine.domain.ratelimit import RatePolicy
from spine.domain.search import Fusion, FusionMethod


class Settings(BaseSettings):
    """Spine's settings. Defaults run the embedded mode: SQLite + a folder of blobs."""

    model_config = SettingsConfigDict(env_prefix="SPINE_", extra="ignore")

    data_dir: Path = Field(
        Path(".spine-data"),
        description="Folder of the embedded default: database, blobs and generated secrets.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/spine.db."
    )
    db_busy_timeout_ms: int = Field(
        30_000,
        gt=0,
        description="How long a write waits for a lock (SQLite's, or a PostgreSQL row "
        "lock) before a 503.",
    )
    db_pool_size: int = Field(
        10, ge=1, description="PostgreSQL: connections each process keeps open."
    )
    db_max_overflow: int = Field(
        10, ge=0, description="PostgreSQL: connections a process may open beyond the pool."
    )
    blob_url: str | None = Field(
        None, description="Blob store URL; default file://<data_dir>/blobs."
    )
    jwt_secret: str | None = Field(
        None,
        description="HS256 secret; when unset one is generated once into <data_dir>/jwt-secret.",
    )
    jwt_issuer: str = Field("spine", description="The iss claim of tokens Spine makes and expects.")
    jwt_audience: str = Field("spine", description="The aud claim tokens must carry.")
    jwt_algorithms: list[str] = Field(
        ["HS256", "RS256", "ES256"],
        description="Allow-listed JWS algorithms (JSON list); a production deployment that "
        "uses a JWKS drops HS256.",
    )
    jwt_jwks_url: str | None = Field(
        None,
        description="Public keys for RS256/ES256: a JWKS file path or an http(s):// URL.",
    )
    jwt_jwks_refresh_seconds: float = Field(
        300.0, gt=0, description="How long a fetched JWKS is used before it is fetched again."
    )
    jwt_leeway_seconds: int = Field(
        30, ge=0, le=300, description="Clock skew tolerated on exp, nbf and iat."
    )
    master_key: str | None = Field(
        None,
        description="Base64 of the 32-byte key that wraps every tenant's keys; when unset "
        "one is generated once into <data_dir>/master-key (mode 0600).",
    )
    pii_phone_region: str = Field(
        "US", description="Region assumed for phone numbers written without a country code."
    )
    rate_limit_reader: str = Field(
        "20/s burst 40",
        description="Token bucket of each reader subject, 'N/s|m|h burst M' (429 when empty).",
    )
    rate_limit_writer: str = Field(
        "10/s burst 20", description="Token bucket of each writer subject, as above."
    )
    rate_limit_admin: str = Field(
        "20/s burst 40", description="Token bucket of each admin subject, as above."
    )
    rate_limit_tenant_factor: float = Field(
        5.0,
        gt=0,
        description="A tenant's subjects of one role share a bucket this many times one's.",
    )
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db shared by every API process for rate limits and "
        "the search cache; unset: both in this process's memory.",
    )
    redis_namespace: str = Field(
        "spine",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every Redis key Spine writes, so deployments (or tests) can "
        "share one Redis without sharing keys.",
    )
    max_header_bytes: int = Field(
        16 * 1024, gt=0, description="Largest total size of a request's headers (431 above)."
    )
    max_header_count: int = Field(
        100, gt=0, description="Most headers a request may carry (431 above)."
    )
    max_json_body_bytes: int = Field(
        1024 * 1024, gt=0, description="Largest body of a request that is not an upload."
    )
    max_upload_bytes: int = Field(
        25 * 1024 * 1024, gt=0, description="Largest accepted upload, enforced while it streams."
    )
    workers: int = Field(1, ge=0, description="Worker threads inside `spine serve`.")
    job_max_attempts: int = Field(5, ge=1, description="Attempts before a job is dead-lettered.")
    job_lease_seconds: float = Field(
        30.0, gt=0, description="A claim's lease; a heartbeat renews it at a third of this."
    )
    job_poll_seconds: float = Field(0.5, gt=0, description="Idle worker's wait between claims.")
    retry_base_seconds: float = Field(2.0, gt=0, description="First retry's backoff ceiling.")
    retry_max_seconds: float = Field(300.0, gt=0, description="Largest backoff ceiling.")
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, description="On SIGTERM, time a running job gets to finish before release."
    )
    extract_timeout_seconds: float = Field(
        60.0, gt=0, description="Wall-clock limit of one file's text extraction."
    )
    extract_memory_mb: int = Field(
        1024, gt=0, description="Address-space limit of the extraction child process."
    )
    max_uncompressed_bytes: int = Field(
        200 * 1024 * 1024,
        gt=0,
        description="Largest total uncompressed size of a .docx (zip bomb guard).",
    )
    embedder_url: str | None = Field(
        None,
        description="OpenAI-compatible embeddings URL; unset: the local model in-process.",
    )
    embedder_model: str = Field(
        "all-MiniLM-L6-v2-onnx-int8", description="Model name sent to the endpoint."
    )
    embedder_dimension: int = Field(384, gt=0, description="Vector size; must match the index.")
    embedder_api_key: str | None = Field(None, description="Bearer key for the endpoint.")
    embedder_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one request.")
    embedder_max_retries: int = Field(4, ge=0, description="Retries of one request.")
    embedder_retry_after_max_seconds: float = Field(
        30.0, gt=0, description="Cap on a server's Retry-After."
    )
    breaker_failure_threshold: int = Field(
        5, ge=1, description="Failed requests in a row that open the embedder's breaker."
    )
    breaker_reset_seconds: float = Field(
        30.0, gt=0, description="How long the breaker stays open before a probe."
    )
    embed_batch_size: int = Field(
        16, gt=0, description="Chunks per model call; 16 peaks at ~0.6 GB, 32 at ~1.1 GB."
    )
    embed_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads; 0 = auto.")
    chunk_target_tokens: int = Field(256, gt=0, description="Chunk size the chunker aims for.")
    chunk_max_tokens: int = Field(320, gt=0, description="Hard upper bound of a chunk.")
    chunk_overlap_tokens: int = Field(32, ge=0, description="Tokens repeated between chunks.")
    idempotency_ttl_seconds: int = Field(
        24 * 3600, gt=0, description="How long a response is kept under its Idempotency-Key."
    )
    idempotency_lock_seconds: int = Field(
        60, gt=0, description="How long a key's first request may run before a retry may."
    )
    tenant_max_unfinished_jobs: int = Field(
        1000, gt=0, description="Unfinished jobs a tenant may have before uploads get 429."
    )
    overload_retry_after_seconds: int = Field(
        10, gt=0, description="Retry-After of a 429 for too many unfinished jobs."
    )
    # -- Ranking (issue 7): defaults tuned on SciFact's train split only; see README ------
    search_keyword_candidates: int = Field(
        100,
        gt=0,
        le=1000,
        description="Chunks the keyword leg ranks for fusion: the default window of a search.",
    )
    search_vector_candidates: int = Field(
        100,
        gt=0,
        le=1000,
        description="Chunks the vector leg ranks for fusion: the default window of a search.",
    )
    search_fusion: FusionMethod = Field(
        FusionMethod.WEIGHTED,
        description="How hybrid search fuses its legs: weighted (each leg's scores min-max "
        "normalised, then weighted) or rrf (reciprocal ranks).",
    )
    rrf_k: int = Field(10, gt=0, description="Reciprocal rank fusion constant.")
    search_keyword_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The keyword leg's share in hybrid fusion; the vector leg gets the rest.",
    )
    search_title_weight: float = Field(
        2.0,
        gt=0,
        le=100,
        description="How much more a query word found in the title counts than one in the text.",
    )
    search_cache_ttl_seconds: float = Field(
        60.0,
        ge=0,
        description="Longest a search answer stays cached; 0: none is. A change to a "
        "tenant's documents makes its cached answers unreachable at once, whatever this is.",
    )
    search_cache_ttl_jitter: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Each cached answer lives between (1 - this) and 1 times the TTL, at "
        "random, so answers cached together do not all expire together.",
    )
    search_cache_max_entries: int = Field(
        10_000,
        ge=1,
        description="Answers the in-process search cache holds; the least recently used go "
        "first. With SPINE_REDIS_URL the cache is in Redis, bounded by its maxmemory.",
    )
    query_embedding_cache_size: int = Field(
        1024,
        ge=0,
        description="Query vectors each process keeps (least recently used go first), so a "
        "repeated query makes no model call; 0: none.",
    )

    # -- Observability (issue 5) -----------------------------------------------------
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log lines as JSON, or readable; auto: readable on a terminal."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged."
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); "
        "unset: spans are made (their ids are in the logs) but not exported.",
    )
    trace_sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of new traces recorded (parent-based)."
    )
    metrics_token: str | None = Field(
        None,
        description="When set, GET /metrics wants 'Authorization: Bearer <token>' (the "
        "hot-spot series name tenants).",
    )
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of `spine worker`'s own /metrics; unset: none."
    )
    worker_metrics_host: str = Field(
        "127.0.0.1", description="Interface of `spine worker`'s /metrics (0.0.0.0: all)."
    )
    slo_window_days: int = Field(28, ge=1, le=90, description="Error budget window.")
    slo_availability_objective: float = Field(
        0.999, gt=0, lt=1, description="Share of requests that must answer non-5xx."
    )
    slo_search_latency_objective: float = Field(
        0.99, gt=0, lt=1, description="Share of searches that must answer in time."
    )
    slo_search_latency_seconds: float = Field(
        0.25, gt=0, description="The search latency SLO's threshold."
    )
    slo_freshness_objective: float = Field(
        0.95, gt=0, lt=1, description="Share of uploads that must be searchable in time."
    )
    slo_freshness_seconds: float = Field(
        60.0, gt=0, description="The freshness SLO's threshold, upload to searchable."
    )
    slo_flush_seconds: float = Field(
        10.0, gt=0, description="How often a process writes its SLO counts to the database."
    )
    hotspot_top_k: int = Field(10, ge=1, le=100, description="Tenants the radar tracks by name.")
    hotspot_window_seconds: float = Field(
        300.0, gt=0, description="The radar's window: shares are of the last one or two."
    )
    hotspot_share_threshold: float = Field(
        0.5, gt=0, le=1, description="A tenant's share of traffic or work that is a hot spot."
    )

    @field_validator("rate_limit_reader", "rate_limit_writer", "rate_limit_admin")
    @classmethod
    def _rate_limit_policy(cls, value: str) -> str:
        # A typo must stop the start, not surface as a 500 on the first request.
        RatePolicy.parse(value)
        return value

    def fusion(self) -> Fusion:
        """The configured hybrid fusion; a request may override any part of it."""
        return Fusion(self.search_fusion, self.rrf_k, self.search_keyword_weight)

    def resolved_database_url(self) -> str:
        if self.database_url:
            # postgres:// is what many hosting platforms hand out; SQLAlchemy wants
            # postgresql://.
            scheme, sep, rest = self.database_url.partition("://")
            return f"postgresql{sep}{rest}" if scheme == "postgres" else self.database_url
        return f"sqlite:///{(self.data_dir / 'spine.db').resolve()}"

    def resolved_blob_url(self) -> str:
        if self.blob_url:
            return self.blob_url
        return f"file://{(self.data_dir / 'blobs').resolve()}"
