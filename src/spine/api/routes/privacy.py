"""/v1/privacy: the tenant's PII policy, and forgetting a value (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from spine.api.auditing import audited
from spine.api.deps import Admin, ServicesDep
from spine.api.openapi import problem_responses
from spine.api.schemas import (
    ForgetReceiptPublic,
    ForgetRequest,
    PiiPolicyPublic,
    PiiPolicyUpdate,
)
from spine.service import privacy
from spine.service.audit import Action

router = APIRouter(prefix="/v1/privacy", tags=["privacy"], responses=problem_responses())


@router.get("/policy", response_model=PiiPolicyPublic)
def get_policy(principal: Admin, services: ServicesDep) -> PiiPolicyPublic:
    return PiiPolicyPublic.of(privacy.get_policy(services, principal.tenant_id))


@router.put("/policy", response_model=PiiPolicyPublic)
def put_policy(
    request: Request, principal: Admin, services: ServicesDep, body: PiiPolicyUpdate
) -> PiiPolicyPublic:
    """Replace the policy. It applies to documents processed from now on; reprocess a
    document (upload it again with ``?reprocess=true``) to apply it there."""
    with audited(request, principal, Action.PRIVACY_POLICY):
        stored = privacy.set_policy(
            services, principal.tenant_id, body.to_policy(), actor=principal.subject
        )
    return PiiPolicyPublic.of(stored)


@router.post("/forget", response_model=ForgetReceiptPublic)
def forget(
    request: Request, principal: Admin, services: ServicesDep, body: ForgetRequest
) -> ForgetReceiptPublic:
    """Delete every vault entry of a value (it can no longer be revealed), optionally the
    documents or their uploaded bytes too, and answer a receipt. No Idempotency-Key: a
    stored fingerprint would be a hash of the value, and forgetting twice is harmless."""
    with audited(request, principal, Action.PRIVACY_FORGET) as trail:
        receipt = privacy.forget(
            services,
            principal.tenant_id,
            body.value,
            delete_documents=body.delete_documents,
            delete_originals=body.delete_originals,
        )
        trail.resources = list(receipt.documents_affected)
    return ForgetReceiptPublic.of(receipt)
