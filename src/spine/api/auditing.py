"""Auditing at the HTTP edge: a route wraps its action in ``audited``; refused tokens
(401) and refused roles (403) are recorded by the exception handlers ``install`` adds.

A route::

    with audited(request, principal, Action.DOCUMENT_DELETE, document_id) as trail:
        documents.delete(services, principal.tenant_id, document_id)
        # trail.resources = [...] when the ids are only known now; trail.outcome to
        # say more than "success" (e.g. "duplicate")

On a clean exit the entry says ``success``; on a SpineError it says the error's problem
type and the error goes on. The entry is written after the action, in a transaction of
its own, and a failure to write it is logged and counted but never fails the request
(``service.audit.record_all``). Inside an Idempotency-Key's operation a replay writes no
second entry, because nothing happened twice.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from spine.domain.auth import Principal
from spine.errors import Forbidden, SpineError, Unauthenticated
from spine.service import audit
from spine.service.audit import ANONYMOUS, NO_REQUEST, NO_RESOURCE, NO_TENANT, Action, AuditEvent
from spine.service.container import Services

#: The shape of Spine's ids (``doc_`` + 32 hex). A caller-supplied id of any other shape
#: is kept as "-": a 404 on ``DELETE /v1/documents/jane@example.com`` must not put the
#: address in a log that outlives every document.
SPINE_ID = re.compile(r"[a-z]{1,16}_[0-9a-f]{32}")
#: Entries per (tenant, refusal) and minute in one process; the rest are counted.
AUTH_EVENTS_PER_MINUTE = 60
SUPPRESSED = "suppressed"
#: The actor of a summary of suppressed refusals: several callers, none singled out.
SEVERAL = "-"


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", NO_REQUEST))


def resource_id(value: str | None) -> str:
    return value if value is not None and SPINE_ID.fullmatch(value) else NO_RESOURCE


@dataclass
class Trail:
    """What the wrapped action touched (one entry per resource) and how it ended."""

    resources: list[str] = field(default_factory=list)
    outcome: str | None = None


@contextmanager
def audited(
    request: Request, principal: Principal, action: str, resource: str | None = None
) -> Iterator[Trail]:
    """Record ``action`` by ``principal`` with its outcome once the block ends."""
    trail = Trail([resource] if resource is not None else [])
    try:
        yield trail
    except SpineError as exc:
        _write(request, principal, action, trail, exc.type)
        raise
    except Exception:
        _write(request, principal, action, trail, "internal-error")
        raise
    _write(request, principal, action, trail, trail.outcome or audit.SUCCESS)


def _write(request: Request, principal: Principal, action: str, trail: Trail, outcome: str) -> None:
    resources = [resource_id(r) for r in trail.resources] or [NO_RESOURCE]
    rid = request_id(request)
    audit.record_all(
        _services(request),
        principal.tenant_id,
        [AuditEvent(principal.subject, action, r, rid, outcome) for r in resources],
    )


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def remember_principal(request: Request, principal: Principal) -> None:
    """Tell a later 403 whom it refused (``deps`` calls this once the token checks out)."""
    request.state.principal = principal


def install(app: FastAPI, *, per_minute: int = AUTH_EVENTS_PER_MINUTE) -> None:
    """Record every 401 and 403 before the problem handler renders it."""
    app.state.audit_sampler = audit.Sampler(per_minute)
    app.add_exception_handler(Unauthenticated, _refused)
    app.add_exception_handler(Forbidden, _refused)


async def _refused(request: Request, exc: Exception) -> Response:
    await run_in_threadpool(_record_refusal, request, exc)
    render = cast(
        Callable[[Request, Exception], Awaitable[Response]],
        request.app.exception_handlers[SpineError],
    )
    return await render(request, exc)


def _record_refusal(request: Request, exc: Exception) -> None:
    if isinstance(exc, Unauthenticated):
        # Whatever tenant the token claims is unverified: it must not reach a tenant's
        # chain, or anyone could write into (and flood) any tenant's log.
        tenant_id, actor, action = NO_TENANT, ANONYMOUS, Action.TOKEN_REJECTED
    else:
        principal: Principal | None = getattr(request.state, "principal", None)
        tenant_id, actor = (
            (principal.tenant_id, principal.subject) if principal else (NO_TENANT, ANONYMOUS)
        )
        action = Action.DENIED
    sampler: audit.Sampler = request.app.state.audit_sampler
    admitted, carried = sampler.admit(tenant_id, action)
    rid = request_id(request)
    events: list[AuditEvent] = []
    if carried:
        events.append(AuditEvent(SEVERAL, action, f"count:{carried}", rid, SUPPRESSED))
    if admitted:
        status = exc.type if isinstance(exc, SpineError) else "forbidden"
        events.append(AuditEvent(actor, action, _route(request), rid, status))
    audit.record_all(_services(request), tenant_id, events)


def _route(request: Request) -> str:
    """The route's template, never the path: paths carry whatever the caller typed."""
    template = getattr(request.scope.get("route"), "path", None)
    return (f"{request.method} {template}" if template else request.method)[:256]
