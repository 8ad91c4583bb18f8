"""A real S3 server for tests, and a fresh bucket per test.

The server is the one at ``SPINE_TEST_S3_ENDPOINT`` (credentials from
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``) when that is set, else a ``weed mini``
started under a temporary folder (about a second; stopping it takes about two).
Where none can be had the tests are skipped, except in CI (``CI=true``), where that
fails them: a CI run must never pass by not testing S3.

:func:`serve_s3` is the one place a server starts; it is the body of a session fixture,
so moving it into a conftest is one line.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from spine.adapters.blob.s3 import make_client
from spine.devservices.seaweed import SeaweedError, start_seaweed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ENDPOINT_VARIABLE = "SPINE_TEST_S3_ENDPOINT"


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    _client: S3Client | None = field(default=None, repr=False)

    def environment(self) -> dict[str, str]:
        """The AWS variables that point a Spine process (or ``from_url``) at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> S3Client:
        """An admin's client, made once (a client takes 0.1-0.3 s to make)."""
        if self._client is None:
            self._client = make_client(
                endpoint_url=self.endpoint_url,
                access_key=self.access_key,
                secret_key=self.secret_key,
                region="us-east-1",
            )
        return self._client


def serve_s3(root: Path) -> Iterator[S3Server]:
    """Yield a server for the session (stopped afterwards if started here), or skip the
    tests that need one; fail them under ``CI=true``."""
    endpoint = os.environ.get(ENDPOINT_VARIABLE)
    if endpoint:
        access_key = os.environ.get("AWS_ACCESS_KEY_ID")
        secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (access_key and secret_key):
            _unavailable(f"{ENDPOINT_VARIABLE} needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        yield S3Server(endpoint, access_key, secret_key)
        return
    try:
        running = start_seaweed(
            root, access_key="spine-test", secret_key=secrets.token_urlsafe(24), timeout=60
        )
    except SeaweedError as exc:
        _unavailable(f"cannot start weed mini: {exc}")
    try:
        yield S3Server(running.endpoint_url, running.access_key, running.secret_key)
    finally:
        # A throwaway server: no need to wait out weed's own shutdown (up to 10 s).
        running.stop(timeout=1)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs an S3 server: {reason}")
    pytest.skip(f"no S3 server: {reason}")


@contextmanager
def fresh_bucket(server: S3Server, prefix: str = "spine") -> Iterator[str]:
    """A new, uniquely named bucket for one test, as ``s3://bucket/prefix``; emptied and
    dropped afterwards (a shared ``SPINE_TEST_S3_ENDPOINT`` must not fill up)."""
    client = server.client()
    name = f"spine-test-{secrets.token_hex(8)}"
    client.create_bucket(Bucket=name)
    try:
        yield f"s3://{name}/{prefix}" if prefix else f"s3://{name}"
    finally:
        drop_bucket(client, name)


def drop_bucket(client: S3Client, name: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)
