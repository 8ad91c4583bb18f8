"""Fixtures shared by every test: settings on a temporary folder, the real model, the app."""

from __future__ import annotations

import base64
import os
import secrets

# Rich sizes spine.cli's console when the module is imported, whichever test does that
# first: wide enough that no table of a CLI test wraps, whatever the order of the tests.
os.environ.setdefault("COLUMNS", "300")

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

import support.postgres
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.api.app import create_app
from spine.domain.auth import Role
from spine.ports import Database
from spine.service.bootstrap import bootstrap, open_database
from spine.service.container import Services
from spine.settings import Settings
from support.api import bearer
from support.s3 import S3Server, fresh_bucket, serve_s3

TEST_SECRET = "test-secret-" + "x" * 40
#: Far above what any test sends (some send 200 requests at once): only the rate limit
#: tests, which set their own, are ever throttled.
UNTHROTTLED = "1000000/s burst 1000000"


def pytest_configure(config: pytest.Config) -> None:
    """Start the servers the tests need, once per run: in the process that spawns the
    xdist workers (which inherit the addresses through the environment), or in the only
    process when there are none."""
    if hasattr(config, "workerinput"):
        return
    config.stash[_STARTED_POSTGRES] = support.postgres.start(in_ci=os.environ.get("CI") == "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The topology test first: it keeps one xdist worker busy for minutes, which the
    other worker spends on the rest of the suite instead of waiting at the end."""
    items.sort(key=lambda item: "tests/topology/" not in item.nodeid.replace("\\", "/"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and _STARTED_POSTGRES in config.stash:
        support.postgres.stop(config.stash[_STARTED_POSTGRES])


_STARTED_POSTGRES = pytest.StashKey["support.postgres.LocalPostgres | None"]()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own (see support.postgres)."""
    yield from support.postgres.fresh_database()


@pytest.fixture(scope="session", autouse=True)
def _unthrottled_processes() -> Iterator[None]:
    """The same for the ``spine`` processes tests start: they inherit this environment."""
    with pytest.MonkeyPatch.context() as patch:
        for role in Role:
            patch.setenv(f"SPINE_RATE_LIMIT_{role.name}", UNTHROTTLED)
        yield


@pytest.fixture(scope="session")
def embedder() -> MiniLMOnnxEmbedder:
    """The real model, loaded once for the whole run."""
    return MiniLMOnnxEmbedder(batch_size=32)


@pytest.fixture
def backend() -> str:
    """Which stores ``settings`` points at: ``embedded`` (SQLite and a folder) or
    ``scale-out`` (PostgreSQL, S3 and Redis). tests/e2e runs on both; elsewhere it is
    the embedded default, unless SPINE_TEST_BACKEND says otherwise (to try the whole
    suite on the scale-out stores)."""
    return os.environ.get("SPINE_TEST_BACKEND", "embedded")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server per test process (see support.s3)."""
    yield from serve_s3(tmp_path_factory.mktemp("s3-server"))


@pytest.fixture
def s3_bucket_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``s3://bucket/prefix`` of a bucket of this test's own, with the AWS variables that
    reach it set for this process and the ``spine`` processes it starts."""
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    with fresh_bucket(s3_server) as url:
        yield url


TEST_REDIS_URL = os.environ.get("SPINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """The test Redis (``SPINE_TEST_REDIS_URL``, default this machine's, database 15),
    checked once. Tests sharing it keep apart by key prefix (``redis_prefix``, or the
    scale-out settings' ``redis_namespace``). Where none answers its tests skip, except
    in CI, where that fails them."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs Redis at {TEST_REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {TEST_REDIS_URL}")
    yield client
    client.close()


@pytest.fixture
def redis_url(redis_client: redis.Redis) -> str:
    return TEST_REDIS_URL


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test only; its keys are removed afterwards."""
    mine = f"spine-test:{secrets.token_hex(6)}:"
    yield mine
    for key in redis_client.scan_iter(f"{mine}*"):
        redis_client.delete(key)


@pytest.fixture
def backend_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The store settings of ``backend``, each store of this test's own: a database, a
    bucket and a Redis key namespace."""
    if backend == "embedded":
        return {}
    if backend != "scale-out":
        raise ValueError(f"unknown test backend {backend!r}")
    return {
        "database_url": request.getfixturevalue("postgres_url"),
        "blob_url": request.getfixturevalue("s3_bucket_url"),
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_namespace": f"spine-test-{secrets.token_hex(6)}",
        # Every process of a shared database holds the same keys (see bootstrap).
        "master_key": base64.b64encode(os.urandom(32)).decode(),
        "jwt_secret": TEST_SECRET,
    }


@pytest.fixture
def settings(tmp_path: Path, backend_settings: dict[str, str]) -> Settings:
    return Settings(
        **{"jwt_secret": TEST_SECRET, **backend_settings},  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        workers=1,
        job_poll_seconds=0.05,
        job_lease_seconds=10,
        retry_base_seconds=0.1,
        shutdown_grace_seconds=5,
        rate_limit_reader=UNTHROTTLED,
        rate_limit_writer=UNTHROTTLED,
        rate_limit_admin=UNTHROTTLED,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of its own, for the repositories' contract tests: every test
    that takes it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'spine.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = open_database(url)
    yield database
    database.close()


@pytest.fixture
def services(settings: Settings, embedder: MiniLMOnnxEmbedder) -> Iterator[Services]:
    built = bootstrap(settings, embedder=embedder)
    yield built
    built.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services), raise_server_exceptions=False) as test_client:
        yield test_client


AuthFactory = Callable[..., dict[str, str]]


@pytest.fixture
def auth(settings: Settings) -> AuthFactory:
    """``auth("tenant-a", Role.READER, scopes=["pii:read"])`` -> an Authorization header."""

    def make(
        tenant: str = "acme", role: Role = Role.WRITER, *, scopes: Iterable[str] = ()
    ) -> dict[str, str]:
        return bearer(settings, TEST_SECRET, tenant, role, scopes=scopes)

    return make
