"""The audit trail: who did what to which resource, with what outcome.

Every tenant has its own chain. An entry's ``hash`` is the SHA-256 of its canonical bytes,
and those bytes include ``prev_hash``, the hash of the tenant's entry before it (64 zeros
for the first). ``audit_heads`` keeps each tenant's newest seq, hash and entry count, so
removing entries from the end is as visible as editing, removing or reordering them.

Canonical bytes of an entry (format version 1), the one input to its hash::

    JSON of exactly these keys, sorted, separators "," and ":", ASCII only (\\uXXXX
    escapes), no whitespace, UTF-8 (= ASCII) bytes:
      v           1
      seq         integer, the entry's position in its tenant's chain (1, 2, ...)
      tenant      string ("-" for events before anyone was authenticated)
      at          UTC time as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always 6 fraction digits)
      actor       string (the token's sub, "anonymous" when unauthenticated)
      action      string, a stable dotted name (``Action``)
      resource    string: ids or a route template, never user text
      request_id  string ("-" outside a request)
      outcome     string: "success", or a problem type such as "not-found"
      prev_hash   64 lower-case hex digits

    hash = lower-case hex SHA-256 of those bytes

What goes in: ids, types and outcomes only. No request bodies, file names, titles,
queries or values: an audit log is kept longer than the data it describes, and a
forgotten person must not live on in it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog

from spine.errors import Conflict, InvalidRequest
from spine.ports import AuditEntry, AuditHead, Database, UnitOfWork
from spine.service.container import Services

log = structlog.get_logger("spine.audit")

FORMAT_VERSION = 1
GENESIS = "0" * 64
#: The tenant of events that happened before anyone was authenticated.
NO_TENANT = "-"
ANONYMOUS = "anonymous"
NO_REQUEST = "-"
NO_RESOURCE = "-"
SUCCESS = "success"
MAX_ACTOR_CHARS = 256
#: Attempts of an append whose head moved under it (only where isolation allows that).
APPEND_ATTEMPTS = 3


class Action(enum.StrEnum):
    """Stable names: tools and people filter on them, so never rename one."""

    DOCUMENT_UPLOAD = "document.upload"
    DOCUMENT_DELETE = "document.delete"
    DOCUMENT_REVEAL = "document.reveal"
    JOB_RETRY = "job.retry"
    DLQ_RETRY = "dlq.retry"
    PRIVACY_FORGET = "privacy.forget"
    PRIVACY_POLICY = "privacy.policy"
    TOKEN_REJECTED = "auth.token_rejected"  # noqa: S105 -- an action name, not a secret
    DENIED = "auth.denied"


_ACTION = re.compile(r"[a-z][a-z_]*(\.[a-z_]+)+")
# No "@", "+", quotes or non-ASCII: an e-mail address or a sentence cannot pass.
_RESOURCE = re.compile(r"[A-Za-z0-9_.:/{}= -]{1,256}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_OUTCOME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is placed in a chain."""

    actor: str
    action: str
    resource: str
    request_id: str
    outcome: str


def format_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime in an audit entry")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(entry: AuditEntry) -> bytes:
    """The bytes an entry's hash covers: everything but the hash itself (module docs)."""
    fields = {
        "v": FORMAT_VERSION,
        "seq": entry.seq,
        "tenant": entry.tenant_id,
        "at": format_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "resource": entry.resource,
        "request_id": entry.request_id,
        "outcome": entry.outcome,
        "prev_hash": entry.prev_hash,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def entry_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


def _checked(tenant_id: str, event: AuditEvent) -> AuditEvent:
    """Malformed fields are a bug of the caller; refusing them keeps text out of the log."""
    if not 1 <= len(tenant_id) <= 128:
        raise ValueError("audit tenant must be 1 to 128 characters")
    if len(event.action) > 64 or not _ACTION.fullmatch(event.action):
        raise ValueError(f"audit action {event.action!r} is not a dotted name")
    if not _RESOURCE.fullmatch(event.resource):
        raise ValueError("audit resource must be ids or a route, not free text")
    if event.request_id != NO_REQUEST and not REQUEST_ID.fullmatch(event.request_id):
        raise ValueError("audit request id is malformed")
    if not _OUTCOME.fullmatch(event.outcome):
        raise ValueError(f"audit outcome {event.outcome!r} is malformed")
    actor = event.actor[:MAX_ACTOR_CHARS] or ANONYMOUS
    return AuditEvent(actor, event.action, event.resource, event.request_id, event.outcome)


def append(
    uow: UnitOfWork, tenant_id: str, events: Sequence[AuditEvent], *, at: datetime
) -> list[AuditEntry]:
    """Chain ``events`` onto the tenant's log inside the caller's write transaction.

    Raises on any failure (the caller's transaction then rolls back): use it to make an
    action and its audit entry one commit. ``record`` is the forgiving form.
    """
    at = at.astimezone(UTC)
    appended: list[AuditEntry] = []
    for raw in events:
        event = _checked(tenant_id, raw)
        head = uow.audit.head(tenant_id)
        unsealed = AuditEntry(
            seq=(head.seq if head else 0) + 1,
            tenant_id=tenant_id,
            at=at,
            actor=event.actor,
            action=event.action,
            resource=event.resource,
            request_id=event.request_id,
            outcome=event.outcome,
            prev_hash=head.hash if head else GENESIS,
            hash="",
        )
        entry = replace(unsealed, hash=entry_hash(unsealed))
        uow.audit.append(tenant_id, entry, expected=head)
        appended.append(entry)
    return appended


_failures_lock = threading.Lock()
_failures = 0


def append_failures() -> int:
    """Entries this process could not append since it started (each one was logged)."""
    with _failures_lock:
        return _failures


def record_all(
    services: Services, tenant_id: str, events: Sequence[AuditEvent]
) -> list[AuditEntry] | None:
    """Append ``events`` in one short write transaction of their own; never raises.

    Called after the action committed: failing the request then would make the client
    repeat an action that happened. So a failure is logged as an error (ids and types
    only) and counted by ``append_failures``; None tells the caller it happened.
    """
    global _failures
    if not events:
        return []
    for attempt in range(1, APPEND_ATTEMPTS + 1):
        try:
            with services.db.write() as uow:
                return append(uow, tenant_id, events, at=services.clock())
        except Conflict:
            if attempt < APPEND_ATTEMPTS:
                continue
            error = "Conflict"
        except Exception as exc:
            error = type(exc).__name__
        break
    with _failures_lock:
        _failures += 1
    log.error(
        "audit.append_failed",
        tenant_id=tenant_id,
        actions=sorted({event.action for event in events}),
        entries=len(events),
        error=error,
    )
    return None


def record(
    services: Services,
    *,
    tenant_id: str,
    actor: str,
    action: str,
    resource: str,
    request_id: str,
    outcome: str,
) -> AuditEntry | None:
    """Append one entry in its own transaction; never raises (see ``record_all``)."""
    appended = record_all(
        services, tenant_id, [AuditEvent(actor, action, resource, request_id, outcome)]
    )
    return appended[0] if appended else None


def page(
    services: Services, tenant_id: str, *, limit: int, cursor: str | None
) -> tuple[list[AuditEntry], str | None]:
    """Newest first; the cursor is the seq of the last entry of the previous page."""
    before: int | None = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise InvalidRequest("cursor is not one this API gave out")
        before = int(cursor)
    with services.db.read() as uow:
        items = uow.audit.page(tenant_id, limit=limit + 1, before=before)
    next_cursor = str(items[limit - 1].seq) if len(items) > limit else None
    return items[:limit], next_cursor


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    tenant_id: str
    entries: int
    head: AuditHead | None
    #: The first entry that does not verify; None with a problem: the head itself.
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(
    tenant_id: str, entries: Iterable[AuditEntry], head: AuditHead | None
) -> ChainReport:
    """Walk one tenant's entries oldest first, then hold the end against the head.

    Links are checked before contents: a removed or reordered entry shows as the first
    entry whose ``prev_hash`` is not its predecessor's hash, an edited one as an entry
    whose fields no longer give its hash.
    """
    count = 0
    last: AuditEntry | None = None
    first_past_head: int | None = None
    broken: tuple[int | None, str] | None = None
    for entry in entries:
        count += 1
        if head is not None and first_past_head is None and entry.seq > head.seq:
            first_past_head = entry.seq
        if broken is not None:
            continue
        expected_prev = last.hash if last else GENESIS
        if entry.prev_hash != expected_prev:
            broken = (
                entry.seq,
                f"entry {entry.seq} does not link to entry {last.seq} before it: an entry "
                "between them was removed, or entries were reordered or edited"
                if last
                else f"entry {entry.seq} does not start the chain: entries before it were "
                "removed or reordered",
            )
        elif entry.hash != entry_hash(entry):
            broken = (entry.seq, f"entry {entry.seq} was edited: its fields do not give its hash")
        last = entry
    if broken is None:
        broken = _check_head(head, last, count, first_past_head)
    if broken is None:
        return ChainReport(tenant_id, count, head)
    return ChainReport(tenant_id, count, head, broken_seq=broken[0], problem=broken[1])


def _check_head(
    head: AuditHead | None, last: AuditEntry | None, count: int, first_past_head: int | None
) -> tuple[int | None, str] | None:
    if head is None:
        if last is None:
            return None
        return None, f"no head for {count} entries: the head was removed"
    if last is None:
        return head.seq, f"the head names entry {head.seq} but there are no entries: all removed"
    if head.seq > last.seq:
        return head.seq, (
            f"entry {head.seq}, named by the head, is missing: the tail after entry "
            f"{last.seq} was removed"
        )
    if head.seq < last.seq:
        return first_past_head, (
            f"entry {first_past_head} is past the head (entry {head.seq}): the head was "
            "edited or entries were added around it"
        )
    if head.hash != last.hash:
        return head.seq, f"the head's hash does not match entry {head.seq}: the head was edited"
    if head.count != count:
        return None, f"the head counts {head.count} entries, the chain has {count}"
    return None


def verify(db: Database) -> list[ChainReport]:
    """Every tenant's chain, in tenant order, read in one consistent snapshot."""
    with db.read() as uow:
        return [
            verify_chain(tenant_id, uow.audit.chain(tenant_id), uow.audit.head(tenant_id))
            for tenant_id in sorted(uow.housekeeping.audited_tenants())
        ]


# -- floods -----------------------------------------------------------------------------


@dataclass
class _Window:
    minute: int
    admitted: int = 0
    suppressed: int = 0


@dataclass
class Sampler:
    """At most ``per_minute`` entries per (tenant, action) and minute in this process.

    Rejected tokens cost an attacker nothing, so without a cap they could grow the log
    (and hold the write lock) at will. Past the cap events are only counted; the first
    admitted event of a later minute reports the count, and the caller writes it down as
    one ``suppressed`` entry. Keys are "-" and authenticated tenants, so memory is bounded
    by the number of tenants.
    """

    per_minute: int
    clock: Callable[[], float] = time.monotonic
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.per_minute < 1:
            raise ValueError("a sampler must admit at least one event a minute")

    def admit(self, tenant_id: str, action: str) -> tuple[bool, int]:
        """(record this event?, events suppressed in an earlier minute, to report now)."""
        minute = int(self.clock() // 60)
        key = (tenant_id, action)
        with self._lock:
            window = self._windows.get(key)
            carried = 0
            if window is None or window.minute != minute:
                carried = window.suppressed if window else 0
                window = self._windows[key] = _Window(minute)
            if window.admitted < self.per_minute:
                window.admitted += 1
                return True, carried
            window.suppressed += 1
            if window.suppressed == 1:
                log.warning("audit.sampling", tenant_id=tenant_id, action=action)
            # Not admitted means this minute already started, so nothing was carried.
            return False, 0
