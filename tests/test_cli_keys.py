"""``spine keys generate`` and ``spine token create --private-key``: the key pair a
deployment makes for itself, and tokens from it that a Spine on that JWKS accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import Result
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import TEST_SECRET
from spine.adapters.auth.keys import thumbprint
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.api.app import create_app
from spine.cli import app
from spine.service.bootstrap import bootstrap
from spine.settings import Settings


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SPINE_DATA_DIR": str(tmp_path / "data"), "SPINE_JWT_SECRET": TEST_SECRET}


def spine(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def ok(env: dict[str, str], *args: str) -> Result:
    result = spine(env, *args)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def failed(env: dict[str, str], *args: str) -> str:
    """The one line a failing command prints."""
    result = spine(env, *args)
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spine: ")
    return lines[0]


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def spine_on_jwks(tmp_path: Path, embedder: MiniLMOnnxEmbedder) -> Iterator[Any]:
    """``spine_on_jwks(jwks_path)`` -> a TestClient of an app that trusts only that JWKS."""
    clients: list[TestClient] = []
    closers: list[Any] = []

    def make(jwks_path: Path) -> TestClient:
        settings = Settings(
            data_dir=tmp_path / f"server-{len(clients)}",
            jwt_jwks_url=str(jwks_path),
            jwt_algorithms=["RS256", "ES256"],
            workers=0,
        )
        services = bootstrap(settings, embedder=embedder)
        closers.append(services.close)
        client = TestClient(create_app(services=services), raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    for close in closers:
        close()


@pytest.mark.parametrize(("alg", "kty"), [("ES256", "EC"), ("RS256", "RSA")])
def test_keys_generate_writes_a_private_pem_and_a_public_jwks(
    env: dict[str, str], tmp_path: Path, alg: str, kty: str
) -> None:
    out = tmp_path / "keys"
    result = ok(env, "keys", "generate", "--alg", alg, "--out", str(out))
    private, jwks_path = out / "private-key.pem", out / "jwks.json"
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    (key,) = json.loads(jwks_path.read_text())["keys"]
    assert (key["kty"], key["alg"], key["use"]) == (kty, alg, "sig")
    assert key["kid"] == thumbprint(key)
    assert "d" not in key
    assert f"export SPINE_JWT_JWKS_URL={jwks_path.resolve()}" in result.stdout


def test_keys_generate_refuses_to_overwrite(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "keys", "generate", "--out", str(tmp_path))
    before = (tmp_path / "private-key.pem").read_bytes()
    line = failed(env, "keys", "generate", "--out", str(tmp_path))
    assert "exists" in line
    assert (tmp_path / "private-key.pem").read_bytes() == before


def test_keys_generate_refuses_other_algorithms(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "keys"
    assert "ES256 or RS256" in failed(env, "keys", "generate", "--alg", "HS256", "--out", str(out))
    assert not out.exists()


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_a_token_signed_with_a_generated_key_is_accepted_by_spine_on_its_jwks(
    env: dict[str, str], tmp_path: Path, spine_on_jwks: Any, alg: str
) -> None:
    ok(env, "keys", "generate", "--alg", alg, "--out", str(tmp_path / "keys"))
    ok(env, "keys", "generate", "--alg", alg, "--out", str(tmp_path / "other"))
    client = spine_on_jwks(tmp_path / "keys" / "jwks.json")

    def token(folder: str) -> str:
        private_key = str(tmp_path / folder / "private-key.pem")
        args = ["token", "create", "--tenant", "acme", "--role", "reader"]
        return ok(env, *args, "--private-key", private_key).stdout.strip()

    mine = token("keys")
    header, _ = unverified(mine)
    assert header["alg"] == alg
    response = client.get("/v1/documents", headers={"Authorization": f"Bearer {mine}"})
    assert response.status_code == 200, response.text
    stranger = client.get("/v1/documents", headers={"Authorization": f"Bearer {token('other')}"})
    assert stranger.status_code == 401


def test_token_create_carries_scopes_audience_and_kid(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "keys", "generate", "--out", str(tmp_path))
    result = ok(
        env,
        *("token", "create", "--tenant", "acme", "--scope", "pii:read"),
        *("--audience", "search-api", "--kid", "key-2030"),
        *("--private-key", str(tmp_path / "private-key.pem")),
    )
    header, claims = unverified(result.stdout.strip())
    assert header["kid"] == "key-2030"
    assert (claims["aud"], claims["scope"], claims["tenant"]) == ("search-api", "pii:read", "acme")


def test_hs256_token_takes_its_audience_from_the_settings(env: dict[str, str]) -> None:
    result = ok(env | {"SPINE_JWT_AUDIENCE": "internal"}, "token", "create", "--tenant", "t")
    claims = jwt.decode(
        result.stdout.strip(), TEST_SECRET, algorithms=["HS256"], audience="internal"
    )
    assert "scope" not in claims
    assert "kid" not in jwt.get_unverified_header(result.stdout.strip())


def test_token_create_refuses_unknown_scopes(env: dict[str, str]) -> None:
    result = spine(env, "token", "create", "--tenant", "t", "--scope", "pii:write")
    assert result.exit_code == 2
    assert result.stdout == ""


def test_token_create_with_a_missing_key_file_fails_in_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.pem"
    line = failed(env, "token", "create", "--tenant", "t", "--private-key", str(missing))
    assert "cannot read" in line


def test_token_create_refuses_a_kid_without_a_private_key(env: dict[str, str]) -> None:
    assert "--private-key" in failed(env, "token", "create", "--tenant", "t", "--kid", "k")
