"""The JWKS source against a real JWKS host (``http.server`` on 127.0.0.1) and files.

Time is a manual clock handed to the key set, so refresh and refetch intervals are
asserted exactly instead of slept through; the host, sockets and keys are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from spine.adapters.auth.jwks import MAX_JWKS_BYTES, JwksError, JwksKeySet, parse_jwks
from spine.errors import Unavailable
from support.jwks import JwksServer, ec_key, jwks_of, kid_of, rsa_key


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def old_key() -> ec.EllipticCurvePrivateKey:
    return ec_key()


@pytest.fixture(scope="module")
def new_key() -> ec.EllipticCurvePrivateKey:
    return ec_key()


def key_set(location: str, clock: ManualClock, **kwargs: float) -> JwksKeySet:
    options = {"refresh_seconds": 300.0, "min_refetch_seconds": 30.0} | kwargs
    return JwksKeySet(location, clock=clock, **options)


def test_keys_from_a_file_by_kid(tmp_path: Path, old_key: ec.EllipticCurvePrivateKey) -> None:
    rsa = rsa_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(old_key, rsa)))
    keys = key_set(str(path), ManualClock())
    ec_jwk, rsa_jwk = keys.get(kid_of(old_key)), keys.get(kid_of(rsa))
    assert ec_jwk is not None
    assert (ec_jwk.key_type, ec_jwk.algorithm_name) == ("EC", "ES256")
    assert rsa_jwk is not None
    assert (rsa_jwk.key_type, rsa_jwk.algorithm_name) == ("RSA", "RS256")
    assert keys.get("nobody") is None


def test_file_url_is_a_file(tmp_path: Path, old_key: ec.EllipticCurvePrivateKey) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(old_key)))
    assert key_set(path.as_uri(), ManualClock()).get(kid_of(old_key)) is not None


def test_a_fetched_set_is_cached_until_the_refresh_interval(
    old_key: ec.EllipticCurvePrivateKey,
) -> None:
    clock = ManualClock()
    with JwksServer(jwks_of(old_key)) as host:
        keys = key_set(host.url, clock)
        for _ in range(5):
            assert keys.get(kid_of(old_key)) is not None
        clock.now += 299
        keys.get(kid_of(old_key))
        assert host.requests == 1
        clock.now += 1
        keys.get(kid_of(old_key))
        assert host.requests == 2


def test_rotation_is_picked_up_at_the_next_refresh(
    old_key: ec.EllipticCurvePrivateKey, new_key: ec.EllipticCurvePrivateKey
) -> None:
    clock = ManualClock()
    with JwksServer(jwks_of(old_key)) as host:
        keys = key_set(host.url, clock)
        assert keys.get(kid_of(old_key)) is not None
        host.document = jwks_of(new_key)
        clock.now += 300
        assert keys.get(kid_of(new_key)) is not None
        assert keys.get(kid_of(old_key)) is None


def test_an_unknown_kid_refetches_at_most_once_per_interval(
    old_key: ec.EllipticCurvePrivateKey, new_key: ec.EllipticCurvePrivateKey
) -> None:
    clock = ManualClock()
    with JwksServer(jwks_of(old_key)) as host:
        keys = key_set(host.url, clock)
        keys.get(kid_of(old_key))
        clock.now += 30
        # A new kid before the refresh is due: the provider rotated early, fetch once.
        host.document = jwks_of(old_key, new_key)
        assert keys.get(kid_of(new_key)) is not None
        assert host.requests == 2
        # A flood of garbage kids costs nothing more until the interval has passed.
        for n in range(100):
            assert keys.get(f"garbage-{n}") is None
        clock.now += 29
        assert keys.get("garbage-again") is None
        assert host.requests == 2
        clock.now += 1
        assert keys.get("garbage-after-interval") is None
        assert host.requests == 3


def test_an_outage_keeps_the_last_good_keys(old_key: ec.EllipticCurvePrivateKey) -> None:
    clock = ManualClock()
    with JwksServer(jwks_of(old_key)) as host:
        keys = key_set(host.url, clock)
        assert keys.get(kid_of(old_key)) is not None
        host.stop()  # connections are refused from now on
        clock.now += 10_000
        assert keys.get(kid_of(old_key)) is not None
        assert keys.get("unknown") is None


def test_errors_from_the_host_keep_the_keys_and_are_not_retried_in_a_loop(
    old_key: ec.EllipticCurvePrivateKey,
) -> None:
    clock = ManualClock()
    with JwksServer(jwks_of(old_key)) as host:
        keys = key_set(host.url, clock)
        keys.get(kid_of(old_key))
        host.status = 503
        clock.now += 300
        for _ in range(20):
            assert keys.get(kid_of(old_key)) is not None
            assert keys.get("garbage") is None
        assert host.requests == 2
        host.status = 200
        clock.now += 30
        keys.get(kid_of(old_key))
        assert host.requests == 3


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"keys": []}),
        json.dumps({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}),
        json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad", "kid": "k"}]}),
    ],
)
def test_a_broken_set_does_not_replace_the_good_one(
    tmp_path: Path, old_key: ec.EllipticCurvePrivateKey, document: str
) -> None:
    clock = ManualClock()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(old_key)))
    keys = key_set(str(path), clock)
    assert keys.get(kid_of(old_key)) is not None
    path.write_text(document)
    clock.now += 300
    assert keys.get(kid_of(old_key)) is not None


def test_without_any_good_set_tokens_cannot_be_checked(tmp_path: Path) -> None:
    keys = key_set(str(tmp_path / "missing.json"), ManualClock())
    with pytest.raises(Unavailable) as info:
        keys.get("any")
    assert info.value.retry_after == 30


def test_a_host_down_at_start_is_tried_again_after_the_interval(
    old_key: ec.EllipticCurvePrivateKey,
) -> None:
    clock = ManualClock()
    with JwksServer(jwks_of(old_key)) as host:
        host.status = 500
        keys = key_set(host.url, clock)
        with pytest.raises(Unavailable):
            keys.get(kid_of(old_key))
        with pytest.raises(Unavailable):
            keys.get(kid_of(old_key))
        assert host.requests == 1
        host.status = 200
        clock.now += 30
        assert keys.get(kid_of(old_key)) is not None


def test_only_rsa_and_ec_signing_keys_with_a_kid_are_loaded(
    old_key: ec.EllipticCurvePrivateKey,
) -> None:
    good = jwks_of(old_key)["keys"][0]
    enc = good | {"kid": "for-encryption", "use": "enc"}
    no_kid = {name: value for name, value in good.items() if name != "kid"}
    oct_key = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}
    wrong_alg = good | {"kid": "wrong-alg", "alg": "RS256"}
    body = json.dumps({"keys": [enc, no_kid, oct_key, wrong_alg, good]}).encode()
    assert list(parse_jwks(body)) == [good["kid"]]


def test_an_oversized_set_is_refused(tmp_path: Path, old_key: ec.EllipticCurvePrivateKey) -> None:
    path = tmp_path / "jwks.json"
    document = jwks_of(old_key) | {"padding": "x" * MAX_JWKS_BYTES}
    path.write_text(json.dumps(document))
    with pytest.raises(Unavailable):
        key_set(str(path), ManualClock()).get(kid_of(old_key))


def test_redirects_are_not_followed(old_key: ec.EllipticCurvePrivateKey) -> None:
    with JwksServer(jwks_of(old_key)) as host:
        host.status = 302  # with a body of keys: they must not be used
        with pytest.raises(Unavailable):
            key_set(host.url, ManualClock()).get(kid_of(old_key))


def test_parse_refuses_a_set_without_usable_keys() -> None:
    with pytest.raises(JwksError):
        parse_jwks(b'{"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}')


@pytest.mark.parametrize("location", ["ftp://host/jwks.json", "gopher://x"])
def test_only_files_and_http_urls_are_sources(location: str) -> None:
    with pytest.raises(ValueError, match="file path or an http"):
        JwksKeySet(location, refresh_seconds=60)


def test_default_refetch_interval_is_never_longer_than_the_refresh(
    tmp_path: Path, old_key: ec.EllipticCurvePrivateKey
) -> None:
    clock = ManualClock()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(old_key)))
    keys = JwksKeySet(str(path), refresh_seconds=5, clock=clock)
    keys.get(kid_of(old_key))
    path.write_text(json.dumps(jwks_of(ec_key())))
    clock.now += 5
    assert keys.get(kid_of(old_key)) is None
