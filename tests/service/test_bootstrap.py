"""The composition root's refusals: settings that would run, but wrongly."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from spine.service.bootstrap import require_shared_secrets
from spine.settings import Settings

SHARED = "postgresql://spine@db.example:5432/spine"
MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"jwt_secret": "s" * 40}, "SPINE_MASTER_KEY"),
        ({"master_key": MASTER_KEY}, "SPINE_JWT_SECRET"),
    ],
)
def test_a_shared_database_needs_keys_every_process_holds(
    tmp_path: Path, given: dict[str, str], missing: str
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=SHARED, **given)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=missing):
        require_shared_secrets(settings)


def test_tokens_from_a_jwks_only_need_no_shared_secret(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=SHARED,
        master_key=MASTER_KEY,
        jwt_algorithms=["RS256"],
        jwt_jwks_url="https://idp.example/jwks.json",
    )
    require_shared_secrets(settings)


def test_the_embedded_default_generates_its_own(tmp_path: Path) -> None:
    require_shared_secrets(Settings(data_dir=tmp_path))
