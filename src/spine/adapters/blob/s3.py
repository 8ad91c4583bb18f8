"""Blobs in an S3 bucket: ``<prefix>/<tenant key>/<sha[:2]>/<sha>``, for the scale-out
topology, where every API process and worker must see the same bytes.

Any S3-compatible store works (AWS, SeaweedFS, MinIO, ...). The URL names only the
bucket and prefix (``s3://bucket/optional/prefix``); the endpoint, credentials and region
come from the usual AWS variables, read by boto3 itself (``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``), so no secret ever sits in a Spine setting or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, NoReturn
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
)

from spine.adapters.blob.streams import StreamFailed, read_block
from spine.errors import NotFound, PayloadTooLarge, Unavailable
from spine.ports import BlobEntry, StoredBlob

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Uploads up to this size are spooled in memory, larger ones in an anonymous temp file.
_MEMORY_SPOOL = 1024 * 1024
#: The largest object one PUT may create; above it S3 needs a multipart upload.
SINGLE_PUT_LIMIT = 5 * 1024**3
#: What a 503 from an unreachable store asks clients to wait.
RETRY_AFTER_SECONDS = 5
#: User metadata with the time of the last write, to the microsecond (LastModified has
#: whole seconds only, too coarse for the grace of :meth:`S3BlobStore.delete`).
_WRITTEN_AT = "spine-written-at"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TENANT_KEY = re.compile(r"^[0-9a-f]{32}$")
#: Error codes of a store that is there but will not let us in.
_DENIED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}
_NO_BUCKET = {"NoSuchBucket"}
_NO_KEY = {"404", "NoSuchKey", "NotFound"}
#: What a store call raises: the store's answers, and botocore's own failures (no
#: connection, timeouts, no credentials). Parameter errors among the latter are bugs.
_STORE_ERRORS = (ClientError, BotoCoreError)


def make_client(
    *,
    connect_timeout: float = 2.0,
    read_timeout: float = 20.0,
    max_attempts: int = 3,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str | None = None,
) -> S3Client:
    """An S3 client with bounded waits: ``None`` arguments come from the AWS variables.

    Standard retry mode retries connection errors, timeouts, 5xx and throttling with
    jittered backoff (under 1 s, then under 2 s), so an unreachable store fails within a
    few seconds instead of hanging a request; the store answers 503 after that.
    """
    # A session of our own: boto3's default session is shared and not thread-safe.
    session = boto3.session.Session()
    # botocore reads AWS_DEFAULT_REGION but not AWS_REGION, which other SDKs prefer.
    region = region or os.environ.get("AWS_REGION") or session.region_name or "us-east-1"
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return session.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


class S3BlobStore:
    """Content-addressed, per-tenant key prefixes in one bucket.

    A PUT is atomic in S3: readers see the whole object or none. The upload is spooled
    to an anonymous temp file first (in memory when small), because its SHA-256 -- the
    final key -- is known only after the last byte, the size limit must hold before
    anything is sent, and the caller's stream may break halfway. Only a complete,
    in-limit upload is then PUT under its final key, with the SHA-256 as a checksum the
    store verifies. A crash while spooling leaves nothing: the temp file has no name, so
    there are no staging objects for the sweeper. One client per store (clients are
    thread-safe; sessions are not).
    """

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", *, spool_dir: Path | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.spool_dir = spool_dir

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 20.0,
        max_attempts: int = 3,
        spool_dir: Path | None = None,
    ) -> S3BlobStore:
        """``s3://bucket/optional/prefix``; the endpoint and credentials come from the
        AWS variables. No request is made here: :meth:`ping` checks the bucket."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError("an S3 blob store URL looks like s3://bucket/optional/prefix")
        client = make_client(
            connect_timeout=connect_timeout, read_timeout=read_timeout, max_attempts=max_attempts
        )
        return cls(client, parsed.netloc, parsed.path, spool_dir=spool_dir)

    def tenant_key(self, tenant_id: str) -> str:
        # The same key as LocalBlobStore's, so blobs can move between the two stores;
        # a tenant id (anything a token says) never becomes part of a key.
        return hashlib.sha256(tenant_id.encode()).hexdigest()[:32]

    def _key(self, tenant_key: str, sha256: str) -> str:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        parts = (self.prefix, tenant_key, sha256[:2], sha256)
        return "/".join(part for part in parts if part)

    def put(self, tenant_id: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredBlob:
        limit = min(max_bytes, SINGLE_PUT_LIMIT) if max_bytes is not None else SINGLE_PUT_LIMIT
        digest = hashlib.sha256()
        size = 0
        spool_dir = str(self.spool_dir) if self.spool_dir else None
        with tempfile.SpooledTemporaryFile(max_size=_MEMORY_SPOOL, dir=spool_dir) as spool:
            try:
                while block := read_block(stream):
                    digest.update(block)
                    size += len(block)
                    if size > limit:
                        raise PayloadTooLarge(f"the file exceeds the limit of {limit} bytes")
                    spool.write(block)
            except StreamFailed as failed:
                # The caller's stream broke (a client gone mid-upload): its error, as it was.
                raise failed.error from None
            except OSError as exc:
                # The spool's disk is full or gone: this process cannot take uploads now.
                raise Unavailable(
                    f"the blob store cannot spool the upload ({type(exc).__name__})",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from exc
            sha256 = digest.hexdigest()
            key = self._key(self.tenant_key(tenant_id), sha256)
            try:
                if not self._touch(key):
                    spool.seek(0)
                    self._upload(key, spool, digest.digest())
            except _STORE_ERRORS as exc:
                _raise_unavailable(exc, "write")
        return StoredBlob(sha256=sha256, size_bytes=size)

    def _touch(self, key: str) -> bool:
        """Refresh the write time of an existing object; False if there is none.

        Same key, same bytes, so nothing is uploaded again. But the object counts as
        written now: :meth:`delete`'s grace must keep bytes an upload in flight relies
        on, exactly as a rewrite would. A copy onto itself with new metadata does that
        on the server. (In a versioned bucket every touch keeps a noncurrent version:
        expire those with a lifecycle rule.)
        """
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NO_KEY:
                return False
            raise
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata={_WRITTEN_AT: _now()},
            )
        except ClientError as exc:
            if _code(exc) in _NO_KEY:
                return False  # deleted since the HEAD: upload it after all
            raise
        return True

    def _upload(self, key: str, body: IO[bytes], sha256: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            # The store refuses the PUT unless the bytes it got hash to the key's name.
            ChecksumSHA256=base64.b64encode(sha256).decode(),
            Metadata={_WRITTEN_AT: _now()},
        )

    def get(self, tenant_id: str, sha256: str) -> bytes:
        key = self._key(self.tenant_key(tenant_id), sha256)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except ClientError as exc:
            if _code(exc) in _NO_KEY:
                raise NotFound(f"blob {sha256} not found") from exc
            _raise_unavailable(exc, "read")
        except BotoCoreError as exc:
            _raise_unavailable(exc, "read")

    def delete(self, tenant_id: str, sha256: str, *, unless_newer_than: float = 0.0) -> bool:
        """Remove a blob; with ``unless_newer_than`` seconds, keep one written that recently.

        The grace period closes a race with uploads (see ``LocalBlobStore.delete``): a
        blob (re)written that recently may be about to gain a row, so it stays for the
        sweeper. Between the HEAD and the DELETE a rewrite can still slip in; S3 has no
        portable conditional delete on a write time, and the window is one round trip.
        """
        key = self._key(self.tenant_key(tenant_id), sha256)
        try:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _NO_KEY:
                    return False
                raise
            written_at = _written_at(head["Metadata"], head["LastModified"].timestamp())
            if unless_newer_than and time.time() - written_at < unless_newer_than:
                return False
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except _STORE_ERRORS as exc:
            _raise_unavailable(exc, "delete from")
        return True

    def list_blobs(self) -> Iterator[BlobEntry]:
        """Every stored blob under the prefix; keys of any other shape are not ours and
        are left alone. There are no temporary objects (see the class docstring)."""
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    parts = item["Key"][len(root) :].split("/")
                    if (
                        len(parts) == 3
                        and _TENANT_KEY.match(parts[0])
                        and _SHA256.match(parts[2])
                        and parts[2][:2] == parts[1]
                    ):
                        yield BlobEntry(parts[0], parts[2], item["LastModified"].timestamp())
        except _STORE_ERRORS as exc:
            _raise_unavailable(exc, "list")

    def remove(self, entry: BlobEntry) -> None:
        if entry.temporary or not _TENANT_KEY.match(entry.tenant_key):
            return  # not an object of this store: it makes none of either
        try:
            self.client.delete_object(
                Bucket=self.bucket, Key=self._key(entry.tenant_key, entry.name)
            )
        except _STORE_ERRORS as exc:
            _raise_unavailable(exc, "delete from")

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except _STORE_ERRORS as exc:
            _raise_unavailable(exc, "reach")


def _now() -> str:
    return f"{time.time():.6f}"


def _written_at(metadata: dict[str, str], last_modified: float) -> float:
    """The time of the last write: ours to the microsecond, else the store's second."""
    try:
        return float(metadata[_WRITTEN_AT])
    except (KeyError, ValueError):
        return last_modified


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _raise_unavailable(exc: Exception, action: str) -> NoReturn:
    """The store's failure as a 503. Messages name the kind of failure, never the
    endpoint, bucket or keys: callers see them, and the chained cause keeps the rest
    for the logs."""
    if isinstance(exc, ParamValidationError):
        raise exc  # a bug of ours, not the store's failure
    if isinstance(exc, NoCredentialsError):
        message = "the blob store has no credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    elif isinstance(exc, ClientError):
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _NO_BUCKET or (action == "reach" and status == 404):
            message = "the blob store's bucket does not exist"
        elif code in _DENIED or status == 403:
            message = (
                f"the blob store refused access ({code or status}): "
                "check the credentials and the bucket's policy"
            )
        else:
            message = f"cannot {action} the blob store ({code or status})"
    else:
        message = f"cannot {action} the blob store ({type(exc).__name__})"
    raise Unavailable(message, retry_after=RETRY_AFTER_SECONDS) from exc
