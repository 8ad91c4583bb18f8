"""Signing keys, JWKS documents and a real JWKS host on a loopback port, for auth tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spine.adapters.auth.keys import SigningKey, public_jwk

ISSUER = "spine"
AUDIENCE = "spine"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [public_jwk(key) for key in keys]}


def kid_of(key: SigningKey) -> str:
    return public_jwk(key)["kid"]


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for tenant acme; an override of None removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "tenant": "acme",
        "role": "writer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(key: SigningKey, *, kid: str | None = None, **overrides: Any) -> str:
    """A token signed by ``key`` with its own algorithm, kid defaulting to its thumbprint."""
    jwk = public_jwk(key)
    return jwt.encode(
        claims(**overrides), key, algorithm=jwk["alg"], headers={"kid": kid or jwk["kid"]}
    )


class JwksServer:
    """A JWKS host: ``http.server`` in a thread on 127.0.0.1, counting the requests it gets.

    Change ``document`` to rotate keys, set ``status`` to make it answer errors, and
    ``stop()`` it for an outage (connections are then refused).
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.status = 200
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps(owner.document).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._stopped = False

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
