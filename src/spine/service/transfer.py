"""Moving tenants between stores: ``spine export`` and ``spine import``.

Both work through the ports, so any database and blob store can be the source or the
target: the embedded default (SQLite, a folder) and the scale-out stores (PostgreSQL,
S3) alike. An export is a folder that describes itself::

    manifest.json                     format and versions, the tenants, and per tenant and
                                      kind a count and a SHA-256 (below)
    tenants/<dir>/<kind>.jsonl        one record per line, one file per kind
    tenants/<dir>/blobs/<sha256>      the uploaded bytes, named by their hash

The kinds: ``documents``; ``chunks`` with their vectors; ``vault`` (PII values, still
encrypted under the tenant's data key); ``jobs`` that finished (SUCCEEDED or FAILED)
with their events; the ``audit`` chain and its ``audit_head``; the PII ``policy``; the
tenant's ``keys``, still wrapped by the master key (so the target must hold the same
master key); and ``blobs``. Jobs still PENDING, RUNNING or RETRYING are left out (the
manifest counts them): they belong to the queue of the store they were made in.

Canonical serialisation, the one input to the checksums: each record is JSON with its
keys sorted, separators ``,`` and ``:``, ASCII only; times are UTC
``YYYY-MM-DDTHH:MM:SS.ffffffZ``; bytes (vectors as little-endian float32, nonces,
ciphertexts, wrapped keys) are base64. A kind's checksum is the SHA-256 of its records'
lines, each ending in ``\\n``: exactly the bytes of its file. Records come in a fixed
order: documents newest id first, each document's chunks (by ordinal) and vault entries
in the same order as their documents, jobs newest id first, audit entries by seq, blobs
by hash.

Import checks every file against the manifest before it writes anything, refuses
tenants the target already holds (no silent merge), writes each tenant in one
transaction (blobs first, as uploads do), then reads everything back from the target,
serialises it the same way and compares counts and checksums with the manifest.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from spine.domain.documents import Chunk, Document
from spine.domain.jobs import Job, JobError, JobEvent, JobState
from spine.domain.privacy import CustomPattern, PiiAction, PiiPolicy
from spine.errors import Conflict, NotFound
from spine.ports import (
    AuditEntry,
    AuditHead,
    BlobStore,
    Database,
    StoredPolicy,
    UnitOfWork,
    VaultEntry,
    WrappedTenantKeys,
)
from spine.service.audit import ChainReport, format_time, verify_chain

FORMAT = "spine-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENANTS_DIR = "tenants"
BLOBS_DIR = "blobs"
#: Rows read per query while streaming a tenant: memory stays flat however big it is.
PAGE_SIZE = 200
_COPY_BUFFER = 1024 * 1024
#: Blobs copied at once: enough to hide an object store's round trips.
BLOB_THREADS = 8
_T = TypeVar("_T")
#: Tenant ids that can name a folder as they are; others get "_" + a digest.
_SAFE_DIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

UNFINISHED_NOTE = (
    "Jobs still PENDING, RUNNING or RETRYING are not exported. Let the workers drain the "
    "queue and export again, or after the import re-upload those documents with "
    "?reprocess=true."
)


class Kind(enum.StrEnum):
    DOCUMENTS = "documents"
    CHUNKS = "chunks"
    VAULT = "vault"
    JOBS = "jobs"
    AUDIT = "audit"
    AUDIT_HEAD = "audit_head"
    POLICY = "policy"
    KEYS = "keys"
    BLOBS = "blobs"

    @property
    def file(self) -> str:
        return f"{self.value}.jsonl"


class TransferRefused(Conflict):
    """An export or import that cannot go ahead; the message says why in one line."""

    type = "transfer-refused"
    title = "Transfer refused"


# -- canonical records ----------------------------------------------------------------


def canonical_line(record: Mapping[str, Any]) -> bytes:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii") + b"\n"


def _time(at: datetime | None) -> str | None:
    return None if at is None else format_time(at)


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def _required_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def document_record(document: Document) -> dict[str, Any]:
    """``latest_job_id`` only when that job is exported too (it finished): a document
    whose latest job was still in the queue arrives as never processed."""
    finished = document.status is not None and document.status.terminal
    return {
        "id": document.id,
        "title": document.title,
        "filename": document.filename,
        "content_type": document.content_type,
        "size_bytes": document.size_bytes,
        "sha256": document.sha256,
        "metadata": document.metadata,
        "chunk_count": document.chunk_count,
        "latest_job_id": document.latest_job_id if finished else None,
        "created_at": _time(document.created_at),
        "updated_at": _time(document.updated_at),
    }


def document_from(tenant_id: str, record: Mapping[str, Any]) -> Document:
    return Document(
        id=record["id"],
        tenant_id=tenant_id,
        title=record["title"],
        filename=record["filename"],
        content_type=record["content_type"],
        size_bytes=record["size_bytes"],
        sha256=record["sha256"],
        metadata=dict(record["metadata"]),
        chunk_count=record["chunk_count"],
        created_at=_required_time(record["created_at"]),
        updated_at=_required_time(record["updated_at"]),
        latest_job_id=record["latest_job_id"],
    )


def chunk_record(chunk: Chunk) -> dict[str, Any]:
    vector = np.asarray(chunk.embedding, dtype="<f4").tobytes()
    return {
        "document_id": chunk.document_id,
        "id": chunk.id,
        "ordinal": chunk.ordinal,
        "text": chunk.text,
        "start_char": chunk.start_char,
        "end_char": chunk.end_char,
        "vector": _b64(vector),
    }


def chunk_from(record: Mapping[str, Any]) -> Chunk:
    vector = np.frombuffer(_unb64(record["vector"]), dtype="<f4").tolist()
    return Chunk(
        record["id"],
        record["document_id"],
        record["ordinal"],
        record["text"],
        record["start_char"],
        record["end_char"],
        vector,
    )


def vault_record(document_id: str, entry: VaultEntry) -> dict[str, Any]:
    return {
        "document_id": document_id,
        "token": entry.token,
        "kind": entry.kind,
        "nonce": _b64(entry.nonce),
        "ciphertext": _b64(entry.ciphertext),
    }


def vault_from(record: Mapping[str, Any]) -> VaultEntry:
    return VaultEntry(
        record["token"], record["kind"], _unb64(record["nonce"]), _unb64(record["ciphertext"])
    )


def job_record(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "document_id": job.document_id,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": None
        if job.error is None
        else {"type": job.error.type, "message": job.error.message},
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "next_run_at": _time(job.next_run_at),
        "created_by": job.created_by,
        "request_id": job.request_id,
        "traceparent": job.traceparent,
        "events": [
            {
                "from": event.from_state.value if event.from_state else None,
                "to": event.to_state.value,
                "at": _time(event.at),
                "detail": event.detail,
            }
            for event in job.events
        ],
    }


def job_from(tenant_id: str, record: Mapping[str, Any]) -> Job:
    error = record["error"]
    return Job(
        id=record["id"],
        tenant_id=tenant_id,
        document_id=record["document_id"],
        state=JobState(record["state"]),
        attempts=record["attempts"],
        max_attempts=record["max_attempts"],
        error=None if error is None else JobError(error["type"], error["message"]),
        created_at=_required_time(record["created_at"]),
        started_at=_parse_time(record["started_at"]),
        finished_at=_parse_time(record["finished_at"]),
        next_run_at=_parse_time(record["next_run_at"]),
        events=tuple(
            JobEvent(
                job_id=record["id"],
                from_state=JobState(event["from"]) if event["from"] else None,
                to_state=JobState(event["to"]),
                at=_required_time(event["at"]),
                detail=event["detail"],
            )
            for event in record["events"]
        ),
        created_by=record["created_by"],
        request_id=record["request_id"],
        traceparent=record["traceparent"],
    )


def audit_record(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": _time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "resource": entry.resource,
        "request_id": entry.request_id,
        "outcome": entry.outcome,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def audit_from(tenant_id: str, record: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        seq=record["seq"],
        tenant_id=tenant_id,
        at=_required_time(record["at"]),
        actor=record["actor"],
        action=record["action"],
        resource=record["resource"],
        request_id=record["request_id"],
        outcome=record["outcome"],
        prev_hash=record["prev_hash"],
        hash=record["hash"],
    )


def head_record(head: AuditHead) -> dict[str, Any]:
    return {"seq": head.seq, "hash": head.hash, "count": head.count}


def policy_record(stored: StoredPolicy) -> dict[str, Any]:
    policy = stored.policy
    return {
        "actions": {kind: action.value for kind, action in sorted(policy.actions.items())},
        "custom": [{"kind": c.kind, "pattern": c.pattern} for c in policy.custom],
        "updated_at": _time(stored.updated_at),
        "updated_by": stored.updated_by,
    }


def policy_from(record: Mapping[str, Any]) -> StoredPolicy:
    policy = PiiPolicy(
        actions={kind: PiiAction(action) for kind, action in record["actions"].items()},
        custom=tuple(CustomPattern(c["kind"], c["pattern"]) for c in record["custom"]),
    )
    return StoredPolicy(policy, _parse_time(record["updated_at"]), record["updated_by"])


def keys_record(keys: WrappedTenantKeys) -> dict[str, Any]:
    return {
        "master_key_id": keys.master_key_id,
        "wrapped_data_key": _b64(keys.wrapped_data_key),
        "wrapped_token_key": _b64(keys.wrapped_token_key),
        "created_at": _time(keys.created_at),
    }


def keys_from(record: Mapping[str, Any]) -> WrappedTenantKeys:
    return WrappedTenantKeys(
        master_key_id=record["master_key_id"],
        wrapped_data_key=_unb64(record["wrapped_data_key"]),
        wrapped_token_key=_unb64(record["wrapped_token_key"]),
        created_at=_required_time(record["created_at"]),
    )


def blob_record(sha256: str, size_bytes: int) -> dict[str, Any]:
    return {"sha256": sha256, "size_bytes": size_bytes}


# -- counting and hashing -----------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """How many records of a kind, and the SHA-256 of their canonical lines."""

    count: int
    sha256: str


class _Sink:
    """Counts and hashes one kind's lines; with a file, writes them there as well."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        self._digest = hashlib.sha256()
        self._out = out
        self.count = 0

    def add(self, record: Mapping[str, Any]) -> None:
        line = canonical_line(record)
        self._digest.update(line)
        self.count += 1
        if self._out is not None:
            self._out.write(line)

    def tally(self) -> Tally:
        return Tally(self.count, self._digest.hexdigest())


@dataclass
class _TenantRead:
    shas: set[str] = field(default_factory=set)
    unfinished_jobs: int = 0
    chain: ChainReport | None = None
    master_key_id: str | None = None


OnDocument = Callable[[str], None]
"""Called with the tenant after each document is exported, imported or verified."""


def _pages(
    fetch: Callable[[str | None], Sequence[Any]], key: Callable[[Any], str]
) -> Iterator[Any]:
    after: str | None = None
    while True:
        page = fetch(after)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        after = key(page[-1])


def _read_tenant(
    uow: UnitOfWork, tenant_id: str, sinks: Mapping[Kind, _Sink], on_document: OnDocument
) -> _TenantRead:
    """Every record of one tenant, in canonical order, into its kind's sink: the same
    reading makes an export and checks an import, so both serialise alike."""
    read = _TenantRead()
    documents = _pages(
        lambda after: uow.documents.list(tenant_id, limit=PAGE_SIZE, after=after),
        lambda document: document.id,
    )
    for document in documents:
        sinks[Kind.DOCUMENTS].add(document_record(document))
        for chunk in uow.index.chunks_with_vectors(tenant_id, document.id):
            sinks[Kind.CHUNKS].add(chunk_record(chunk))
        for entry in uow.privacy.vault(tenant_id, document.id):
            sinks[Kind.VAULT].add(vault_record(document.id, entry))
        read.shas.add(document.sha256)
        on_document(tenant_id)
    jobs = _pages(
        lambda after: uow.jobs.list(tenant_id, state=None, limit=PAGE_SIZE, after=after),
        lambda job: job.id,
    )
    for job in jobs:
        if job.state.terminal:
            sinks[Kind.JOBS].add(job_record(uow.jobs.get(tenant_id, job.id)))
        else:
            read.unfinished_jobs += 1
    head = uow.audit.head(tenant_id)

    def passing(entries: Iterator[AuditEntry]) -> Iterator[AuditEntry]:
        for entry in entries:
            sinks[Kind.AUDIT].add(audit_record(entry))
            yield entry

    read.chain = verify_chain(tenant_id, passing(uow.audit.chain(tenant_id)), head)
    if head is not None:
        sinks[Kind.AUDIT_HEAD].add(head_record(head))
    policy = uow.privacy.policy(tenant_id)
    if policy is not None:
        sinks[Kind.POLICY].add(policy_record(policy))
    keys = uow.privacy.tenant_keys(tenant_id)
    if keys is not None:
        sinks[Kind.KEYS].add(keys_record(keys))
        read.master_key_id = keys.master_key_id
    return read


def tenant_dir(tenant_id: str) -> str:
    """The tenant's folder in an export: its id where that is a safe name, else "_" and a
    digest (no safe name starts with "_", so the two never meet)."""
    if _SAFE_DIR.fullmatch(tenant_id):
        return tenant_id
    return "_" + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


def _blob_file(folder: Path, sha256: str) -> Path:
    if not _SHA256.fullmatch(sha256):
        raise TransferRefused(f"{sha256[:80]!r} is not a SHA-256 blob name")
    return folder / BLOBS_DIR / sha256


# -- export ---------------------------------------------------------------------------------


def export_tenants(
    db: Database,
    blobs: BlobStore,
    out: Path,
    tenants: Sequence[str] | None = None,
    *,
    now: datetime,
    spine_version: str,
    schema_revision: str | None,
    source: Mapping[str, str],
    on_document: OnDocument = lambda _tenant: None,
) -> dict[str, Any]:
    """Write ``tenants`` (None: every tenant with data) to the empty folder ``out`` and
    return the manifest, written last: a folder without one is an unfinished export."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TransferRefused(f"{out} is not an empty folder: export writes a new one")
    if tenants is None:
        with db.read() as uow:
            chosen = sorted(uow.housekeeping.tenants_with_data())
    else:
        chosen = list(dict.fromkeys(tenants))
    out.mkdir(parents=True, exist_ok=True)
    entries = [
        _export_tenant(db, blobs, out, tenant_id, on_document=on_document) for tenant_id in chosen
    ]
    skipped = sum(entry["unfinished_jobs_skipped"] for entry in entries)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spine_version": spine_version,
        "schema_revision": schema_revision,
        "created_at": format_time(now),
        "source": dict(source),
        "canonical": (
            "one JSON record per line: keys sorted, separators ',' and ':', ASCII only; "
            "times UTC YYYY-MM-DDTHH:MM:SS.ffffffZ; bytes base64 (vectors little-endian "
            "float32); sha256 is the SHA-256 of the lines, each ending in a newline"
        ),
        "kinds": [kind.value for kind in Kind],
        "unfinished_jobs_skipped": skipped,
        "note": UNFINISHED_NOTE,
        "tenants": entries,
    }
    _write_json(out / MANIFEST, manifest)
    return manifest


def _export_tenant(
    db: Database, blobs: BlobStore, out: Path, tenant_id: str, *, on_document: OnDocument
) -> dict[str, Any]:
    relative = f"{TENANTS_DIR}/{tenant_dir(tenant_id)}"
    folder = out / relative
    (folder / BLOBS_DIR).mkdir(parents=True)
    files = {kind: (folder / kind.file).open("wb") for kind in Kind}
    try:
        sinks = {kind: _Sink(files[kind]) for kind in Kind}
        # One read transaction: every kind comes from the same snapshot of the database.
        with db.read() as uow:
            read = _read_tenant(uow, tenant_id, sinks, on_document)
        missing = _export_blobs(blobs, tenant_id, read.shas, folder, sinks[Kind.BLOBS])
    finally:
        for handle in files.values():
            handle.close()
    chain = read.chain
    return {
        "tenant": tenant_id,
        "dir": relative,
        "master_key_id": read.master_key_id,
        "unfinished_jobs_skipped": read.unfinished_jobs,
        "missing_blobs": missing,
        "audit_chain": "intact" if chain is None or chain.ok else f"broken: {chain.problem}",
        "kinds": {
            kind.value: {"file": kind.file, **_tally_json(sinks[kind].tally())} for kind in Kind
        },
    }


def _in_parallel(work: Callable[[str], _T], items: Sequence[str]) -> Iterator[_T]:
    """``work`` over ``items`` on BLOB_THREADS threads, results in the items' order: a
    blob store answers one request at a time per connection, and an object store's
    round trips, not its bandwidth, bound a copy of many small blobs."""
    pool = ThreadPoolExecutor(BLOB_THREADS, thread_name_prefix="spine-transfer")
    try:
        yield from pool.map(work, items)
    finally:
        # On an error, the blobs not started yet are not copied for nothing.
        pool.shutdown(wait=True, cancel_futures=True)


def _export_blobs(
    blobs: BlobStore, tenant_id: str, shas: set[str], folder: Path, sink: _Sink
) -> list[str]:
    """Copy the blobs the documents name, checking each against its hash; returns the
    hashes the store no longer holds (originals deleted by a forget, say)."""

    def copy(sha256: str) -> int | None:
        try:
            data = blobs.get(tenant_id, sha256)
        except NotFound:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise TransferRefused(
                f"blob {sha256} of tenant {tenant_id!r} does not hash to its name: "
                "the source blob store is damaged"
            )
        _blob_file(folder, sha256).write_bytes(data)
        return len(data)

    missing = []
    ordered = sorted(shas)
    for sha256, size in zip(ordered, _in_parallel(copy, ordered), strict=True):
        if size is None:
            missing.append(sha256)
        else:
            sink.add(blob_record(sha256, size))
    return missing


def _tally_json(tally: Tally) -> dict[str, Any]:
    return {"count": tally.count, "sha256": tally.sha256}


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=True) + "\n", encoding="ascii")
    os.replace(temporary, path)


# -- import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One kind of one tenant: what the manifest says, and what the target holds."""

    tenant_id: str
    kind: str
    expected: Tally
    found: Tally

    @property
    def ok(self) -> bool:
        return self.expected == self.found


@dataclass(frozen=True)
class ImportReport:
    checks: list[Check]
    chains: list[ChainReport]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks) and all(chain.ok for chain in self.chains)


def read_manifest(src: Path) -> dict[str, Any]:
    path = src / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TransferRefused(
            f"{path} does not exist: not an export, or an export that did not finish"
        ) from None
    except (OSError, ValueError) as exc:
        raise TransferRefused(f"{path} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TransferRefused(f"{path} is not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise TransferRefused(
            f"{path} is format version {version}; this Spine reads version {FORMAT_VERSION}"
        )
    return manifest


def selected_tenants(manifest: Mapping[str, Any], tenants: Sequence[str] | None) -> list[Any]:
    entries = list(manifest["tenants"])
    if tenants is None:
        return entries
    by_id = {entry["tenant"]: entry for entry in entries}
    unknown = [tenant for tenant in tenants if tenant not in by_id]
    if unknown:
        raise TransferRefused(f"the export holds no tenant {unknown[0]!r}")
    return [by_id[tenant] for tenant in dict.fromkeys(tenants)]


def import_tenants(
    db: Database,
    blobs: BlobStore,
    src: Path,
    tenants: Sequence[str] | None = None,
    *,
    master_key_id: str,
    now: datetime,
    on_document: OnDocument = lambda _tenant: None,
    on_verified: OnDocument = lambda _tenant: None,
) -> ImportReport:
    """Write the export at ``src`` (``tenants`` of it, None: all) into the stores, then
    read it back from them and compare with the manifest. Raises
    :class:`TransferRefused` before writing anything when a file does not match the
    manifest, a tenant is already in the target, or the master keys differ."""
    manifest = read_manifest(src)
    entries = selected_tenants(manifest, tenants)
    for entry in entries:
        _check_files(src, entry)
    _refuse_conflicts(db, src, entries, master_key_id=master_key_id)
    for entry in entries:
        _import_tenant(db, blobs, _folder(src, entry), entry, now=now, on_document=on_document)
    return verify_import(db, blobs, entries, on_document=on_verified)


def _folder(src: Path, entry: Mapping[str, Any]) -> Path:
    """The tenant's folder, which must lie inside the export."""
    relative = str(entry["dir"])
    parts = relative.split("/")
    if len(parts) != 2 or parts[0] != TENANTS_DIR or parts[1] in ("", ".", ".."):
        raise TransferRefused(f"the manifest names {relative!r}, not a folder of the export")
    return src / TENANTS_DIR / parts[1]


def _check_files(src: Path, entry: Mapping[str, Any]) -> None:
    """Each kind's file against its count and checksum, each blob against its name."""
    tenant_id, folder = entry["tenant"], _folder(src, entry)
    for kind in Kind:
        expected = entry["kinds"][kind.value]
        path = folder / kind.file
        digest, count = hashlib.sha256(), 0
        try:
            with path.open("rb") as handle:
                for line in handle:
                    digest.update(line)
                    count += 1
        except FileNotFoundError:
            raise TransferRefused(f"{path} is missing: the export is incomplete") from None
        if count != expected["count"] or digest.hexdigest() != expected["sha256"]:
            raise TransferRefused(
                f"{path} does not match its count and checksum in the manifest "
                f"(tenant {tenant_id!r}): the export was changed or is incomplete"
            )
    for record in _records(folder / Kind.BLOBS.file):
        path = _blob_file(folder, record["sha256"])
        digest, size = hashlib.sha256(), 0
        try:
            with path.open("rb") as handle:
                while block := handle.read(_COPY_BUFFER):
                    digest.update(block)
                    size += len(block)
        except FileNotFoundError:
            raise TransferRefused(f"{path} is missing: the export is incomplete") from None
        if digest.hexdigest() != record["sha256"] or size != record["size_bytes"]:
            raise TransferRefused(
                f"{path} does not hash to its name (tenant {tenant_id!r}): the export was changed"
            )


def _refuse_conflicts(
    db: Database, src: Path, entries: Sequence[Any], *, master_key_id: str
) -> None:
    with db.read() as uow:
        for entry in entries:
            tenant_id = entry["tenant"]
            exported = _first_record(_folder(src, entry) / Kind.KEYS.file)
            wrapped = None if exported is None else exported["master_key_id"]
            if wrapped is not None and wrapped != master_key_id:
                raise TransferRefused(
                    f"the keys of tenant {tenant_id!r} are wrapped by master key {wrapped}, "
                    f"the target's is {master_key_id}: set SPINE_MASTER_KEY to the source's "
                    "key (embedded: the content of <data_dir>/master-key)"
                )
            if uow.documents.list(tenant_id, limit=1, after=None):
                raise TransferRefused(
                    f"tenant {tenant_id!r} already has documents in the target; import does "
                    "not merge: delete them first, or leave the tenant out with --tenant"
                )
            if uow.audit.head(tenant_id) is not None:
                raise TransferRefused(
                    f"tenant {tenant_id!r} already has an audit chain in the target; two "
                    "chains cannot be merged: leave the tenant out with --tenant"
                )
            existing = uow.privacy.tenant_keys(tenant_id)
            if existing is not None and (exported is None or keys_record(existing) != exported):
                raise TransferRefused(
                    f"tenant {tenant_id!r} already has other keys in the target (made when "
                    "it was first used there): its imported values could not be read"
                )


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            record: dict[str, Any] = json.loads(line)
            yield record


def _first_record(path: Path) -> dict[str, Any] | None:
    with path.open("rb") as handle:
        line = handle.readline()
    if not line:
        return None
    record: dict[str, Any] = json.loads(line)
    return record


class _Grouped:
    """Records of a kind that follow their documents' order: ``take`` returns the run
    of records of one document, reading no further than the next document's."""

    def __init__(self, path: Path) -> None:
        self._records = _records(path)
        self._next = next(self._records, None)

    def take(self, document_id: str) -> list[dict[str, Any]]:
        run = []
        while self._next is not None and self._next["document_id"] == document_id:
            run.append(self._next)
            self._next = next(self._records, None)
        return run

    @property
    def exhausted(self) -> bool:
        return self._next is None


def _import_tenant(
    db: Database,
    blobs: BlobStore,
    folder: Path,
    entry: Mapping[str, Any],
    *,
    now: datetime,
    on_document: OnDocument,
) -> None:
    tenant_id = entry["tenant"]
    # The bytes first, as an upload does: rows that fail leave orphans for `spine gc`,
    # never documents without their bytes.

    def put(sha256: str) -> None:
        with _blob_file(folder, sha256).open("rb") as handle:
            stored = blobs.put(tenant_id, handle)
        if stored.sha256 != sha256:
            raise TransferRefused(f"blob {sha256} changed while it was imported")

    names = [record["sha256"] for record in _records(folder / Kind.BLOBS.file)]
    for _ in _in_parallel(put, names):
        pass
    try:
        # One transaction per tenant: a failure leaves none of the tenant behind.
        with db.write() as uow:
            _write_tenant(uow, tenant_id, folder, now=now, on_document=on_document)
    except TransferRefused:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TransferRefused(
            f"tenant {tenant_id!r} could not be written and was rolled back "
            f"({type(exc).__name__}: {first[:300]})"
        ) from exc


def _write_tenant(
    uow: UnitOfWork, tenant_id: str, folder: Path, *, now: datetime, on_document: OnDocument
) -> None:
    for record in _records(folder / Kind.KEYS.file):
        uow.privacy.add_tenant_keys(tenant_id, keys_from(record))
    for record in _records(folder / Kind.POLICY.file):
        stored = policy_from(record)
        uow.privacy.set_policy(
            tenant_id,
            stored.policy,
            now=stored.updated_at or now,
            updated_by=stored.updated_by or "spine import",
        )
    chunks, vault = _Grouped(folder / Kind.CHUNKS.file), _Grouped(folder / Kind.VAULT.file)
    for record in _records(folder / Kind.DOCUMENTS.file):
        document = document_from(tenant_id, record)
        uow.documents.add(tenant_id, document)
        pieces = [chunk_from(chunk) for chunk in chunks.take(document.id)]
        if pieces:
            # Through the index's own write: the full-text and vector entries together.
            uow.index.replace(tenant_id, document.id, document.title, pieces)
        entries = [vault_from(item) for item in vault.take(document.id)]
        if entries:
            uow.privacy.replace_vault(tenant_id, document.id, entries, now=now)
        on_document(tenant_id)
    if not (chunks.exhausted and vault.exhausted):
        raise TransferRefused(
            f"tenant {tenant_id!r}: chunks or vault entries do not follow their documents"
        )
    for record in _records(folder / Kind.JOBS.file):
        uow.jobs.restore(tenant_id, job_from(tenant_id, record))
    head: AuditHead | None = None
    for record in _records(folder / Kind.AUDIT.file):
        entry = audit_from(tenant_id, record)
        # Appended as they were, hashes and all: the chain links exactly as before.
        uow.audit.append(tenant_id, entry, expected=head)
        head = AuditHead(tenant_id, entry.seq, entry.hash, (head.count if head else 0) + 1)


def verify_import(
    db: Database,
    blobs: BlobStore,
    entries: Sequence[Mapping[str, Any]],
    *,
    on_document: OnDocument = lambda _tenant: None,
) -> ImportReport:
    """Read each tenant back from the stores, serialise it as an export would, and
    compare every kind's count and checksum with the manifest's."""
    checks: list[Check] = []
    chains: list[ChainReport] = []
    for entry in entries:
        tenant_id = entry["tenant"]
        sinks = {kind: _Sink() for kind in Kind}
        with db.read() as uow:
            read = _read_tenant(uow, tenant_id, sinks, on_document)
        missing = set(entry.get("missing_blobs") or ())
        _verify_blobs(blobs, tenant_id, read.shas - missing, sinks[Kind.BLOBS])
        for kind in Kind:
            expected = entry["kinds"][kind.value]
            checks.append(
                Check(
                    tenant_id,
                    kind.value,
                    Tally(expected["count"], expected["sha256"]),
                    sinks[kind].tally(),
                )
            )
        if read.chain is not None:
            chains.append(read.chain)
    return ImportReport(checks, chains)


def _verify_blobs(blobs: BlobStore, tenant_id: str, shas: set[str], sink: _Sink) -> None:
    """The target's bytes of each blob, by the hash of what it returns: a blob stored
    wrong counts under another hash, so the checksum differs."""

    def read(sha256: str) -> dict[str, Any] | None:
        try:
            data = blobs.get(tenant_id, sha256)
        except NotFound:
            return None
        return blob_record(hashlib.sha256(data).hexdigest(), len(data))

    for record in _in_parallel(read, sorted(shas)):
        if record is not None:
            sink.add(record)
