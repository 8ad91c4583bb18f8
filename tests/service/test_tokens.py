"""Tokens: what is accepted, and every way a token is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from spine.domain.auth import Permission, Principal, Role
from spine.errors import Forbidden, Unauthenticated
from spine.service.tokens import create_token, load_or_create_secret, verify_token

SECRET = "s" * 48
NOW = datetime.now(UTC)


def make(**overrides: object) -> str:
    claims: dict[str, object] = {
        "sub": "alice",
        "tenant": "acme",
        "role": "writer",
        "iss": "spine",
        "iat": int(NOW.timestamp()),
        # Long enough that tokens made at collection time are still valid when tests run.
        "exp": int((NOW + timedelta(days=1)).timestamp()),
    }
    claims.update(overrides)
    claims = {key: value for key, value in claims.items() if value is not None}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_created_token_verifies_to_its_principal() -> None:
    token = create_token(
        SECRET,
        tenant_id="acme",
        role=Role.READER,
        subject="bob",
        ttl_seconds=60,
        issuer="spine",
        now=datetime.now(UTC),
    )
    assert verify_token(SECRET, token, issuer="spine") == Principal("bob", "acme", Role.READER)


@pytest.mark.parametrize(
    ("why", "token"),
    [
        ("expired", make(exp=int((NOW - timedelta(minutes=5)).timestamp()))),
        ("wrong issuer", make(iss="someone-else")),
        ("no tenant", make(tenant=None)),
        ("empty tenant", make(tenant="")),
        ("unknown role", make(role="superuser")),
        ("no exp", make(exp=None)),
        ("other secret", jwt.encode({"sub": "x"}, "t" * 48, algorithm="HS256")),
        (
            "alg none",
            jwt.encode({"sub": "a", "tenant": "acme", "role": "admin"}, None, algorithm="none"),
        ),
        ("garbage", "not.a.token"),
    ],
)
def test_bad_tokens_are_refused(why: str, token: str) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, issuer="spine")


def test_roles_grant_what_they_should() -> None:
    reader = Principal("r", "t", Role.READER)
    reader.require(Permission.READ)
    with pytest.raises(Forbidden):
        reader.require(Permission.WRITE)
    Principal("w", "t", Role.WRITER).require(Permission.WRITE)
    with pytest.raises(Forbidden):
        Principal("w", "t", Role.WRITER).require(Permission.ADMIN)
    Principal("a", "t", Role.ADMIN).require(Permission.ADMIN)


def test_generated_secret_is_shared_by_every_caller_and_private(tmp_path: Path) -> None:
    first = load_or_create_secret(None, tmp_path)
    assert load_or_create_secret(None, tmp_path) == first
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["jwt-secret"]


def test_an_empty_secret_file_is_refused_not_used(tmp_path: Path) -> None:
    (tmp_path / "jwt-secret").write_text("")
    with pytest.raises(ValueError, match="no usable secret"):
        load_or_create_secret(None, tmp_path)


def test_short_configured_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        load_or_create_secret("short", tmp_path)
