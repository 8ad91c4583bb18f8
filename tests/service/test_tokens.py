"""Tokens: what is accepted, and every way a token is refused.

The verifier is built the way the API builds it (``open_verifier``), with real keys and
a real JWKS file; each attack is its own test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spine.domain.auth import Permission, Principal, Role, Scope
from spine.errors import Forbidden, Unauthenticated
from spine.service.bootstrap import open_verifier
from spine.service.tokens import TokenVerifier, create_token, load_or_create_secret
from spine.settings import Settings
from support.jwks import claims, ec_key, jwks_of, kid_of, rsa_key, sign

SECRET = "s" * 48


def now() -> int:
    """Read at each use: PyJWT checks against the real clock, and a constant taken at
    import time is minutes old by the time a test runs late in a full suite."""
    return int(datetime.now(UTC).timestamp())


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return ec_key()


@pytest.fixture
def jwks_file(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(rsa_private, ec_private)))
    return path


MakeVerifier = Callable[..., TokenVerifier]


@pytest.fixture
def make_verifier(tmp_path: Path, jwks_file: Path) -> MakeVerifier:
    def make(**overrides: Any) -> TokenVerifier:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "jwt_secret": SECRET,
            "jwt_jwks_url": str(jwks_file),
        }
        return open_verifier(Settings(**(values | overrides)))

    return make


@pytest.fixture
def verifier(make_verifier: MakeVerifier) -> TokenVerifier:
    return make_verifier()


def hs256(secret: str | bytes = SECRET, *, alg: str = "HS256", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hmac(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: PyJWT refuses to use a PEM as an HMAC secret, an attacker does not."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refused(verifier: TokenVerifier, token: str) -> str:
    """The rejection's reason, checked to be short and never to quote the token."""
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    message = info.value.message
    assert message.startswith("invalid token: ")
    assert len(message) < 80
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in message
    return message


# -- accepted -------------------------------------------------------------------------


def test_created_hs256_token_verifies_to_its_principal(verifier: TokenVerifier) -> None:
    token = create_token(
        SECRET,
        tenant_id="acme",
        role=Role.READER,
        subject="bob",
        ttl_seconds=60,
        issuer="spine",
        audience="spine",
        now=datetime.now(UTC),
    )
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "spine"
    assert verifier.verify(token) == Principal("bob", "acme", Role.READER)


@pytest.mark.parametrize("key_name", ["rsa_private", "ec_private"])
def test_created_asymmetric_token_verifies_with_the_jwks(
    verifier: TokenVerifier, key_name: str, request: pytest.FixtureRequest
) -> None:
    key = request.getfixturevalue(key_name)
    algorithm = "RS256" if key_name == "rsa_private" else "ES256"
    token = create_token(
        key,
        tenant_id="acme",
        role=Role.ADMIN,
        subject="svc",
        ttl_seconds=60,
        issuer="spine",
        audience="spine",
        now=datetime.now(UTC),
        scopes=["pii:read"],
        algorithm=algorithm,
        kid=kid_of(key),
    )
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert verifier.verify(token) == Principal(
        "svc", "acme", Role.ADMIN, frozenset({Scope.PII_READ})
    )


def test_scopes_come_from_scope_and_scp_and_unknown_ones_are_ignored(
    verifier: TokenVerifier, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    from_scope = verifier.verify(sign(ec_private, scope="openid pii:read profile"))
    assert from_scope.scopes == frozenset({Scope.PII_READ})
    from_scp = verifier.verify(sign(ec_private, scp=["email", "pii:read"]))
    assert from_scp.scopes == frozenset({Scope.PII_READ})
    assert verifier.verify(sign(ec_private, scope="openid pii:write")).scopes == frozenset()
    assert verifier.verify(sign(ec_private)).scopes == frozenset()


def test_clock_skew_within_the_leeway_is_tolerated(verifier: TokenVerifier) -> None:
    # Leeway is 30 s by default: expired 10 s ago, issued 10 s ahead, valid from 10 s ahead.
    principal = verifier.verify(hs256(exp=now() - 10, iat=now() + 10, nbf=now() + 10))
    assert principal.tenant_id == "acme"


def test_audience_may_be_a_list_that_contains_spine(verifier: TokenVerifier) -> None:
    assert verifier.verify(hs256(aud=["other-api", "spine"])).subject == "alice"


# -- refused: one test per attack -----------------------------------------------------


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(role="admin"), None, algorithm="none")
    assert refused(verifier, token) == "invalid token: algorithm not allowed"


def test_alg_none_cannot_be_allow_listed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        open_verifier(Settings(data_dir=tmp_path, jwt_secret=SECRET, jwt_algorithms=["none"]))


def test_hs256_signed_with_the_rsa_public_key_is_refused(
    make_verifier: MakeVerifier, rsa_private: rsa.RSAPrivateKey
) -> None:
    """Key confusion, HS side: the public PEM (which anyone has) used as an HMAC secret."""
    pem = rsa_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": kid_of(rsa_private)}
    token = forge_hmac(header, claims(role="admin"), pem)
    assert refused(make_verifier(), token) == "invalid token: bad signature"
    only_jwks = make_verifier(jwt_algorithms=["RS256", "ES256"])
    assert refused(only_jwks, token) == "invalid token: algorithm not allowed"


def test_symmetric_key_published_in_the_jwks_never_verifies(
    make_verifier: MakeVerifier, tmp_path: Path, rsa_private: rsa.RSAPrivateKey
) -> None:
    """Key confusion, JWKS side: a JWKS key is never an HMAC secret, whatever the token's
    kid says, and a symmetric key in the set is not even loaded."""
    leaked = b"k" * 48
    oct_jwk = {"kty": "oct", "kid": "shared", "k": b64(leaked), "alg": "HS256"}
    path = tmp_path / "with-oct.json"
    path.write_text(json.dumps({"keys": [oct_jwk, *jwks_of(rsa_private)["keys"]]}))
    verifier = make_verifier(jwt_jwks_url=str(path))
    as_hs = jwt.encode(claims(), leaked, algorithm="HS256", headers={"kid": "shared"})
    assert refused(verifier, as_hs) == "invalid token: bad signature"
    as_rs = forge_hmac({"alg": "RS256", "kid": "shared"}, claims(), leaked)
    assert refused(verifier, as_rs) == "invalid token: unknown signing key"


def test_rs256_header_with_an_ec_keys_kid_is_refused(
    verifier: TokenVerifier, ec_private: ec.EllipticCurvePrivateKey, rsa_private: rsa.RSAPrivateKey
) -> None:
    # Signed with a real RSA key, but the kid names the EC key: the key's type decides.
    token = jwt.encode(
        claims(), rsa_private, algorithm="RS256", headers={"kid": kid_of(ec_private)}
    )
    assert refused(verifier, token) == "invalid token: key does not match algorithm"


def test_es256_header_with_an_rsa_keys_kid_is_refused(
    verifier: TokenVerifier, ec_private: ec.EllipticCurvePrivateKey, rsa_private: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(
        claims(), ec_private, algorithm="ES256", headers={"kid": kid_of(rsa_private)}
    )
    assert refused(verifier, token) == "invalid token: key does not match algorithm"


def test_hs256_is_refused_when_not_on_the_allow_list(make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(jwt_algorithms=["RS256", "ES256"])
    assert refused(verifier, hs256()) == "invalid token: algorithm not allowed"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_hs512_is_refused_even_with_the_right_secret(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256(alg="HS512")) == "invalid token: algorithm not allowed"


def test_rs256_is_refused_when_only_es256_is_allowed(
    make_verifier: MakeVerifier, rsa_private: rsa.RSAPrivateKey
) -> None:
    verifier = make_verifier(jwt_algorithms=["ES256"])
    assert refused(verifier, sign(rsa_private)) == "invalid token: algorithm not allowed"


def test_expired_token_is_refused(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256(exp=now() - 60)) == "invalid token: token expired"


def test_token_with_nbf_in_the_future_is_refused(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256(nbf=now() + 120)) == "invalid token: token not yet valid"


def test_token_issued_in_the_future_is_refused(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256(iat=now() + 120)) == "invalid token: token not yet valid"


def test_wrong_issuer_is_refused(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256(iss="someone-else")) == "invalid token: wrong issuer"


def test_wrong_audience_is_refused(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256(aud="another-api")) == "invalid token: wrong audience"


@pytest.mark.parametrize("claim", ["aud", "iss", "exp", "iat", "sub", "tenant", "role"])
def test_missing_required_claim_is_refused(verifier: TokenVerifier, claim: str) -> None:
    token = hs256(**{claim: None})
    assert refused(verifier, token) == f"invalid token: missing {claim} claim"


@pytest.mark.parametrize(
    "tenant", ["", "t" * 129, 42, ["acme"], "-", "../acme", "acme\n", "a b", "tenant@example.com"]
)
def test_bad_tenant_claim_is_refused(verifier: TokenVerifier, tenant: object) -> None:
    assert refused(verifier, hs256(tenant=tenant)) == "invalid token: bad tenant claim"


def test_unknown_role_is_refused(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256(role="superuser")) == "invalid token: unknown role"


def test_tampered_signature_is_refused(
    verifier: TokenVerifier, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    head, body, signature = sign(ec_private).split(".")
    flipped = base64.urlsafe_b64decode(signature + "==")
    flipped = bytes([flipped[0] ^ 1]) + flipped[1:]
    assert refused(verifier, f"{head}.{body}.{b64(flipped)}") == "invalid token: bad signature"


def test_tampered_payload_is_refused(verifier: TokenVerifier) -> None:
    head, _, signature = hs256(role="reader").split(".")
    body = b64(json.dumps(claims(role="admin")).encode())
    assert refused(verifier, f"{head}.{body}.{signature}") == "invalid token: bad signature"


def test_token_of_another_secret_is_refused(verifier: TokenVerifier) -> None:
    assert refused(verifier, hs256("t" * 48)) == "invalid token: bad signature"


def test_unknown_kid_is_refused(verifier: TokenVerifier) -> None:
    stranger = ec_key()
    assert refused(verifier, sign(stranger)) == "invalid token: unknown signing key"


def test_asymmetric_token_without_kid_is_refused(
    verifier: TokenVerifier, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    token = jwt.encode(claims(), ec_private, algorithm="ES256")
    assert refused(verifier, token) == "invalid token: missing kid"


def test_asymmetric_token_without_a_jwks_is_refused(
    make_verifier: MakeVerifier, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    verifier = make_verifier(jwt_jwks_url=None)
    assert refused(verifier, sign(ec_private)) == "invalid token: no public keys configured"


@pytest.mark.parametrize("garbage", ["", "not.a.token", "a.b", "x" * 300, "e30.e30.e30"])
def test_garbage_is_refused(verifier: TokenVerifier, garbage: str) -> None:
    refused(verifier, garbage)


# -- configuration --------------------------------------------------------------------


def test_without_hs256_no_secret_file_is_created(tmp_path: Path, jwks_file: Path) -> None:
    open_verifier(
        Settings(data_dir=tmp_path / "d", jwt_algorithms=["ES256"], jwt_jwks_url=str(jwks_file))
    )
    assert not (tmp_path / "d" / "jwt-secret").exists()


def test_an_empty_allow_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        open_verifier(Settings(data_dir=tmp_path, jwt_secret=SECRET, jwt_algorithms=[]))


def test_created_token_refuses_a_secret_for_an_asymmetric_algorithm() -> None:
    with pytest.raises(ValueError, match="needs a key"):
        create_token(
            SECRET,
            tenant_id="acme",
            role=Role.READER,
            subject="x",
            ttl_seconds=60,
            issuer="spine",
            audience="spine",
            now=datetime.now(UTC),
            algorithm="RS256",
        )


# -- roles and scopes -----------------------------------------------------------------


def test_roles_grant_what_they_should() -> None:
    reader = Principal("r", "t", Role.READER)
    reader.require(Permission.READ)
    with pytest.raises(Forbidden):
        reader.require(Permission.WRITE)
    Principal("w", "t", Role.WRITER).require(Permission.WRITE)
    with pytest.raises(Forbidden):
        Principal("w", "t", Role.WRITER).require(Permission.ADMIN)
    Principal("a", "t", Role.ADMIN).require(Permission.ADMIN)


def test_a_scope_is_granted_by_the_token_never_by_the_role() -> None:
    with pytest.raises(Forbidden, match="pii:read"):
        Principal("a", "t", Role.ADMIN).require_scope(Scope.PII_READ)
    Principal("r", "t", Role.READER, frozenset({Scope.PII_READ})).require_scope(Scope.PII_READ)


# -- the HS256 secret -----------------------------------------------------------------


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
