"""Personal data: each tenant's policy, scrubbing at ingest and in queries, reveal, forget.

At ingest the extracted text and title are scrubbed before anything else sees them: a
value becomes a token (``<EMAIL:3f9a1c2b04d1>``, an HMAC under the tenant's token key),
a redaction (``[EMAIL]``) or stays, as the tenant's policy says. Only the scrubbed text is
chunked, embedded and indexed; the original of each token goes to the vault, encrypted
under the tenant's data key. A query is scrubbed the same way, so a search for a value
finds the documents that hold its token. Forgetting a value deletes its vault entries:
crypto-shredding, nothing can reveal it again.

Logs carry kinds and counts, never a value.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from spine.domain.documents import Chunk
from spine.domain.privacy import (
    KIND_NAME,
    TOKEN,
    CustomPattern,
    PiiPolicy,
)
from spine.errors import InvalidRequest, NotFound
from spine.pipeline.pii import PiiDetector, scrub, validate_custom_patterns
from spine.ports import StoredPolicy, VaultEntry
from spine.service import documents
from spine.service.container import Services
from spine.service.keyring import TenantKeys

log = structlog.get_logger("spine.privacy")

MAX_FORGET_VALUE_CHARS = 1000
DEFAULT_POLICY = PiiPolicy()


# -- Policy ---------------------------------------------------------------------------


def get_policy(services: Services, tenant_id: str) -> StoredPolicy:
    """The tenant's policy; a tenant that never set one tokenises every kind."""
    with services.db.read() as uow:
        stored = uow.privacy.policy(tenant_id)
    return stored or StoredPolicy(DEFAULT_POLICY)


def set_policy(
    services: Services, tenant_id: str, policy: PiiPolicy, *, actor: str
) -> StoredPolicy:
    """Check and store ``policy``; it applies to documents processed from now on."""
    custom_kinds = [pattern.kind for pattern in policy.custom]
    if len(set(custom_kinds)) != len(custom_kinds):
        raise InvalidRequest("each custom kind may have one pattern")
    for kind in policy.actions:
        if not KIND_NAME.fullmatch(kind):
            raise InvalidRequest(
                f"{kind!r} is not a kind name: upper-case letters, digits and _, 2 to 32 long"
            )
    validate_custom_patterns(policy.custom)
    now = services.clock()
    with services.db.write() as uow:
        uow.privacy.set_policy(tenant_id, policy, now=now, updated_by=actor)
        stored = uow.privacy.policy(tenant_id)
    log.info(
        "pii.policy_set",
        tenant=tenant_id,
        actions={kind: action.value for kind, action in policy.actions.items()},
        custom_kinds=custom_kinds,
    )
    return stored or StoredPolicy(policy, now, actor)


@functools.lru_cache(maxsize=256)
def _detector(region: str, custom: tuple[CustomPattern, ...]) -> PiiDetector:
    # Detectors are pure functions of their arguments; compiling the tenant's RE2 patterns
    # once per policy (not once per job or query) is the point of the cache.
    return PiiDetector(phone_region=region, custom=custom)


def detector_for(services: Services, policy: PiiPolicy) -> PiiDetector:
    return _detector(services.settings.pii_phone_region, policy.custom)


# -- Scrubbing ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrubbedText:
    text: str
    tokens: dict[str, tuple[str, str]]
    """token -> (kind, canonical value)."""
    counts: Counter[str]


def _scrub(
    text: str, detector: PiiDetector, policy: PiiPolicy, keys: Callable[[], TenantKeys]
) -> ScrubbedText:
    # The detector leaves tokens already in the text alone (a title scrubbed by an earlier
    # run, a token pasted into a query), so scrubbing twice changes nothing.
    matches = detector.find(text) if text else []
    if not matches:
        # Most texts and queries hold no personal data: no need for the tenant's keys.
        return ScrubbedText(text, {}, Counter())
    result = scrub(text, matches, policy, keys().token_for)
    tokens = {item.token: (item.kind, item.canonical) for item in result.tokenised}
    return ScrubbedText(result.text, tokens, Counter(result.counts))


@dataclass(frozen=True)
class ScrubbedDocument:
    text: str
    title: str
    vault: list[VaultEntry]
    counts: dict[str, int]
    """Matches per kind, whatever the policy did with them: what logs may say."""


def scrub_document(
    services: Services, tenant_id: str, document_id: str, text: str, title: str
) -> ScrubbedDocument:
    """The document's text and title with its personal data replaced, and the sealed
    vault entries of its tokens (one per distinct token)."""
    policy = get_policy(services, tenant_id).policy
    detector = detector_for(services, policy)
    keys = services.keyring.for_tenant(tenant_id)
    body = _scrub(text, detector, policy, lambda: keys)
    head = _scrub(title, detector, policy, lambda: keys)
    vault = [
        keys.seal(document_id, token, kind, canonical)
        for token, (kind, canonical) in {**body.tokens, **head.tokens}.items()
    ]
    return ScrubbedDocument(body.text, head.text, vault, dict(body.counts + head.counts))


@dataclass(frozen=True)
class ScrubbedFields:
    title: str | None
    metadata: dict[str, Any]
    vault: list[VaultEntry]


def scrub_fields(
    services: Services,
    tenant_id: str,
    document_id: str,
    title: str | None,
    metadata: dict[str, Any],
) -> ScrubbedFields:
    """An upload's own title and metadata values, scrubbed before they are stored: they
    are shown to every reader at once, long before (or even without) processing."""
    policy = get_policy(services, tenant_id).policy
    detector = detector_for(services, policy)
    found: dict[str, tuple[str, str]] = {}

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            scrubbed = _scrub(value, detector, policy, lambda: keys_of(services, tenant_id))
            found.update(scrubbed.tokens)
            return scrubbed.text
        if isinstance(value, list):
            return [clean(item) for item in value]
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        return value

    clean_title = clean(title) if title is not None else None
    clean_metadata = clean(metadata)
    keys = keys_of(services, tenant_id) if found else None
    vault = [
        keys.seal(document_id, token, kind, canonical)
        for token, (kind, canonical) in found.items()
        if keys is not None
    ]
    return ScrubbedFields(clean_title, clean_metadata, vault)


def still_referenced(entries: Sequence[VaultEntry], *fields: str) -> list[VaultEntry]:
    """The entries whose tokens still appear in ``fields`` (a stored title, metadata):
    what a reprocessing must keep, since those fields are not scrubbed again."""
    text = "\n".join(fields)
    return [entry for entry in entries if entry.token in text]


def scrub_query(services: Services, tenant_id: str, query: str) -> str:
    """The query as the index knows its text: values become the tenant's tokens."""
    policy = get_policy(services, tenant_id).policy
    scrubbed = _scrub(
        query, detector_for(services, policy), policy, lambda: keys_of(services, tenant_id)
    )
    if scrubbed.counts:
        log.info("pii.query_scrubbed", tenant=tenant_id, kinds=dict(scrubbed.counts))
    return scrubbed.text


def keys_of(services: Services, tenant_id: str) -> TenantKeys:
    return services.keyring.for_tenant(tenant_id)


def clip_title(title: str, limit: int) -> str:
    """``title`` cut to ``limit`` characters, never through the middle of a token."""
    if len(title) <= limit:
        return title
    cut = limit
    for match in TOKEN.finditer(title):
        if match.start() < cut < match.end():
            cut = match.start()
            break
    return title[:cut].rstrip()


# -- Reading a document's text --------------------------------------------------------


@dataclass(frozen=True)
class DocumentText:
    document_id: str
    title: str
    text: str
    revealed: bool
    unrevealed_tokens: int
    """Tokens left as tokens on reveal: their values were forgotten."""


def reassemble(spans: Sequence[Chunk]) -> str:
    """The scrubbed text from its overlapping chunks: each lands at its own offsets, so
    ``text[c.start_char:c.end_char] == c.text`` for every chunk. Chunks are trimmed, so
    whitespace between two chunks that do not overlap is not stored; a paragraph break
    stands in for it (a single space if it was one character)."""
    parts: list[str] = []
    end = 0
    for chunk in sorted(spans, key=lambda c: (c.start_char, c.end_char)):
        if chunk.start_char > end:
            gap = chunk.start_char - end
            parts.append(" " if gap == 1 else "\n\n" + " " * (gap - 2))
            parts.append(chunk.text)
        elif chunk.end_char > end:
            parts.append(chunk.text[end - chunk.start_char :])
        end = max(end, chunk.end_char)
    return "".join(parts)


def document_text(
    services: Services, tenant_id: str, document_id: str, *, reveal: bool
) -> DocumentText:
    """The stored (scrubbed) text; with ``reveal``, each token this document's vault still
    holds is replaced by its value. The caller checks that ``reveal`` is allowed."""
    with services.db.read() as uow:
        document = uow.documents.get(tenant_id, document_id)
        spans = uow.index.chunks(tenant_id, document_id)
        entries = uow.privacy.vault(tenant_id, document_id) if reveal else []
    text = reassemble(spans)
    title = document.title
    unrevealed = 0
    if reveal:
        keys = keys_of(services, tenant_id)
        values = {entry.token: keys.open(document_id, entry) for entry in entries}
        missing: set[str] = set()

        def value_of(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in values:
                return values[token]
            missing.add(token)
            return token

        text = TOKEN.sub(value_of, text)
        title = TOKEN.sub(value_of, title)
        unrevealed = len(missing)
        log.info(
            "pii.revealed",
            tenant=tenant_id,
            document_id=document_id,
            tokens=len(values),
            unrevealed=unrevealed,
        )
    return DocumentText(document_id, title, text, reveal, unrevealed)


# -- Forgetting a value ---------------------------------------------------------------


@dataclass(frozen=True)
class ForgetReceipt:
    kinds: list[str]
    tokens: list[str]
    documents_affected: list[str]
    vault_entries_removed: int
    clear_text_documents: list[str]
    """Documents that hold the value in clear: kept by a ``keep`` policy, or in the file
    name the uploader gave (never scrubbed: it is the uploader's label, not content)."""
    documents_deleted: list[str]
    originals_deleted: int
    note: str


def forget(
    services: Services,
    tenant_id: str,
    value: str,
    *,
    delete_documents: bool = False,
    delete_originals: bool = False,
) -> ForgetReceipt:
    """Make ``value`` unrecoverable from the tenant's documents.

    Its kind(s) come from the tenant's detector run on the value alone; its token(s) from
    the tenant's token key. Every vault entry of those tokens is deleted (the value can
    no longer be revealed anywhere). Documents that hold the value in clear are found by
    their stored text and confirmed with the detector, so a substring of some other value
    never counts. ``delete_documents`` then deletes every affected document entirely;
    ``delete_originals`` deletes only their uploaded bytes, which are never served but
    hold the value and would bring it back if the document were processed again.
    """
    value = value.strip()
    if not value:
        raise InvalidRequest("value must not be empty")
    if len(value) > MAX_FORGET_VALUE_CHARS:
        raise InvalidRequest(f"value is longer than {MAX_FORGET_VALUE_CHARS} characters")
    policy = get_policy(services, tenant_id).policy
    detector = detector_for(services, policy)
    matches = detector.find(value)
    if not matches:
        # The message must not quote the value: problem details can end up in logs.
        raise InvalidRequest("the value is not personal data of any kind this tenant detects")
    keys = keys_of(services, tenant_id)
    targets = {(m.kind, m.canonical) for m in matches}
    tokens = sorted({keys.token_for(kind, canonical) for kind, canonical in targets})
    literals = sorted({value, *(m.value for m in matches), *(c for _, c in targets)})
    with services.db.read() as uow:
        candidates = {
            document_id: (
                uow.documents.get(tenant_id, document_id),
                uow.index.chunks(tenant_id, document_id),
            )
            for document_id in uow.privacy.documents_containing(tenant_id, literals)
        }
    # Confirmed outside the write transaction: the detector may take a while on long texts.
    in_clear = sorted(
        document_id
        for document_id, (document, spans) in candidates.items()
        if any(
            _holds(text, detector, targets)
            for text in (document.title, document.filename or "", reassemble(spans))
        )
    )
    with services.db.write() as uow:
        by_token = uow.privacy.documents_with_tokens(tenant_id, tokens)
        removed = uow.privacy.forget_tokens(tenant_id, tokens)
        # A stored response (an upload replayed under its Idempotency-Key) may quote it.
        for needle in (*literals, *tokens):
            uow.privacy.forget_responses_mentioning(tenant_id, needle)
        affected = sorted(set(by_token) | set(in_clear))
        originals: set[str] = set()
        for document_id in affected:
            try:
                originals.add(uow.documents.get(tenant_id, document_id).sha256)
            except NotFound:
                continue  # deleted since it was read
    deleted: list[str] = []
    originals_deleted = 0
    if delete_documents:
        for document_id in affected:
            try:
                documents.delete(services, tenant_id, document_id, compact=False)
            except NotFound:
                continue  # deleted meanwhile: gone either way
            deleted.append(document_id)
    elif delete_originals:
        # Even where another document shares the bytes: they hold the value all the same.
        originals_deleted = sum(services.blobs.delete(tenant_id, sha) for sha in sorted(originals))
    documents.compact_storage(services)
    log.info(
        "pii.forgotten",
        tenant=tenant_id,
        kinds=sorted({kind for kind, _ in targets}),
        documents=len(affected),
        vault_entries=removed,
        clear_text_documents=len(in_clear),
        documents_deleted=len(deleted),
        originals_deleted=originals_deleted,
    )
    return ForgetReceipt(
        kinds=sorted({kind for kind, _ in targets}),
        tokens=tokens,
        documents_affected=affected,
        vault_entries_removed=removed,
        clear_text_documents=in_clear,
        documents_deleted=deleted,
        originals_deleted=originals_deleted,
        note=_note(affected, in_clear, delete_documents, delete_originals),
    )


def _holds(text: str, detector: PiiDetector, targets: set[tuple[str, str]]) -> bool:
    return any((m.kind, m.canonical) in targets for m in detector.find(text))


def _note(
    affected: Sequence[str], in_clear: Sequence[str], delete_documents: bool, delete_originals: bool
) -> str:
    if not affected:
        return "No document of this tenant holds the value."
    if delete_documents:
        return (
            "The affected documents were deleted entirely, with their uploaded bytes unless "
            "another document of the tenant has the same bytes."
        )
    parts = [
        "The value can no longer be revealed: its vault entries are gone. Its token stays "
        "in the documents' text and indexes, so a search for the value still finds them."
    ]
    if in_clear:
        parts.append(
            f"{len(in_clear)} document(s) hold the value in clear text (a keep policy, or "
            "their file name); only delete_documents removes it from them."
        )
    if delete_originals:
        parts.append("The uploaded bytes of the affected documents were deleted.")
    else:
        parts.append(
            "The original uploaded bytes of these documents remain in the blob store (never "
            "served by the API); processing them again would find the value again. "
            "delete_originals removes them, delete_documents removes the documents."
        )
    return " ".join(parts)
