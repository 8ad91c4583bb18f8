"""The master key and every tenant's keys: envelope encryption for the PII vault.

One master key (``SPINE_MASTER_KEY``, or generated once into ``<data_dir>/master-key``)
wraps two random keys per tenant: a data key (AES-256-GCM, encrypts vault entries) and a
token key (HMAC-SHA256, makes the tokens that stand in for values). The database holds
only wrapped keys, so a copy of the database without the master key reveals no value, and
a tenant's tokens say nothing about another tenant's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spine.domain.privacy import format_token
from spine.errors import SpineError
from spine.ports import Database, VaultEntry, WrappedTenantKeys
from spine.service import secret_files

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master-key"
#: Unwrapped tenant keys kept per process; a tenant past this is unwrapped again on use.
DEFAULT_CACHE_SIZE = 1024
DATA_KEY = "data"
TOKEN_KEY = "token"  # noqa: S105 -- a purpose label, not a secret


class MasterKeyMismatch(SpineError):
    """The tenant's keys were wrapped by another master key: a deployment error. Nothing
    can be decrypted, and the message says so instead of failing somewhere later."""

    status = 500
    type = "master-key-mismatch"
    title = "Master key mismatch"


@dataclass(frozen=True)
class MasterKey:
    key: bytes = field(repr=False)
    #: A fingerprint that names the key without revealing it; stored with wrapped keys.
    key_id: str

    @classmethod
    def of(cls, key: bytes) -> MasterKey:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the master key must be {KEY_BYTES} bytes, not {len(key)}")
        digest = hmac.new(key, b"spine master key id v1", hashlib.sha256).hexdigest()
        return cls(key, digest[:32])


def decode_master_key(encoded: str, *, source: str) -> MasterKey:
    """Base64 of 32 bytes; anything else is a ValueError that names where it came from."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{source} is not valid base64") from exc
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{source} must be base64 of {KEY_BYTES} bytes, not {len(raw)} bytes")
    return MasterKey.of(raw)


def load_master_key(configured: str | None, data_dir: Path) -> MasterKey:
    """The configured key, else the one generated once into the data dir (mode 0600)."""
    if configured:
        return decode_master_key(configured, source="SPINE_MASTER_KEY")
    path = data_dir / MASTER_KEY_FILE
    secret_files.read_or_create(path, lambda: base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
    return decode_master_key(path.read_text(encoding="ascii"), source=str(path))


def _aad(*parts: str) -> bytes:
    # Length-prefixed, so no choice of ids can make two different tuples look alike.
    return b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)


@dataclass(frozen=True)
class TenantKeys:
    tenant_id: str
    data_key: bytes = field(repr=False)
    token_key: bytes = field(repr=False)

    def token_for(self, kind: str, canonical: str) -> str:
        """Deterministic per tenant (search by value works), unrelated across tenants."""
        digest = hmac.new(self.token_key, f"{kind}:{canonical}".encode(), hashlib.sha256)
        return format_token(kind, digest.hexdigest())

    def seal(self, document_id: str, token: str, kind: str, canonical: str) -> VaultEntry:
        nonce = os.urandom(NONCE_BYTES)
        aad = _aad("vault", self.tenant_id, document_id, token)
        ciphertext = AESGCM(self.data_key).encrypt(nonce, canonical.encode(), aad)
        return VaultEntry(token=token, kind=kind, nonce=nonce, ciphertext=ciphertext)

    def open(self, document_id: str, entry: VaultEntry) -> str:
        """The value behind ``entry``; the AAD ties it to this tenant, document and token,
        so an entry copied to another row does not decrypt."""
        aad = _aad("vault", self.tenant_id, document_id, entry.token)
        return AESGCM(self.data_key).decrypt(entry.nonce, entry.ciphertext, aad).decode()


class Keyring:
    """Tenant keys on demand: made on first use, unwrapped once per process (bounded LRU)."""

    def __init__(
        self,
        master: MasterKey,
        db: Database,
        clock: Callable[[], datetime],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        on_lookup: Callable[[bool], None] = lambda _hit: None,
    ) -> None:
        self.master_key_id = master.key_id
        self._on_lookup = on_lookup
        self._master = AESGCM(master.key)
        self._db = db
        self._clock = clock
        self._cache: OrderedDict[str, TenantKeys] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def for_tenant(self, tenant_id: str) -> TenantKeys:
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached is not None:
                self._cache.move_to_end(tenant_id)
                self._on_lookup(True)
                return cached
        self._on_lookup(False)
        with self._db.read() as uow:
            wrapped = uow.privacy.tenant_keys(tenant_id)
        if wrapped is None:
            wrapped = self._create(tenant_id)
        keys = self._unwrap(tenant_id, wrapped)
        with self._lock:
            self._cache[tenant_id] = keys
            self._cache.move_to_end(tenant_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return keys

    def _create(self, tenant_id: str) -> WrappedTenantKeys:
        candidate = WrappedTenantKeys(
            master_key_id=self.master_key_id,
            wrapped_data_key=self._wrap(tenant_id, DATA_KEY, os.urandom(KEY_BYTES)),
            wrapped_token_key=self._wrap(tenant_id, TOKEN_KEY, os.urandom(KEY_BYTES)),
            created_at=self._clock(),
        )
        with self._db.write() as uow:
            uow.privacy.add_tenant_keys(tenant_id, candidate)
            # Re-read: if another process won the race, its keys are the tenant's keys.
            stored = uow.privacy.tenant_keys(tenant_id)
        if stored is None:  # pragma: no cover -- the row was just written
            raise RuntimeError("tenant keys vanished after insert")
        return stored

    def _wrap(self, tenant_id: str, purpose: str, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, key, _aad("tenant-key", tenant_id, purpose))

    def _unwrap(self, tenant_id: str, wrapped: WrappedTenantKeys) -> TenantKeys:
        if wrapped.master_key_id != self.master_key_id:
            raise MasterKeyMismatch(
                "this tenant's keys were wrapped by another master key; "
                "check SPINE_MASTER_KEY and <data_dir>/master-key"
            )

        def unwrap(blob: bytes, purpose: str) -> bytes:
            nonce, ciphertext = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
            try:
                return self._master.decrypt(
                    nonce, ciphertext, _aad("tenant-key", tenant_id, purpose)
                )
            except InvalidTag as exc:
                raise MasterKeyMismatch(
                    "this tenant's keys do not decrypt with the master key"
                ) from exc

        return TenantKeys(
            tenant_id,
            data_key=unwrap(wrapped.wrapped_data_key, DATA_KEY),
            token_key=unwrap(wrapped.wrapped_token_key, TOKEN_KEY),
        )
