"""Signing key pairs: RFC 7638 kids, files that keep the private key private."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spine.adapters.auth.keys import (
    generate_private_key,
    load_private_key,
    public_jwk,
    signing_algorithm,
    thumbprint,
    write_key_pair,
)


def test_thumbprint_matches_the_rfc_7638_example() -> None:
    # RFC 7638 section 3.1: this RSA key's thumbprint is given in the RFC.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
        "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
        "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk"
        "t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqD"
        "Kgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(("alg", "kty"), [("ES256", "EC"), ("RS256", "RSA")])
def test_public_jwk_has_kid_alg_use_and_no_private_member(alg: str, kty: str) -> None:
    key = generate_private_key(alg)
    jwk = public_jwk(key)
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == (kty, alg, "sig")
    assert jwk["kid"] == thumbprint(jwk)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    assert signing_algorithm(key) == alg


def test_key_pair_files(tmp_path: Path) -> None:
    key = generate_private_key("ES256")
    private_path, jwks_path = write_key_pair(key, tmp_path / "keys")
    assert private_path.stat().st_mode & 0o777 == 0o600
    loaded = load_private_key(private_path)
    assert public_jwk(loaded) == public_jwk(key)
    assert json.loads(jwks_path.read_text()) == {"keys": [public_jwk(key)]}


def test_key_pair_is_never_overwritten(tmp_path: Path) -> None:
    first = generate_private_key("ES256")
    private_path, _ = write_key_pair(first, tmp_path)
    before = private_path.read_bytes()
    with pytest.raises(FileExistsError):
        write_key_pair(generate_private_key("ES256"), tmp_path)
    assert private_path.read_bytes() == before


def test_only_p256_and_big_enough_rsa_keys_sign(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="P-256"):
        signing_algorithm(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="2048"):
        signing_algorithm(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 -- the weak key under test
    with pytest.raises(ValueError, match="ES256 or RS256"):
        generate_private_key("HS256")


def test_loading_refuses_what_is_not_a_usable_private_key(tmp_path: Path) -> None:
    public_pem = tmp_path / "public.pem"
    public_pem.write_bytes(
        generate_private_key("ES256")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        load_private_key(public_pem)
    with pytest.raises(ValueError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")
