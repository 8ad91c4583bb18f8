"""Fixtures shared by every test: settings on a temporary folder, the real model, the app."""

from __future__ import annotations

import os

# Rich sizes spine.cli's console when the module is imported, whichever test does that
# first: wide enough that no table of a CLI test wraps, whatever the order of the tests.
os.environ.setdefault("COLUMNS", "300")

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.adapters.sqlite.database import SqliteDatabase
from spine.api.app import create_app
from spine.domain.auth import Role
from spine.service.bootstrap import bootstrap, open_database
from spine.service.container import Services
from spine.settings import Settings
from support.api import bearer

TEST_SECRET = "test-secret-" + "x" * 40
#: Far above what any test sends (some send 200 requests at once): only the rate limit
#: tests, which set their own, are ever throttled.
UNTHROTTLED = "1000000/s burst 1000000"


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
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        jwt_secret=TEST_SECRET,
        workers=1,
        job_poll_seconds=0.05,
        job_lease_seconds=10,
        retry_base_seconds=0.1,
        shutdown_grace_seconds=5,
        rate_limit_reader=UNTHROTTLED,
        rate_limit_writer=UNTHROTTLED,
        rate_limit_admin=UNTHROTTLED,
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    """A migrated SQLite database of its own, for tests of the repositories below the
    services."""
    database = open_database(f"sqlite:///{tmp_path / 'spine.db'}")
    assert isinstance(database, SqliteDatabase)
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
