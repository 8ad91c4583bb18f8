"""Sweeping blobs that no document references: orphans of failed or raced writes.

An upload writes its blob before its row commits, so a crash in between leaves a blob
nobody references, and a delete leaves a blob it could not safely remove at once. Both
are removed here once older than the grace period, which no upload in progress can be.
Expired idempotency keys, which a tenant's own requests only ever drop one at a time
(when the same key comes back), are purged here too.

This is machinery that serves every tenant, so it goes through ``uow.housekeeping``, a
port without a tenant by design (see :mod:`spine.ports`); the API never calls it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from spine.ports import BlobStore, Database

log = structlog.get_logger("spine.gc")


@dataclass(frozen=True)
class SweepReport:
    examined: int
    removed: int
    kept_recent: int


def sweep_blobs(db: Database, blobs: BlobStore, *, grace_seconds: float) -> SweepReport:
    """Needs only the two stores, so `spine gc` runs without loading the model."""
    with db.read() as uow:
        refs = uow.housekeeping.all_blob_refs()
    referenced = {(blobs.tenant_key(tenant), sha) for tenant, sha in refs}
    cutoff = time.time() - grace_seconds
    examined = removed = kept = 0
    for entry in blobs.list_blobs():
        examined += 1
        if not entry.temporary and (entry.tenant_key, entry.name) in referenced:
            continue
        if entry.modified_at > cutoff:
            kept += 1
            continue
        blobs.remove(entry)
        removed += 1
    log.info("gc.swept", examined=examined, removed=removed, kept_recent=kept)
    return SweepReport(examined, removed, kept)


#: Keys deleted per transaction, so a large backlog never holds the writer lock for long.
PURGE_BATCH = 500


def purge_idempotency_keys(db: Database, *, now: datetime, batch: int = PURGE_BATCH) -> int:
    """Delete every idempotency key that expired by ``now``, in batches; returns how many."""
    purged = 0
    while True:
        with db.write() as uow:
            count = uow.housekeeping.purge_expired_idempotency_keys(now=now, limit=batch)
        purged += count
        if count < batch:
            break
    log.info("gc.idempotency_keys_purged", purged=purged)
    return purged
