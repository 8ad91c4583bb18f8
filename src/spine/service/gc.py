"""Sweeping blobs that no document references: orphans of failed or raced writes.

An upload writes its blob before its row commits, so a crash in between leaves a blob
nobody references, and a delete leaves a blob it could not safely remove at once. Both
are removed here once older than the grace period, which no upload in progress can be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
        refs = uow.documents.all_blob_refs()
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
