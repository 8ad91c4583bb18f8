"""/v1/documents: upload, read, list, delete."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from spine.api.auditing import audited
from spine.api.deps import Reader, ServicesDep, Writer
from spine.api.idempotency import IdempotencyKey, json_outcome, respond
from spine.api.openapi import problem_responses
from spine.api.schemas import (
    DocumentPage,
    DocumentPublic,
    DocumentTextPublic,
    JobPublic,
    UploadAccepted,
)
from spine.domain.auth import Scope
from spine.errors import InvalidRequest
from spine.ports import StoredResponse
from spine.service import documents, jobs, privacy
from spine.service.audit import Action

router = APIRouter(
    prefix="/v1/documents", tags=["documents"], responses=problem_responses(404, 409, 415)
)


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"metadata is not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise InvalidRequest("metadata is nested too deeply") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object")
    return value


def _file_sha256(file: UploadFile) -> str:
    digest = hashlib.sha256()
    while block := file.file.read(1024 * 1024):
        digest.update(block)
    file.file.seek(0)
    return digest.hexdigest()


@router.post(
    "",
    status_code=202,
    response_model=UploadAccepted,
    responses={200: {"model": UploadAccepted, "description": "Duplicate: no new job."}},
)
def upload_document(
    request: Request,
    principal: Writer,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="The document's bytes.")],
    idempotency_key: IdempotencyKey = None,
    title: Annotated[str | None, Form(max_length=500)] = None,
    metadata: Annotated[str | None, Form(description="A JSON object.")] = None,
    reprocess: Annotated[
        bool, Query(description="Process bytes the tenant already has once more.")
    ] = False,
) -> Response:
    """Store a document and queue it: 202 once it is durably stored. Bytes the tenant
    already has answer 200 with the existing document and ``duplicate: true``."""

    def operation() -> StoredResponse:
        with audited(request, principal, Action.DOCUMENT_UPLOAD) as trail:
            accepted = documents.upload(
                services,
                principal.tenant_id,
                documents.Upload(
                    stream=file.file,
                    filename=file.filename,
                    declared_type=file.content_type,
                    title=title,
                    metadata=_parse_metadata(metadata),
                ),
                subject=principal.subject,
                sees_all_jobs=jobs.sees_all_jobs(principal),
                reprocess=reprocess,
            )
            trail.resources = [accepted.document.id]
            if accepted.duplicate and not reprocess:
                trail.outcome = "duplicate"
        made_job = not accepted.duplicate or reprocess
        body = UploadAccepted(
            document=DocumentPublic.of(accepted.document),
            job=JobPublic.of(accepted.job) if accepted.job else None,
            duplicate=accepted.duplicate,
        )
        headers = {"Location": f"/v1/jobs/{accepted.job.id}"} if made_job and accepted.job else {}
        return json_outcome(202 if made_job else 200, body, headers)

    return respond(
        request,
        services,
        principal,
        idempotency_key,
        lambda: (_file_sha256(file), file.filename, file.content_type, title, metadata, reprocess),
        operation,
    )


@router.get("", response_model=DocumentPage)
def list_documents(
    principal: Reader,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> DocumentPage:
    items, next_cursor = documents.page(services, principal.tenant_id, limit=limit, cursor=cursor)
    return DocumentPage(items=[DocumentPublic.of(d) for d in items], next_cursor=next_cursor)


@router.get("/{document_id}", response_model=DocumentPublic)
def get_document(principal: Reader, services: ServicesDep, document_id: str) -> DocumentPublic:
    return DocumentPublic.of(documents.get(services, principal.tenant_id, document_id))


@router.get("/{document_id}/text", response_model=DocumentTextPublic)
def get_document_text(
    request: Request,
    principal: Reader,
    services: ServicesDep,
    document_id: str,
    reveal: Annotated[
        bool, Query(description="Replace tokens by their values; needs the pii:read scope.")
    ] = False,
) -> DocumentTextPublic:
    """The document's stored text, reassembled from its chunks: personal data appears as
    the tenant's policy left it (tokens, redactions). ``reveal=true`` needs what
    ``deps.PiiReader`` needs: a token issued with the ``pii:read`` scope."""
    if not reveal:
        text = privacy.document_text(services, principal.tenant_id, document_id, reveal=False)
        return DocumentTextPublic.of(text)
    # Checked before the audited block: a refusal is recorded by the 403 handler.
    principal.require_scope(Scope.PII_READ)
    with audited(request, principal, Action.DOCUMENT_REVEAL, document_id):
        text = privacy.document_text(services, principal.tenant_id, document_id, reveal=True)
    return DocumentTextPublic.of(text)


@router.delete("/{document_id}", status_code=204)
def delete_document(
    request: Request,
    principal: Writer,
    services: ServicesDep,
    document_id: str,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    def operation() -> StoredResponse:
        with audited(request, principal, Action.DOCUMENT_DELETE, document_id):
            documents.delete(services, principal.tenant_id, document_id)
        return json_outcome(204, None)

    return respond(request, services, principal, idempotency_key, lambda: document_id, operation)
