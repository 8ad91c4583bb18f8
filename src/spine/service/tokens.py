"""JSON Web Tokens: making them (the CLI) and checking them (the API).

HS256 with a shared secret is the development default. RS256 and ES256 tokens, made by an
identity provider or ``spine token create --private-key``, are checked against the public
keys of a JWKS. Which key checks a token follows from the algorithm on Spine's allow-list,
never from what the token would like: the secret only ever checks HS256, JWKS keys only
RS256/ES256 and only with a key of the matching type. That closes alg ``none`` and the
HS/RS key-confusion attacks.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spine.domain.auth import Principal, Role, Scope, parse_scopes
from spine.errors import Unauthenticated
from spine.service import secret_files
from spine.settings import Settings

ALGORITHM = "HS256"
SECRET_FILE = "jwt-secret"  # noqa: S105 -- a file name, not a secret
MIN_SECRET_BYTES = 32
#: A tenant id is a name, not free text: it starts with a letter or digit, so the audit
#: log's "-" (requests nobody was authenticated for) can never be a tenant.
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_SUBJECT_LENGTH = 256
#: The algorithms Spine can check, and the JWK key type each must be verified with.
ASYMMETRIC_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
SUPPORTED_ALGORITHMS = frozenset({ALGORITHM, *ASYMMETRIC_KEY_TYPES})
REQUIRED_CLAIMS = ["exp", "iat", "sub", "tenant", "role", "iss", "aud"]

#: Short reasons by PyJWT error, most specific first. PyJWT's own messages are not passed
#: on: they can quote parts of the token.
_REASONS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidKeyError, "unusable signing key"),
    (jwt.InvalidIssuedAtError, "bad iat claim"),
    (jwt.DecodeError, "malformed token"),
]


class KeySource(Protocol):
    """Public keys by ``kid`` (``spine.adapters.auth.jwks.JwksKeySet``)."""

    def get(self, kid: str) -> jwt.PyJWK | None: ...


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
    signing_key: str | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    tenant_id: str,
    role: Role,
    subject: str,
    ttl_seconds: int,
    issuer: str,
    audience: str,
    now: datetime,
    scopes: Iterable[str] = (),
    algorithm: str = ALGORITHM,
    kid: str | None = None,
) -> str:
    """A signed token: HS256 with a secret string, or RS256/ES256 with a private key."""
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm}")
    if isinstance(signing_key, str) != (algorithm == ALGORITHM):
        raise ValueError(f"{algorithm} needs {'a secret' if algorithm == ALGORITHM else 'a key'}")
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": tenant_id,
        "role": role.value,
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    scope = " ".join(sorted(set(scopes)))
    if scope:
        claims["scope"] = scope
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, signing_key, algorithm=algorithm, headers=headers)


class TokenVerifier:
    """Checks bearer tokens against the settings it was built with, once, at start-up."""

    def __init__(
        self, settings: Settings, *, hs256_secret: str | None, keys: KeySource | None
    ) -> None:
        algorithms = frozenset(settings.jwt_algorithms)
        if not algorithms:
            raise ValueError("SPINE_JWT_ALGORITHMS must name at least one algorithm")
        unsupported = algorithms - SUPPORTED_ALGORITHMS
        if unsupported:
            raise ValueError(
                f"SPINE_JWT_ALGORITHMS: unsupported {sorted(unsupported)}; "
                f"choose from {sorted(SUPPORTED_ALGORITHMS)}"
            )
        if ALGORITHM in algorithms and not hs256_secret:
            raise ValueError("HS256 is allowed but no secret was given")
        self.algorithms = algorithms
        # The secret is dropped when HS256 is off: nothing can then reach it.
        self._secret = hs256_secret if ALGORITHM in algorithms else None
        self._keys = keys
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds

    def verify(self, token: str) -> Principal:
        """The principal a token names; every flaw raises ``Unauthenticated`` with a short
        reason that never quotes the token."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid token: malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthenticated("invalid token: algorithm not allowed")
        key: str | jwt.PyJWK
        if alg == ALGORITHM and self._secret:
            key = self._secret
        elif alg in ASYMMETRIC_KEY_TYPES:
            key = self._public_key(header, alg)
        else:
            raise Unauthenticated("invalid token: algorithm not allowed")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"invalid token: missing {exc.claim} claim") from exc
        except jwt.PyJWTError as exc:
            reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), "invalid")
            raise Unauthenticated(f"invalid token: {reason}") from exc
        return _principal(claims)

    def _public_key(self, header: dict[str, Any], alg: str) -> jwt.PyJWK:
        if self._keys is None:
            raise Unauthenticated("invalid token: no public keys configured")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("invalid token: missing kid")
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("invalid token: unknown signing key")
        # The key, not the token, decides how a signature is checked.
        if key.key_type != ASYMMETRIC_KEY_TYPES[alg] or key.algorithm_name != alg:
            raise Unauthenticated("invalid token: key does not match algorithm")
        return key


def _principal(claims: dict[str, Any]) -> Principal:
    tenant, role, subject = claims.get("tenant"), claims.get("role"), claims.get("sub")
    if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
        raise Unauthenticated("invalid token: bad tenant claim")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise Unauthenticated("invalid token: bad sub claim")
    try:
        parsed_role = Role(str(role))
    except ValueError as exc:
        raise Unauthenticated("invalid token: unknown role") from exc
    return Principal(subject=subject, tenant_id=tenant, role=parsed_role, scopes=_scopes(claims))


def _scopes(claims: dict[str, Any]) -> frozenset[Scope]:
    """``scope`` (RFC 8693: a space-separated string) and ``scp`` (a list, or a string as
    some providers send it) together."""
    values: list[object] = []
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            values.extend(value.split())
        elif isinstance(value, list):
            values.extend(value)
    return parse_scopes(values)
