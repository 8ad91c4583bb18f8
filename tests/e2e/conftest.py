"""The end-to-end suite runs twice: on the embedded default (SQLite, a folder of blobs,
in-process cache and limits) and on the scale-out stores (PostgreSQL, S3, Redis)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["embedded", "scale-out"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _backend_environment(backend_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same stores for the ``spine`` processes a test starts: they inherit this
    environment (see support.server.process_env)."""
    for key, value in backend_settings.items():
        monkeypatch.setenv(f"SPINE_{key.upper()}", value)
