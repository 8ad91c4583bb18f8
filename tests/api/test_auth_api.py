"""Authentication at the API edge: RS256/ES256 from a JWKS file or a real JWKS host,
HS256 for development, and a 401 problem with ``WWW-Authenticate: Bearer`` for every
refused token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from starlette.testclient import TestClient

from conftest import TEST_SECRET, AuthFactory
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.api.app import create_app
from spine.api.deps import Admin, PiiReader
from spine.domain.auth import Role
from spine.service.bootstrap import bootstrap
from spine.settings import Settings
from support.jwks import JwksServer, claims, ec_key, jwks_of, kid_of, rsa_key, sign

PROBLEM = "application/problem+json"
DOCUMENTS = "/v1/documents"


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return ec_key()


def add_probe_routes(app: FastAPI) -> None:
    """Routes behind the ``Admin`` and ``PiiReader`` dependencies, which no route of the
    API uses yet."""

    @app.get("/probe/admin")
    def admin_probe(principal: Admin) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/probe/pii")
    def pii_probe(principal: PiiReader) -> dict[str, str]:
        return {"subject": principal.subject}


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def client_with(tmp_path: Path, embedder: MiniLMOnnxEmbedder) -> Iterator[ClientFactory]:
    """``client_with(jwt_jwks_url=...)``: a running app on settings with these overrides."""
    with ExitStack() as stack:
        made = itertools.count()

        def make(**overrides: Any) -> TestClient:
            values: dict[str, Any] = {
                "data_dir": tmp_path / f"data-{next(made)}",
                "jwt_secret": TEST_SECRET,
                "workers": 0,
            }
            services = bootstrap(Settings(**(values | overrides)), embedder=embedder)
            stack.callback(services.close)
            app = create_app(services=services)
            add_probe_routes(app)
            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield make


@pytest.fixture
def jwks_file(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(rsa_private, ec_private)))
    return path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthenticated(response: Any) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"] == "Bearer"
    body: dict[str, Any] = response.json()
    assert body["type"] == "unauthenticated"
    assert body["status"] == 401
    return body


# -- accepted -------------------------------------------------------------------------


@pytest.mark.parametrize("key_name", ["rsa_private", "ec_private"])
def test_asymmetric_tokens_from_a_jwks_file_are_accepted(
    client_with: ClientFactory, jwks_file: Path, key_name: str, request: pytest.FixtureRequest
) -> None:
    client = client_with(jwt_jwks_url=str(jwks_file), jwt_algorithms=["RS256", "ES256"])
    token = sign(request.getfixturevalue(key_name), role="reader")
    response = client.get(DOCUMENTS, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


@pytest.mark.parametrize("key_name", ["rsa_private", "ec_private"])
def test_asymmetric_tokens_from_a_jwks_url_are_accepted(
    client_with: ClientFactory, key_name: str, request: pytest.FixtureRequest
) -> None:
    key = request.getfixturevalue(key_name)
    with JwksServer(jwks_of(key)) as host:
        client = client_with(jwt_jwks_url=host.url)
        for _ in range(3):
            assert client.get(DOCUMENTS, headers=bearer(sign(key))).status_code == 200
        assert host.requests == 1


def test_key_rotation_is_picked_up_after_the_refresh(
    client_with: ClientFactory,
    rsa_private: rsa.RSAPrivateKey,
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    with JwksServer(jwks_of(rsa_private)) as host:
        client = client_with(jwt_jwks_url=host.url, jwt_jwks_refresh_seconds=0.3)
        old, new = sign(rsa_private), sign(ec_private)
        assert client.get(DOCUMENTS, headers=bearer(old)).status_code == 200
        host.document = jwks_of(ec_private)
        # Still cached: the old key works and the new kid waits for the refetch interval.
        assert client.get(DOCUMENTS, headers=bearer(old)).status_code == 200
        time.sleep(0.4)
        assert client.get(DOCUMENTS, headers=bearer(new)).status_code == 200
        body = assert_unauthenticated(client.get(DOCUMENTS, headers=bearer(old)))
        assert body["detail"] == "invalid token: unknown signing key"


def test_a_jwks_host_outage_keeps_the_cached_keys(
    client_with: ClientFactory, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    with JwksServer(jwks_of(ec_private)) as host:
        client = client_with(jwt_jwks_url=host.url, jwt_jwks_refresh_seconds=0.2)
        assert client.get(DOCUMENTS, headers=bearer(sign(ec_private))).status_code == 200
        host.stop()
        time.sleep(0.3)
        for _ in range(3):
            assert client.get(DOCUMENTS, headers=bearer(sign(ec_private))).status_code == 200


def test_a_jwks_host_down_since_start_answers_503_with_retry_after(
    client_with: ClientFactory, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    with JwksServer(jwks_of(ec_private)) as host:
        host.stop()
        client = client_with(jwt_jwks_url=host.url)
        response = client.get(DOCUMENTS, headers=bearer(sign(ec_private)))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["retry-after"] == "30"


def test_hs256_development_tokens_are_accepted(client: TestClient, auth: AuthFactory) -> None:
    assert client.get(DOCUMENTS, headers=auth("acme", Role.READER)).status_code == 200


# -- refused: 401 problem, WWW-Authenticate: Bearer -----------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_pem_as_hmac_secret(key: rsa.RSAPrivateKey) -> str:
    """HS256 by hand with the public PEM as secret: PyJWT refuses to, an attacker does not."""
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "kid": kid_of(key)}).encode())
    payload = b64(json.dumps(claims(role="admin")).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _tampered(token: str) -> str:
    head, _, signature = token.split(".")
    payload = b64(json.dumps(claims(role="admin")).encode())
    return f"{head}.{payload}.{signature}"


REFUSALS: dict[str, Callable[[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey], str]] = {
    "alg none": lambda r, e: jwt.encode(claims(), None, algorithm="none"),
    "hs256 with the public pem": lambda r, e: _public_pem_as_hmac_secret(r),
    "rs256 header with ec kid": lambda r, e: jwt.encode(
        claims(), r, algorithm="RS256", headers={"kid": kid_of(e)}
    ),
    "hs512": lambda r, e: jwt.encode(claims(), TEST_SECRET + "x" * 20, algorithm="HS512"),
    "expired": lambda r, e: sign(e, exp=int(time.time()) - 120),
    "nbf in the future": lambda r, e: sign(e, nbf=int(time.time()) + 300),
    "iat in the future": lambda r, e: sign(e, iat=int(time.time()) + 300),
    "wrong iss": lambda r, e: sign(e, iss="evil"),
    "wrong aud": lambda r, e: sign(e, aud="other"),
    "missing aud": lambda r, e: sign(e, aud=None),
    "missing tenant": lambda r, e: sign(e, tenant=None),
    "unknown role": lambda r, e: sign(e, role="root"),
    "tampered": lambda r, e: _tampered(sign(e, role="reader")),
    "unknown kid": lambda r, e: sign(ec_key()),
    "hs256 with another secret": lambda r, e: jwt.encode(claims(), "o" * 48, algorithm="HS256"),
}


@pytest.mark.parametrize("attack", list(REFUSALS))
def test_every_refused_token_is_a_401_problem(
    client_with: ClientFactory,
    jwks_file: Path,
    rsa_private: rsa.RSAPrivateKey,
    ec_private: ec.EllipticCurvePrivateKey,
    attack: str,
) -> None:
    client = client_with(jwt_jwks_url=str(jwks_file))
    token = REFUSALS[attack](rsa_private, ec_private)
    body = assert_unauthenticated(client.get(DOCUMENTS, headers=bearer(token)))
    assert body["detail"].startswith("invalid token: ")
    assert token.split(".")[1] not in body["detail"]


def test_hs256_is_refused_when_the_deployment_allows_only_the_jwks(
    client_with: ClientFactory, jwks_file: Path
) -> None:
    client = client_with(jwt_jwks_url=str(jwks_file), jwt_algorithms=["RS256", "ES256"])
    token = jwt.encode(claims(), TEST_SECRET, algorithm="HS256")
    body = assert_unauthenticated(client.get(DOCUMENTS, headers=bearer(token)))
    assert body["detail"] == "invalid token: algorithm not allowed"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWxpY2U6c2VjcmV0"}, {"Authorization": "Bearer "}],
    ids=["none", "basic", "empty"],
)
def test_missing_bearer_token_is_a_401_problem(client: TestClient, headers: dict[str, str]) -> None:
    assert_unauthenticated(client.get(DOCUMENTS, headers=headers))


# -- roles and scopes -----------------------------------------------------------------


def test_pii_reader_needs_the_pii_read_scope(client_with: ClientFactory, auth: AuthFactory) -> None:
    client = client_with()
    plain = client.get("/probe/pii", headers=auth("acme", Role.ADMIN))
    assert plain.status_code == 403
    assert plain.json()["type"] == "forbidden"
    scoped = client.get("/probe/pii", headers=auth("acme", Role.READER, scopes=["pii:read"]))
    assert scoped.status_code == 200, scoped.text


def test_admin_needs_the_admin_role(client_with: ClientFactory, auth: AuthFactory) -> None:
    client = client_with()
    writer = client.get("/probe/admin", headers=auth("acme", Role.WRITER))
    assert writer.status_code == 403
    assert client.get("/probe/admin", headers=auth("acme", Role.ADMIN)).status_code == 200


def test_scope_from_an_identity_provider_token_reaches_the_principal(
    client_with: ClientFactory, jwks_file: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    client = client_with(jwt_jwks_url=str(jwks_file))
    token = sign(ec_private, role="reader", scp=["openid", "pii:read"])
    response = client.get("/probe/pii", headers=bearer(token))
    assert response.status_code == 200, response.text
