"""Tenant keys, the PII vault and PII policies in SQL."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update

from spine.adapters.sql.dialects import conflict_insert, position_in
from spine.adapters.sql.tables import chunks, documents, idempotency_keys, pii_policies, pii_vault
from spine.adapters.sql.tables import tenant_keys as tenant_keys_table
from spine.domain.privacy import CustomPattern, PiiAction, PiiPolicy
from spine.ports import StoredPolicy, VaultEntry, WrappedTenantKeys


def policy_to_json(policy: PiiPolicy) -> dict[str, Any]:
    return {
        "actions": {kind: action.value for kind, action in sorted(policy.actions.items())},
        "custom": [{"kind": c.kind, "pattern": c.pattern} for c in policy.custom],
    }


def policy_from_json(raw: dict[str, Any]) -> PiiPolicy:
    return PiiPolicy(
        actions={kind: PiiAction(action) for kind, action in (raw.get("actions") or {}).items()},
        custom=tuple(
            CustomPattern(item["kind"], item["pattern"]) for item in raw.get("custom") or ()
        ),
    )


class SqlPrivacyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- tenant keys ------------------------------------------------------------------

    def tenant_keys(self, tenant_id: str) -> WrappedTenantKeys | None:
        row = self._conn.execute(
            select(tenant_keys_table).where(tenant_keys_table.c.tenant_id == tenant_id)
        ).first()
        if row is None:
            return None
        return WrappedTenantKeys(
            master_key_id=row.master_key_id,
            wrapped_data_key=bytes(row.wrapped_data_key),
            wrapped_token_key=bytes(row.wrapped_token_key),
            created_at=row.created_at,
        )

    def add_tenant_keys(self, tenant_id: str, keys: WrappedTenantKeys) -> None:
        values = {
            "tenant_id": tenant_id,
            "master_key_id": keys.master_key_id,
            "wrapped_data_key": keys.wrapped_data_key,
            "wrapped_token_key": keys.wrapped_token_key,
            "created_at": keys.created_at,
        }
        # Insert-or-ignore rather than read-then-insert: another process may have made the
        # tenant's keys since this one looked, and its keys may already protect data.
        statement = conflict_insert(self._conn, tenant_keys_table).on_conflict_do_nothing()
        self._conn.execute(statement.values(**values))

    # -- policies ---------------------------------------------------------------------

    def policy(self, tenant_id: str) -> StoredPolicy | None:
        row = self._conn.execute(
            select(pii_policies).where(pii_policies.c.tenant_id == tenant_id)
        ).first()
        if row is None:
            return None
        return StoredPolicy(policy_from_json(row.policy), row.updated_at, row.updated_by)

    def set_policy(
        self, tenant_id: str, policy: PiiPolicy, *, now: datetime, updated_by: str
    ) -> None:
        values = {"policy": policy_to_json(policy), "updated_at": now, "updated_by": updated_by}
        result = self._conn.execute(
            update(pii_policies).where(pii_policies.c.tenant_id == tenant_id).values(**values)
        )
        if result.rowcount == 0:
            self._conn.execute(pii_policies.insert().values(tenant_id=tenant_id, **values))

    # -- the vault ----------------------------------------------------------------------

    def replace_vault(
        self, tenant_id: str, document_id: str, entries: Sequence[VaultEntry], *, now: datetime
    ) -> None:
        self.delete_vault(tenant_id, document_id)
        if entries:
            self._conn.execute(
                pii_vault.insert(),
                [
                    {
                        "tenant_id": tenant_id,
                        "document_id": document_id,
                        "token": entry.token,
                        "kind": entry.kind,
                        "nonce": entry.nonce,
                        "ciphertext": entry.ciphertext,
                        "created_at": now,
                    }
                    for entry in entries
                ],
            )

    def vault(self, tenant_id: str, document_id: str) -> builtins.list[VaultEntry]:
        rows = self._conn.execute(
            select(pii_vault.c.token, pii_vault.c.kind, pii_vault.c.nonce, pii_vault.c.ciphertext)
            .where((pii_vault.c.tenant_id == tenant_id) & (pii_vault.c.document_id == document_id))
            .order_by(pii_vault.c.id)
        )
        return [VaultEntry(r.token, r.kind, bytes(r.nonce), bytes(r.ciphertext)) for r in rows]

    def delete_vault(self, tenant_id: str, document_id: str) -> int:
        result = self._conn.execute(
            delete(pii_vault).where(
                (pii_vault.c.tenant_id == tenant_id) & (pii_vault.c.document_id == document_id)
            )
        )
        return int(result.rowcount)

    def documents_with_tokens(self, tenant_id: str, tokens: Sequence[str]) -> dict[str, int]:
        if not tokens:
            return {}
        rows = self._conn.execute(
            select(pii_vault.c.document_id, func.count())
            .where((pii_vault.c.tenant_id == tenant_id) & pii_vault.c.token.in_(list(tokens)))
            .group_by(pii_vault.c.document_id)
            .order_by(pii_vault.c.document_id)
        )
        return {document_id: int(count) for document_id, count in rows}

    def forget_tokens(self, tenant_id: str, tokens: Sequence[str]) -> int:
        if not tokens:
            return 0
        result = self._conn.execute(
            delete(pii_vault).where(
                (pii_vault.c.tenant_id == tenant_id) & pii_vault.c.token.in_(list(tokens))
            )
        )
        return int(result.rowcount)

    def documents_containing(self, tenant_id: str, literals: Sequence[str]) -> builtins.list[str]:
        needles = [literal.lower() for literal in dict.fromkeys(literals) if literal]
        if not needles:
            return []
        # A substring test, not LIKE: a value may hold % or _, LIKE's wildcards.
        in_chunks = select(chunks.c.document_id).where(
            (chunks.c.tenant_id == tenant_id)
            & or_(*(position_in(func.lower(chunks.c.text), n) > 0 for n in needles))
        )
        in_titles = select(documents.c.id).where(
            (documents.c.tenant_id == tenant_id)
            & or_(
                *(position_in(func.lower(documents.c.title), n) > 0 for n in needles),
                *(position_in(func.lower(documents.c.filename), n) > 0 for n in needles),
            )
        )
        rows = self._conn.execute(in_chunks.union(in_titles))
        return sorted({row[0] for row in rows})

    # -- responses that quote a document ------------------------------------------------

    def forget_responses_mentioning(self, tenant_id: str, needle: str) -> int:
        if not needle:
            return 0
        result = self._conn.execute(
            delete(idempotency_keys).where(
                (idempotency_keys.c.tenant_id == tenant_id)
                & idempotency_keys.c.response_body.is_not(None)
                & (position_in(idempotency_keys.c.response_body, needle) > 0)
            )
        )
        return int(result.rowcount)
