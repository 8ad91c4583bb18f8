"""Signing key pairs for RS256/ES256 tokens: make them, publish them as a JWKS, load them.

``spine keys generate`` writes a private key (PEM, mode 0600) and a JWKS with its public
half; Spine verifies with the JWKS, ``spine token create --private-key`` signs with the
PEM. The ``kid`` is the RFC 7638 thumbprint, so both sides derive the same one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PRIVATE_KEY_FILE = "private-key.pem"
JWKS_FILE = "jwks.json"
RSA_KEY_BITS = 3072
MIN_RSA_KEY_BITS = 2048
#: The members RFC 7638 hashes, by key type.
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def generate_private_key(algorithm: str) -> SigningKey:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise ValueError(f"unsupported algorithm {algorithm}; use ES256 or RS256")


def signing_algorithm(key: SigningKey) -> str:
    """The one algorithm a key signs with: the key decides, never a caller's string."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_KEY_BITS}")
        return "RS256"
    if isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError(f"EC key on {key.curve.name}; ES256 needs P-256")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    members = THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The public half as a JWK with ``kid``, ``alg`` and ``use``; no private member."""
    algorithm = signing_algorithm(key)
    if isinstance(key, rsa.RSAPrivateKey):
        full = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        full = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk = {name: str(full[name]) for name in THUMBPRINT_MEMBERS[str(full["kty"])]}
    return jwk | {"kid": thumbprint(jwk), "alg": algorithm, "use": "sig"}


def key_id(key: SigningKey) -> str:
    return public_jwk(key)["kid"]


def load_private_key(path: Path) -> SigningKey:
    """An unencrypted PEM private key, RSA or EC P-256. ``ValueError`` says what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}; use an RSA or EC P-256 key")
    signing_algorithm(key)
    return key


def write_key_pair(key: SigningKey, out_dir: Path) -> tuple[Path, Path]:
    """Write ``private-key.pem`` (0600) and ``jwks.json`` into ``out_dir``.

    Refuses (``FileExistsError``) if either exists: overwriting a key would invalidate
    every token signed with it, and a JWKS someone else's keys are in.
    """
    private_path, jwks_path = out_dir / PRIVATE_KEY_FILE, out_dir / JWKS_FILE
    for path in (private_path, jwks_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; choose another --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: a file that appeared since the check is not overwritten either, and the
    # key is never readable by others, not even for a moment.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    jwks = json.dumps({"keys": [public_jwk(key)]}, indent=2) + "\n"
    fd = os.open(jwks_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(jwks)
    return private_path, jwks_path
