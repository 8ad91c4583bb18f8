"""`spine gc` serves every tenant: blobs referenced by any tenant's documents stay, others
go after the grace period; expired idempotency keys of every tenant are purged in batches.
Real SQLite and a real blob folder; no model needed, as `spine gc` loads none."""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spine.adapters.blob.local import LocalBlobStore
from spine.adapters.sqlite.database import SqliteDatabase
from spine.errors import IdempotencyKeyReused
from spine.service.gc import purge_idempotency_keys, sweep_blobs
from support.rows import document_row

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def add_document(db: SqliteDatabase, tenant: str, sha256: str) -> None:
    with db.write() as uow:
        uow.documents.add(tenant, document_row(tenant, sha256=sha256))


def age(store: LocalBlobStore, tenant: str, sha256: str, seconds: float) -> None:
    path = store.root / store.tenant_key(tenant) / sha256[:2] / sha256
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_sweep_keeps_every_tenants_referenced_blobs_and_removes_old_orphans(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    kept = {
        tenant: store.put(tenant, io.BytesIO(f"{tenant} keeps this".encode())).sha256
        for tenant in ("acme", "globex")
    }
    for tenant, sha in kept.items():
        add_document(db, tenant, sha)
        age(store, tenant, sha, 7200)
    old_orphan = store.put("acme", io.BytesIO(b"nobody references me")).sha256
    age(store, "acme", old_orphan, 7200)
    # Another tenant's reference to the same bytes does not keep acme's copy alive.
    shared = store.put("acme", io.BytesIO(b"globex has these bytes too")).sha256
    store.put("globex", io.BytesIO(b"globex has these bytes too"))
    add_document(db, "globex", shared)
    age(store, "acme", shared, 7200)
    new_orphan = store.put("globex", io.BytesIO(b"an upload still in flight")).sha256

    report = sweep_blobs(db, store, grace_seconds=3600)

    assert (report.examined, report.removed, report.kept_recent) == (6, 2, 1)
    for tenant, sha in kept.items():
        assert store.get(tenant, sha)
    assert store.get("globex", shared)
    assert store.get("globex", new_orphan)
    remaining = {(entry.tenant_key, entry.name) for entry in store.list_blobs()}
    assert (store.tenant_key("acme"), old_orphan) not in remaining
    assert (store.tenant_key("acme"), shared) not in remaining


def test_purge_removes_every_tenants_expired_keys_in_batches_and_keeps_live_ones(
    db: SqliteDatabase,
) -> None:
    with db.write() as uow:
        for tenant in ("acme", "globex", "initech"):
            for number in range(3):
                uow.idempotency.begin(
                    tenant,
                    f"expired-{number}",
                    fingerprint="f",
                    now=T0,
                    ttl=timedelta(minutes=1),
                    lock=timedelta(0),
                )
            uow.idempotency.begin(
                tenant, "live", fingerprint="f", now=T0, ttl=timedelta(days=1), lock=timedelta(0)
            )

    purged = purge_idempotency_keys(db, now=T0 + timedelta(hours=1), batch=2)

    assert purged == 9
    assert purge_idempotency_keys(db, now=T0 + timedelta(hours=1), batch=2) == 0
    with db.write() as uow:
        for tenant in ("acme", "globex", "initech"):
            # A live key still belongs to its first request: the same key with another
            # request is refused, so it was not purged.
            with pytest.raises(IdempotencyKeyReused):
                uow.idempotency.begin(
                    tenant,
                    "live",
                    fingerprint="other",
                    now=T0 + timedelta(hours=1),
                    ttl=timedelta(days=1),
                    lock=timedelta(0),
                )
