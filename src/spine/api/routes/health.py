"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from spine.api.deps import ServicesDep
from spine.api.openapi import problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503, common=False))
def readyz(services: ServicesDep) -> dict[str, str]:
    """The database and the blob store answer; 503 otherwise."""
    services.db.ping()
    services.blobs.ping()
    return {"status": "ready"}
