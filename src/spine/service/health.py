"""Readiness: each dependency checked on its own, for /readyz and ``spine doctor``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from spine.service.container import Services

Status = Literal["ok", "degraded", "failed"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    duration_ms: float


@dataclass(frozen=True)
class Readiness:
    checks: list[Check]

    @property
    def ready(self) -> bool:
        """Serving needs the database and the blob store. An open embedder breaker only
        degrades (uploads queue, keyword search answers): every instance shares the
        embedder, so turning them all unready would make a partial outage a whole one."""
        return all(check.status != "failed" for check in self.checks)

    @property
    def status(self) -> str:
        if not self.ready:
            return "unready"
        return "degraded" if any(c.status == "degraded" for c in self.checks) else "ready"


def _timed(name: str, probe: Callable[[], tuple[Status, str]]) -> Check:
    started = time.perf_counter()
    try:
        status, detail = probe()
    except Exception as exc:
        # The type only: a message may hold a path or a host that callers must not learn.
        status, detail = "failed", type(exc).__name__
    return Check(name, status, detail, round((time.perf_counter() - started) * 1000, 2))


def readiness(services: Services) -> Readiness:
    def database() -> tuple[Status, str]:
        services.db.ping()
        return "ok", "answers"

    def blob_store() -> tuple[Status, str]:
        services.blobs.ping()
        return "ok", "writable"

    def embedder() -> tuple[Status, str]:
        if services.breaker is None:
            return "ok", f"in-process model {services.embedder.model_id}"
        state = services.breaker.state
        return ("ok" if state == "closed" else "degraded"), f"breaker {state}"

    return Readiness(
        [
            _timed("database", database),
            _timed("blob_store", blob_store),
            _timed("embedder", embedder),
        ]
    )
