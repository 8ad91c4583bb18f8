"""Idempotency keys with Stripe's semantics, independent of HTTP.

A key is claimed before the operation runs; the operation's outcome (success or a client
error) is stored and replayed for ``idempotency_ttl_seconds``. A server error releases
the key, so the client's retry runs the operation again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from spine.errors import InvalidRequest, SpineError
from spine.ports import StoredResponse
from spine.service.container import Services

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def fingerprint(*parts: Any) -> str:
    """A stable digest of what makes two requests "the same request"."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    if not _KEY.match(key):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 visible ASCII characters")
    return key


def scoped_key(subject: str, key: str) -> str:
    """The stored form of a caller's key: keys belong to one subject, so another subject
    of the tenant who sends the same key runs their own request instead of receiving
    the first subject's stored response (or learning that the key exists)."""
    return hashlib.sha256(f"{subject}\0{validate_key(key)}".encode()).hexdigest()


def run_once(
    services: Services,
    tenant_id: str,
    subject: str,
    key: str,
    request_fingerprint: str,
    operation: Callable[[], StoredResponse],
    error_response: Callable[[SpineError], StoredResponse],
) -> tuple[StoredResponse, bool]:
    """Run ``operation`` at most once per subject and key; returns (response, replayed)."""
    settings = services.settings
    key = scoped_key(subject, key)
    with services.db.write() as uow:
        stored = uow.idempotency.begin(
            tenant_id,
            key,
            fingerprint=request_fingerprint,
            now=services.clock(),
            ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
            lock=timedelta(seconds=settings.idempotency_lock_seconds),
        )
    if stored is not None:
        return stored, True
    try:
        response = operation()
    except SpineError as exc:
        if exc.status >= 500:
            _release(services, tenant_id, key)
            raise
        _complete(services, tenant_id, key, error_response(exc))
        raise
    except BaseException:
        _release(services, tenant_id, key)
        raise
    _complete(services, tenant_id, key, response)
    return response, False


def _complete(services: Services, tenant_id: str, key: str, response: StoredResponse) -> None:
    with services.db.write() as uow:
        uow.idempotency.complete(tenant_id, key, response)


def _release(services: Services, tenant_id: str, key: str) -> None:
    with services.db.write() as uow:
        uow.idempotency.release(tenant_id, key)
