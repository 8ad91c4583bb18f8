"""The ``Idempotency-Key`` header on unsafe routes: HTTP glue over service.idempotency."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request, Response
from pydantic import BaseModel

from spine.api.problems import PROBLEM_JSON, problem_body
from spine.domain.auth import Principal
from spine.errors import SpineError
from spine.ports import StoredResponse
from spine.service import idempotency
from spine.service.container import Services

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the request safe to retry: the first response is replayed for 24 h.",
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"


def json_outcome(
    status: int, model: BaseModel | None, headers: dict[str, str] | None = None
) -> StoredResponse:
    body = model.model_dump_json(by_alias=True) if model is not None else None
    return StoredResponse(status=status, body=body, headers=headers or {})


def to_response(stored: StoredResponse, *, replayed: bool = False) -> Response:
    headers = dict(stored.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    if stored.body is None:
        return Response(status_code=stored.status, headers=headers)
    media_type = PROBLEM_JSON if stored.status >= 400 else "application/json"
    return Response(stored.body, status_code=stored.status, headers=headers, media_type=media_type)


def respond(
    request: Request,
    services: Services,
    principal: Principal,
    key: str | None,
    request_fingerprint: Callable[[], Any],
    operation: Callable[[], StoredResponse],
) -> Response:
    """Run ``operation`` directly without a key, or at most once per key with one."""
    if key is None:
        return to_response(operation())

    def error_response(exc: SpineError) -> StoredResponse:
        body = problem_body(
            status=exc.status,
            type_=exc.type,
            title=exc.title,
            instance=request.url.path,
            detail=exc.message,
        )
        return StoredResponse(status=exc.status, body=json.dumps(body), headers={})

    stored, replayed = idempotency.run_once(
        services,
        principal.tenant_id,
        principal.subject,
        key,
        idempotency.fingerprint(request.method, request.url.path, request_fingerprint()),
        operation,
        error_response,
    )
    return to_response(stored, replayed=replayed)
