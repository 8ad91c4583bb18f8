"""Public signing keys from a JWKS: a file, or an http(s) URL of an identity provider.

The set is cached for ``refresh_seconds``. A token naming a ``kid`` the set lacks (the
provider rotated its keys) triggers a refetch, but at most once per
``min_refetch_seconds``: anyone can send garbage kids, and they must not turn Spine into
a load generator against the JWKS host. A failed fetch keeps the last good set, so a
provider outage does not log everybody out.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import structlog
from jwt import PyJWK, PyJWKSet, PyJWTError

from spine.errors import Unavailable

log = structlog.get_logger("spine.auth")

#: Refetches caused by unknown kids are this far apart at most (or refresh_seconds if shorter).
MIN_REFETCH_SECONDS = 30.0
#: A JWKS is a few kilobytes; anything this big is not one, and is not read whole.
MAX_JWKS_BYTES = 1024 * 1024
#: Only asymmetric keys: a symmetric ("oct") key published in a JWKS would let anyone who
#: can read the set sign tokens.
SIGNING_KEY_TYPES = frozenset({"RSA", "EC"})


class JwksError(Exception):
    """The JWKS could not be read or holds no usable signing key."""


def _fetch_url(url: str, timeout_seconds: float) -> bytes:
    # No redirects: the configured host is the one trusted to publish keys.
    with (
        httpx.Client(timeout=timeout_seconds, follow_redirects=False) as client,
        client.stream("GET", url, headers={"Accept": "application/json"}) as response,
    ):
        if response.status_code != 200:
            raise JwksError(f"HTTP {response.status_code}")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise JwksError("JWKS too large")
        return bytes(body)


def _fetch_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        body = handle.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError("JWKS too large")
    return body


def parse_jwks(body: bytes) -> dict[str, PyJWK]:
    """Signing keys by kid. Keys without a kid, for encryption, symmetric or of a type
    PyJWT cannot use are left out; a set with none left is an error."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise JwksError("JWKS is not a JSON object")
        key_set = PyJWKSet.from_dict(document)
    except (ValueError, PyJWTError) as exc:
        raise JwksError(f"unusable JWKS ({type(exc).__name__})") from exc
    keys: dict[str, PyJWK] = {}
    for key in key_set:
        kid = key.key_id
        if not isinstance(kid, str) or not kid or key.key_type not in SIGNING_KEY_TYPES:
            continue
        if key.public_key_use not in (None, "sig"):
            continue
        # Duplicate kids make the choice of key ambiguous: the first one published wins.
        keys.setdefault(kid, key)
    if not keys:
        raise JwksError("JWKS holds no RSA or EC signing key with a kid")
    return keys


def _describe(location: str) -> str:
    """The location without query or credentials, for logs."""
    parts = urlsplit(location)
    if parts.scheme in ("http", "https"):
        netloc = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=netloc, query="", fragment="").geturl()
    return location


class JwksKeySet:
    """Thread-safe cache of one JWKS location's signing keys."""

    def __init__(
        self,
        location: str,
        *,
        refresh_seconds: float,
        min_refetch_seconds: float | None = None,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_lookup(hit)`` is told whether each lookup was served without a fetch."""
        self._on_lookup = on_lookup or (lambda _hit: None)
        scheme = urlsplit(location).scheme.lower()
        if scheme in ("http", "https"):
            self._fetch: Callable[[], bytes] = lambda: _fetch_url(location, timeout_seconds)
        elif scheme == "file":
            path = Path(urlsplit(location).path)
            self._fetch = lambda: _fetch_file(path)
        elif "://" in location:
            raise ValueError(f"JWKS location must be a file path or an http(s) URL: {scheme}://")
        else:
            self._fetch = lambda: _fetch_file(Path(location))
        if refresh_seconds <= 0:
            raise ValueError("refresh_seconds must be positive")
        self.location = _describe(location)
        self._refresh_seconds = refresh_seconds
        self._min_refetch_seconds = (
            min(MIN_REFETCH_SECONDS, refresh_seconds)
            if min_refetch_seconds is None
            else min_refetch_seconds
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] | None = None
        self._loaded_at = 0.0
        self._attempted_at: float | None = None

    def get(self, kid: str) -> PyJWK | None:
        """The key published under ``kid``, or None if the current set has none.

        Raises ``Unavailable`` while no set has ever been loaded (the source is down or
        broken since start-up): without keys no token can be checked.
        """
        with self._lock:
            now = self._clock()
            hit = not (self._keys is None or now - self._loaded_at >= self._refresh_seconds)
            if not hit:
                self._try_load(now)
            key = self._keys.get(kid) if self._keys is not None else None
            self._on_lookup(hit and key is not None)
            if key is None:
                # The provider may have rotated to a key we have not seen yet.
                self._try_load(now)
                key = self._keys.get(kid) if self._keys is not None else None
            if self._keys is None:
                retry_after = max(1, round(self._min_refetch_seconds))
                raise Unavailable("signing keys are unavailable", retry_after=retry_after)
            return key

    def _try_load(self, now: float) -> None:
        """Fetch the set unless a fetch was attempted within ``min_refetch_seconds``; on
        failure keep the set we have."""
        if self._attempted_at is not None and now - self._attempted_at < self._min_refetch_seconds:
            return
        self._attempted_at = now
        try:
            keys = parse_jwks(self._fetch())
        except (JwksError, OSError, httpx.HTTPError) as exc:
            log.warning(
                "jwks.fetch_failed",
                source=self.location,
                error=type(exc).__name__,
                detail=str(exc) if isinstance(exc, JwksError) else None,
                keeping_cached=self._keys is not None,
            )
            return
        if self._keys is None or keys.keys() != self._keys.keys():
            log.info("jwks.loaded", source=self.location, kids=sorted(keys))
        self._keys = keys
        self._loaded_at = now
