"""HS256 JSON Web Tokens: making them (the CLI) and checking them (the API)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path

import jwt

from spine.domain.auth import Principal, Role
from spine.errors import Unauthenticated
from spine.service import secret_files

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
SECRET_FILE = "jwt-secret"  # noqa: S105 -- a file name, not a secret
MIN_SECRET_BYTES = 32


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    """The configured secret, else the one generated once into the data dir (mode 0600).

    Two processes starting together agree on one secret (see ``secret_files``).
    """
    if configured:
        if len(configured.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"SPINE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return configured
    path = data_dir / SECRET_FILE
    secret_files.read_or_create(path, lambda: secrets.token_urlsafe(48).encode("ascii"))
    secret = path.read_text(encoding="ascii").strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{path} holds no usable secret; remove it to generate a new one")
    return secret


def create_token(
    secret: str,
    *,
    tenant_id: str,
    role: Role,
    subject: str,
    ttl_seconds: int,
    issuer: str,
    now: datetime,
) -> str:
    claims = {
        "sub": subject,
        "tenant": tenant_id,
        "role": role.value,
        "iss": issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, issuer: str) -> Principal:
    """Decode and check a token; any flaw is the same 401 to the caller."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub", "tenant", "role"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from exc
    tenant, role, subject = claims.get("tenant"), claims.get("role"), claims.get("sub")
    if not isinstance(tenant, str) or not tenant or len(tenant) > 128:
        raise Unauthenticated("invalid token: bad tenant claim")
    if not isinstance(subject, str):
        raise Unauthenticated("invalid token: bad sub claim")
    try:
        parsed_role = Role(str(role))
    except ValueError as exc:
        raise Unauthenticated("invalid token: unknown role") from exc
    return Principal(subject=subject, tenant_id=tenant, role=parsed_role)
