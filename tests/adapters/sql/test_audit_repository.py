"""The audit repository on real SQLite: appends move the head by compare-and-set, pages
are per tenant and newest first, chains stream oldest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete

from spine.adapters.sql.tables import audit_log
from spine.errors import Conflict
from spine.ports import AuditEntry, AuditHead, Database
from support.rows import unscoped

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def entry(seq: int, tenant: str, prev: str, *, action: str = "document.upload") -> AuditEntry:
    return AuditEntry(
        seq=seq,
        tenant_id=tenant,
        at=T0 + timedelta(seconds=seq),
        actor="alice",
        action=action,
        resource=f"doc_{seq:032x}",
        request_id=f"req-{seq}",
        outcome="success",
        prev_hash=prev,
        hash=f"{seq:064x}",
    )


def append(db: Database, tenant: str, *, action: str = "document.upload") -> AuditEntry:
    with db.write() as uow:
        head = uow.audit.head(tenant)
        seq = (head.seq if head else 0) + 1
        new = entry(seq, tenant, head.hash if head else "0" * 64, action=action)
        uow.audit.append(tenant, new, expected=head)
    return new


def test_appends_move_the_head_and_round_trip_every_field(db: Database) -> None:
    first = append(db, "acme")
    second = append(db, "acme")
    with db.read() as uow:
        assert uow.audit.head("acme") == AuditHead("acme", second.seq, second.hash, 2)
        assert list(uow.audit.chain("acme")) == [first, second]
    assert second.prev_hash == first.hash
    assert first.at == T0 + timedelta(seconds=first.seq)  # microseconds survive


def test_seq_and_pages_are_per_tenant_newest_first(db: Database) -> None:
    acme = [append(db, "acme") for _ in range(5)]
    other = append(db, "other")
    assert [e.seq for e in acme] == [1, 2, 3, 4, 5]
    assert other.seq == 1  # no tenant learns how busy the others are
    with db.read() as uow:
        first_page = uow.audit.page("acme", limit=2, before=None)
        older = uow.audit.page("acme", limit=10, before=first_page[-1].seq)
        assert [e.seq for e in first_page] == [5, 4]
        assert [e.seq for e in older] == [3, 2, 1]
        assert uow.audit.page("other", limit=10, before=None) == [other]
        assert uow.audit.page("nobody", limit=10, before=None) == []
        assert uow.housekeeping.audited_tenants() == {"acme", "other"}


def test_a_stale_head_is_refused_and_nothing_is_stored(db: Database) -> None:
    first = append(db, "acme")
    stale = AuditHead("acme", first.seq, first.hash, 1)
    append(db, "acme")
    with pytest.raises(Conflict), db.write() as uow:
        uow.audit.append("acme", entry(2, "acme", first.hash), expected=stale)
    with db.read() as uow:
        assert [e.seq for e in uow.audit.chain("acme")] == [1, 2]
        head = uow.audit.head("acme")
        assert head is not None
        assert head.count == 2


def test_a_second_first_entry_is_refused(db: Database) -> None:
    append(db, "acme")
    with pytest.raises(Conflict), db.write() as uow:
        uow.audit.append("acme", entry(1, "acme", "0" * 64), expected=None)
    with db.read() as uow:
        assert len(list(uow.audit.chain("acme"))) == 1


def test_an_entry_of_another_tenant_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="another tenant"), db.write() as uow:
        uow.audit.append("acme", entry(1, "other", "0" * 64), expected=None)


def test_tenants_include_a_head_whose_entries_are_gone(db: Database, tmp_path: Path) -> None:
    append(db, "acme")
    # Only a tamperer does this, outside Spine; verification must still see the tenant.
    with db.write() as uow:
        unscoped(uow).execute(delete(audit_log))
    with db.read() as uow:
        assert uow.housekeeping.audited_tenants() == {"acme"}
