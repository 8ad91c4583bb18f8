"""Idempotency keys: one row per (tenant, key), claimed before the request runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from spine.adapters.sql.tables import idempotency_keys
from spine.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from spine.ports import StoredResponse

IN_FLIGHT = "in_flight"
DONE = "done"


class SqlIdempotencyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def begin(
        self,
        tenant_id: str,
        key: str,
        *,
        fingerprint: str,
        now: datetime,
        ttl: timedelta,
        lock: timedelta,
    ) -> StoredResponse | None:
        """Claim ``key`` for a request, or return the response it already has.

        Raises when the key belongs to a different request, or while its first request is
        still running. A claim whose request died holds only for ``lock``; then the key
        can be claimed again, so a crash never blocks a key for its whole TTL.
        """
        where = (idempotency_keys.c.tenant_id == tenant_id) & (idempotency_keys.c.key == key)
        row = self._conn.execute(select(idempotency_keys).where(where)).first()
        if row is not None and row.expires_at <= now:
            self._conn.execute(delete(idempotency_keys).where(where))
            row = None
        if row is None:
            self._conn.execute(
                idempotency_keys.insert().values(
                    tenant_id=tenant_id,
                    key=key,
                    fingerprint=fingerprint,
                    state=IN_FLIGHT,
                    locked_until=now + lock,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
            return None
        if row.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was first used with different parameters"
            )
        if row.state == DONE:
            return StoredResponse(
                status=row.status_code,
                body=row.response_body,
                headers=dict(row.response_headers or {}),
            )
        if row.locked_until is not None and row.locked_until > now:
            seconds = max(1, int((row.locked_until - now).total_seconds()))
            raise IdempotencyKeyInFlight(
                "the first request with this Idempotency-Key is still running",
                retry_after=min(seconds, 5),
            )
        self._conn.execute(update(idempotency_keys).where(where).values(locked_until=now + lock))
        return None

    def complete(self, tenant_id: str, key: str, response: StoredResponse) -> None:
        self._conn.execute(
            update(idempotency_keys)
            .where((idempotency_keys.c.tenant_id == tenant_id) & (idempotency_keys.c.key == key))
            .values(
                state=DONE,
                status_code=response.status,
                response_body=response.body,
                response_headers=response.headers,
                locked_until=None,
            )
        )

    def release(self, tenant_id: str, key: str) -> None:
        self._conn.execute(
            delete(idempotency_keys).where(
                (idempotency_keys.c.tenant_id == tenant_id) & (idempotency_keys.c.key == key)
            )
        )


def purge_expired_keys(conn: Connection, *, now: datetime, limit: int) -> int:
    """Drop up to ``limit`` expired keys of any tenant (housekeeping, not a query): only
    :class:`SqlHousekeeping` calls this."""
    expired = (
        select(idempotency_keys.c.tenant_id, idempotency_keys.c.key)
        .where(idempotency_keys.c.expires_at <= now)
        .limit(limit)
    )
    rows = conn.execute(expired).all()
    for tenant_id, key in rows:
        conn.execute(
            delete(idempotency_keys).where(
                (idempotency_keys.c.tenant_id == tenant_id)
                & (idempotency_keys.c.key == key)
                & (idempotency_keys.c.expires_at <= now)
            )
        )
    return len(rows)
