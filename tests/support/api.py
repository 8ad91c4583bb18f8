"""Helpers to drive the HTTP API in tests."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
from starlette.testclient import TestClient

from spine.domain.auth import Role
from spine.service.container import utc_now
from spine.service.tokens import create_token
from spine.settings import Settings

TERMINAL = {"SUCCEEDED", "FAILED"}


def bearer(
    settings: Settings,
    secret: str,
    tenant: str,
    role: Role = Role.WRITER,
    *,
    scopes: Iterable[str] = (),
    subject: str = "test",
) -> dict[str, str]:
    token = create_token(
        secret,
        tenant_id=tenant,
        role=role,
        subject=subject,
        ttl_seconds=600,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        now=utc_now(),
        scopes=scopes,
    )
    return {"Authorization": f"Bearer {token}"}


def wait_for_job(
    client: TestClient | httpx.Client,
    job_id: str,
    headers: dict[str, str],
    *,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Poll a job until it ends. The timeout only bounds a hung test; it asserts nothing."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job.get("state") in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not end: {job}")
        time.sleep(0.1)
