"""/v1/documents: upload, read, list, delete."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from spine.api.deps import Reader, ServicesDep, Writer
from spine.api.schemas import DocumentPage, DocumentPublic, JobPublic, UploadAccepted
from spine.errors import InvalidRequest
from spine.service import documents

router = APIRouter(prefix="/v1/documents", tags=["documents"])


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"metadata is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object")
    return value


@router.post("", status_code=202, response_model=UploadAccepted)
def upload_document(
    principal: Writer,
    services: ServicesDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The document's bytes.")],
    title: Annotated[str | None, Form(max_length=500)] = None,
    metadata: Annotated[str | None, Form(description="A JSON object.")] = None,
) -> UploadAccepted:
    """Store a document and queue it for processing. 202 once it is durably stored."""
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
    )
    response.headers["Location"] = f"/v1/jobs/{accepted.job.id}"
    return UploadAccepted(
        document=DocumentPublic.of(accepted.document), job=JobPublic.of(accepted.job)
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


@router.delete("/{document_id}", status_code=204)
def delete_document(principal: Writer, services: ServicesDep, document_id: str) -> Response:
    documents.delete(services, principal.tenant_id, document_id)
    return Response(status_code=204)
