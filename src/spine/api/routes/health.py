"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from spine.api.deps import ServicesDep
from spine.api.openapi import problem_responses
from spine.api.problems import problem
from spine.service.health import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers; touches nothing else, so it stays cheap."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503, common=False))
def readyz(request: Request, services: ServicesDep) -> Any:
    """Each dependency's status: the database, the blob store and the embedder's breaker.

    200 while the database and blob store answer (``degraded`` when the breaker is not
    closed); 503 problem+json with the same ``checks`` otherwise."""
    report = readiness(services)
    checks = {
        check.name: {
            "status": check.status,
            "detail": check.detail,
            "duration_ms": check.duration_ms,
        }
        for check in report.checks
    }
    if not report.ready:
        failed = ", ".join(c.name for c in report.checks if c.status == "failed")
        return problem(
            request,
            status=503,
            type_="unavailable",
            title="Service unavailable",
            detail=f"not ready: {failed}",
            extra={"checks": checks},
        )
    return JSONResponse({"status": report.status, "checks": checks})
