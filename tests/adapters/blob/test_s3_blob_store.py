"""S3BlobStore beyond the port's contract: its URL and the AWS variables, its keys, and
how it fails (a store that refuses connections, hangs, is overloaded, or refuses the
credentials). The real server is the one of ``support.s3``; the failures are made on
loopback, so each takes seconds, not the timeouts of a real outage."""

from __future__ import annotations

import hashlib
import io
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import support.s3
from spine.adapters.blob.s3 import S3BlobStore, make_client
from spine.devservices import seaweed
from spine.errors import Unavailable
from support.s3 import S3Server, fresh_bucket, serve_s3

DATA = b"%PDF-1.7\n" + bytes(range(256)) * 64
SECRET = "not-the-real-secret-0123456789"


@pytest.fixture
def bucket_url(s3_server: S3Server) -> Iterator[str]:
    with fresh_bucket(s3_server) as url:
        yield url


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The AWS variables of a Spine process pointed at the test server, and no others."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    return s3_server


def store_at(url: str, endpoint: str, *, secret: str = SECRET, **client: float) -> S3BlobStore:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return S3BlobStore(
        make_client(
            endpoint_url=endpoint,
            access_key="spine-test",
            secret_key=secret,
            region="us-east-1",
            **client,  # type: ignore[arg-type]
        ),
        bucket,
        prefix,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connections to it are refused


def assert_safe_unavailable(error: Unavailable, *secrets: str) -> None:
    assert error.status == 503
    assert error.retry_after
    for secret in secrets:
        assert secret not in error.message


# -- The URL, the AWS variables, the keys ----------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_from_url_takes_endpoint_and_credentials_from_the_aws_variables(bucket_url: str) -> None:
    store = S3BlobStore.from_url(bucket_url)

    stored = store.put("acme", io.BytesIO(DATA))

    assert store.get("acme", stored.sha256) == DATA
    store.ping()


@pytest.mark.usefixtures("aws_env")
def test_keys_are_prefix_tenant_key_and_sha_and_never_hold_the_tenant_id(
    s3_server: S3Server, bucket_url: str
) -> None:
    store = S3BlobStore.from_url(bucket_url)
    tenant = "acme-corp-tenant"

    stored = store.put(tenant, io.BytesIO(DATA))

    listing = s3_server.client().list_objects_v2(Bucket=store.bucket)
    [key] = [item["Key"] for item in listing["Contents"]]
    sha = stored.sha256
    assert key == f"spine/{hashlib.sha256(tenant.encode()).hexdigest()[:32]}/{sha[:2]}/{sha}"
    assert "acme" not in key
    head = s3_server.client().head_object(Bucket=store.bucket, Key=key)
    assert "acme" not in str(head["Metadata"])


@pytest.mark.usefixtures("aws_env")
def test_without_a_prefix_keys_start_at_the_bucket_root(
    s3_server: S3Server, bucket_url: str
) -> None:
    store = S3BlobStore.from_url(bucket_url.rsplit("/", 1)[0])

    stored = store.put("acme", io.BytesIO(DATA))

    listing = s3_server.client().list_objects_v2(Bucket=store.bucket)
    assert [item["Key"] for item in listing["Contents"]] == [
        f"{store.tenant_key('acme')}/{stored.sha256[:2]}/{stored.sha256}"
    ]
    assert [entry.name for entry in store.list_blobs()] == [stored.sha256]


@pytest.mark.parametrize("url", ["file:///srv/blobs", "s3:///no-bucket", "s3:bucket"])
def test_from_url_refuses_anything_but_an_s3_bucket_url(url: str) -> None:
    with pytest.raises(ValueError, match=r"s3://bucket"):
        S3BlobStore.from_url(url)


def test_aws_region_counts_though_botocore_reads_only_aws_default_region(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert make_client().meta.region_name == "us-east-1"

    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert make_client().meta.region_name == "eu-west-3"


@pytest.mark.usefixtures("aws_env")
def test_objects_of_another_shape_are_never_listed_so_never_swept(
    s3_server: S3Server, bucket_url: str
) -> None:
    store = S3BlobStore.from_url(bucket_url)
    ours = store.put("acme", io.BytesIO(DATA)).sha256
    client = s3_server.client()
    tenant_key = store.tenant_key("acme")
    for foreign in (
        "spine/README",
        f"spine/{tenant_key}/{ours[:2]}/{ours}.bak",
        f"spine/{tenant_key}/00/{ours}",  # the wrong fan-out folder
        f"other/{tenant_key}/{ours[:2]}/{ours}",  # outside the prefix
    ):
        client.put_object(Bucket=store.bucket, Key=foreign, Body=b"not spine's")

    assert [(entry.tenant_key, entry.name) for entry in store.list_blobs()] == [(tenant_key, ours)]


@pytest.mark.usefixtures("aws_env")
def test_uploads_are_spooled_without_a_name_so_nothing_outlives_them(
    bucket_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    store = S3BlobStore.from_url(bucket_url, spool_dir=spool)

    store.put("acme", io.BytesIO(bytes(3 * 1024 * 1024)))  # larger than the memory spool

    assert list(spool.iterdir()) == []


# -- Failures -------------------------------------------------------------------------------


def test_a_store_that_refuses_connections_is_unavailable_within_seconds() -> None:
    port = closed_port()
    store = store_at("s3://spine-bucket/spine", f"http://127.0.0.1:{port}")

    for attempt in (store.ping, lambda: store.put("acme", io.BytesIO(DATA))):
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            attempt()
        # Three attempts with jittered backoff of under 1 s, then under 2 s.
        assert time.monotonic() - started < 6
        assert_safe_unavailable(raised.value, str(port), "127.0.0.1", SECRET)


def test_a_store_that_accepts_but_never_answers_times_out_as_unavailable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nobody ever reads them
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = store_at("s3://spine-bucket", endpoint, read_timeout=0.5, max_attempts=2)

        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            store.get("acme", hashlib.sha256(DATA).hexdigest())

    assert time.monotonic() - started < 5
    assert_safe_unavailable(raised.value, endpoint, SECRET)


class SlowDownHandler(BaseHTTPRequestHandler):
    """An S3 that is overloaded: 503 SlowDown to every request, counted."""

    requests = 0

    def _slow_down(self) -> None:
        type(self).requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your rate</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _slow_down

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def overloaded_endpoint() -> Iterator[str]:
    SlowDownHandler.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowDownHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_throttling_is_retried_a_few_times_then_unavailable(overloaded_endpoint: str) -> None:
    store = store_at("s3://spine-bucket", overloaded_endpoint)

    with pytest.raises(Unavailable) as raised:
        store.get("acme", hashlib.sha256(DATA).hexdigest())

    assert SlowDownHandler.requests == 3  # the standard retry mode, max_attempts=3
    assert "SlowDown" in raised.value.message
    assert_safe_unavailable(raised.value, overloaded_endpoint, SECRET)


def test_wrong_credentials_are_a_clear_error_without_the_secret(
    s3_server: S3Server, bucket_url: str
) -> None:
    store = store_at(bucket_url, s3_server.endpoint_url, secret="wrong-" + SECRET)

    for attempt in (store.ping, lambda: store.put("acme", io.BytesIO(DATA))):
        with pytest.raises(Unavailable, match="refused access") as raised:
            attempt()
        assert "credentials" in raised.value.message
        assert_safe_unavailable(raised.value, SECRET, s3_server.secret_key)


@pytest.mark.usefixtures("aws_env")
def test_a_missing_bucket_is_named_as_such() -> None:
    missing = f"spine-test-missing-{secrets.token_hex(6)}"
    store = S3BlobStore.from_url(f"s3://{missing}/spine")

    for attempt in (store.ping, lambda: store.put("acme", io.BytesIO(DATA))):
        with pytest.raises(Unavailable, match="bucket does not exist") as raised:
            attempt()
        assert_safe_unavailable(raised.value, missing)


# -- The test server itself -------------------------------------------------------------


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_server_that_cannot_start_fails_the_tests_in_ci_and_skips_them_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise seaweed.SeaweedError("weed mini exited with code 1")

    monkeypatch.delenv("SPINE_TEST_S3_ENDPOINT", raising=False)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(support.s3, "start_seaweed", broken)

    with pytest.raises(outcome, match="weed mini exited"):
        next(serve_s3(tmp_path))


def test_weed_that_exits_at_once_is_reported_with_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'F1129 bad flag: -nonsense'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(seaweed, "weed_binary", lambda: fake)

    started = time.monotonic()
    with pytest.raises(seaweed.SeaweedError, match=r"(?s)code 3.*bad flag") as raised:
        seaweed.start_seaweed(tmp_path / "server", access_key="k", secret_key="s3cr3t-value")

    assert time.monotonic() - started < 10
    assert "s3cr3t-value" not in str(raised.value)
