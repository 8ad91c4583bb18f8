"""The audit chain: its canonical bytes, verification against every kind of tampering
(done with plain SQL on the SQLite file, as an intruder would), concurrent appends, and
what happens when an append fails."""

from __future__ import annotations

import hashlib
import itertools
import threading
from contextlib import AbstractContextManager, closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlean

from spine.adapters.sqlite.database import SqliteDatabase
from spine.adapters.sqlite.engine import sqlite_path
from spine.errors import InvalidRequest, Unavailable
from spine.ports import AuditEntry, UnitOfWork
from spine.service import audit
from spine.service.audit import AuditEvent, ChainReport, Sampler
from spine.service.container import Services


def db_file(services: Services) -> Path:
    path = sqlite_path(services.settings.resolved_database_url())
    assert path is not None
    return path


Statement = str | tuple[str, tuple[object, ...]]


def tamper(services: Services, *statements: Statement) -> None:
    """Plain SQL on the file, outside Spine: what an intruder with the file can do."""
    with closing(sqlean.connect(db_file(services))) as conn, conn:
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            conn.execute(sql, params)


ACME = "tenant_id = 'acme'"


def write(services: Services, tenant: str, n: int, *, action: str = "document.upload") -> None:
    for i in range(n):
        entry = audit.record(
            services,
            tenant_id=tenant,
            actor="alice",
            action=action,
            resource=f"doc_{i:032x}",
            request_id=f"req-{tenant}-{i}",
            outcome="success",
        )
        assert entry is not None


def reports(services: Services) -> dict[str, ChainReport]:
    return {report.tenant_id: report for report in audit.verify(services.db)}


@pytest.fixture
def logged(services: Services) -> Services:
    """acme and other have entries 1..5 each, written alternately."""
    for _ in range(5):
        write(services, "acme", 1)
        write(services, "other", 1)
    found = reports(services)
    assert [found["acme"].ok, found["other"].ok] == [True, True]
    assert found["acme"].entries == 5
    return services


def seqs(services: Services, tenant: str) -> list[int]:
    with services.db.read() as uow:
        return [entry.seq for entry in uow.audit.chain(tenant)]


def test_canonical_bytes_are_exactly_the_documented_json() -> None:
    entry = AuditEntry(
        seq=42,
        tenant_id="acme",
        at=datetime(2026, 3, 4, 5, 6, 7, 8, tzinfo=UTC),
        actor="zoë",
        action="document.delete",
        resource="doc_0123",
        request_id="r-1",
        outcome="not-found",
        prev_hash="ab" * 32,
        hash="ignored",
    )
    expected = (
        '{"action":"document.delete","actor":"zo\\u00eb","at":"2026-03-04T05:06:07.000008Z",'
        '"outcome":"not-found","prev_hash":"' + "ab" * 32 + '","request_id":"r-1",'
        '"resource":"doc_0123","seq":42,"tenant":"acme","v":1}'
    ).encode()
    assert audit.canonical_bytes(entry) == expected
    assert audit.entry_hash(entry) == hashlib.sha256(expected).hexdigest()
    # The hash itself is not covered, and any other field is.
    assert audit.entry_hash(replace(entry, hash="other")) == audit.entry_hash(entry)
    assert audit.entry_hash(replace(entry, seq=43)) != audit.entry_hash(entry)


def test_recorded_entries_chain_from_genesis_through_the_head(logged: Services) -> None:
    with logged.db.read() as uow:
        chain = list(uow.audit.chain("acme"))
        head = uow.audit.head("acme")
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5]
    assert chain[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    assert all(e.hash == audit.entry_hash(e) for e in chain)
    assert head is not None
    assert (head.seq, head.hash, head.count) == (5, chain[-1].hash, 5)


def test_an_edited_entry_is_found(logged: Services) -> None:
    tamper(
        logged, "UPDATE audit_log SET outcome = 'forbidden' WHERE seq = 3 AND tenant_id = 'acme'"
    )
    found = reports(logged)
    assert found["acme"].broken_seq == 3
    assert "edited" in (found["acme"].problem or "")
    assert found["other"].ok


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(logged: Services) -> None:
    with logged.db.read() as uow:
        target = next(e for e in uow.audit.chain("acme") if e.seq == 3)
    forged = replace(target, actor="mallory")
    tamper(
        logged,
        (
            "UPDATE audit_log SET actor = 'mallory', hash = ? WHERE seq = 3 AND tenant_id = 'acme'",
            (audit.entry_hash(forged),),
        ),
    )
    assert reports(logged)["acme"].broken_seq == 4


def test_a_deleted_middle_entry_is_found(logged: Services) -> None:
    tamper(logged, "DELETE FROM audit_log WHERE seq = 3 AND tenant_id = 'acme'")
    found = reports(logged)["acme"]
    assert found.broken_seq == 4
    assert "removed" in (found.problem or "")


def test_a_deleted_first_entry_is_found(logged: Services) -> None:
    tamper(logged, "DELETE FROM audit_log WHERE seq = 1 AND tenant_id = 'acme'")
    assert reports(logged)["acme"].broken_seq == 2


def test_a_cut_off_tail_is_found(logged: Services) -> None:
    tamper(logged, "DELETE FROM audit_log WHERE seq IN (4, 5) AND tenant_id = 'acme'")
    found = reports(logged)["acme"]
    assert found.broken_seq == 5
    assert "tail" in (found.problem or "")
    assert reports(logged)["other"].ok


def test_a_reordered_pair_is_found(logged: Services) -> None:
    tamper(
        logged,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2 AND tenant_id = 'acme'",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3 AND tenant_id = 'acme'",
        "UPDATE audit_log SET seq = 3 WHERE seq = -1 AND tenant_id = 'acme'",
    )
    assert reports(logged)["acme"].broken_seq == 2


def test_a_reordered_pair_keeping_its_seqs_is_found(logged: Services) -> None:
    # Swap everything but seq: the rows keep their places, their contents trade places.
    columns = "at, actor, action, resource, request_id, outcome, prev_hash, hash"
    tamper(
        logged,
        # Column names come from the constant above; SQL cannot bind identifiers.
        f"CREATE TEMP TABLE a AS SELECT {columns} FROM audit_log WHERE seq = 2 AND {ACME}",  # noqa: S608
        f"CREATE TEMP TABLE b AS SELECT {columns} FROM audit_log WHERE seq = 3 AND {ACME}",  # noqa: S608
        *(
            f"UPDATE audit_log SET {c} = (SELECT {c} FROM {src}) WHERE seq = {seq} AND {ACME}"  # noqa: S608
            for src, seq in (("b", 2), ("a", 3))
            for c in columns.split(", ")
        ),
    )
    assert reports(logged)["acme"].broken_seq == 2


def test_an_edited_head_is_found(logged: Services) -> None:
    tamper(logged, ("UPDATE audit_heads SET hash = ? WHERE tenant_id = 'acme'", ("f" * 64,)))
    found = reports(logged)["acme"]
    assert (found.broken_seq, found.ok) == (5, False)
    assert "head" in (found.problem or "")


def test_a_head_moved_back_over_a_cut_tail_still_shows_the_count(logged: Services) -> None:
    with logged.db.read() as uow:
        fourth = next(e for e in uow.audit.chain("acme") if e.seq == 4)
    tamper(
        logged,
        "DELETE FROM audit_log WHERE seq = 5 AND tenant_id = 'acme'",
        ("UPDATE audit_heads SET seq = 4, hash = ? WHERE tenant_id = 'acme'", (fourth.hash,)),
    )
    found = reports(logged)["acme"]
    assert not found.ok
    assert "counts 5" in (found.problem or "")


def test_a_head_pointing_back_is_found(logged: Services) -> None:
    tamper(logged, "UPDATE audit_heads SET seq = 3 WHERE tenant_id = 'acme'")
    assert reports(logged)["acme"].broken_seq == 4


def test_a_removed_head_and_a_removed_chain_are_found(logged: Services) -> None:
    tamper(
        logged,
        "DELETE FROM audit_heads WHERE tenant_id = 'acme'",
        "DELETE FROM audit_log WHERE tenant_id = 'other'",
    )
    found = reports(logged)
    assert not found["acme"].ok
    assert found["acme"].broken_seq is None
    assert found["other"].broken_seq == 5


def test_an_entry_moved_to_another_tenant_breaks_both_chains(logged: Services) -> None:
    # Appended to the other chain's end, as a forger who wants it to fit would put it.
    tamper(
        logged,
        "UPDATE audit_log SET tenant_id = 'other', seq = 6 WHERE seq = 3 AND tenant_id = 'acme'",
    )
    found = reports(logged)
    assert found["acme"].broken_seq == 4
    assert found["other"].broken_seq == 6


def test_concurrent_appends_from_threads_and_two_databases_keep_one_chain(
    services: Services,
) -> None:
    # The second database stands in for a second process: its own engines and lock.
    second = SqliteDatabase(services.settings.resolved_database_url())
    other_process = replace(services, db=second)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            target = services if index % 2 else other_process
            write(target, "acme" if index % 3 else "other", 15)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    second.close()
    assert errors == []
    found = reports(services)
    assert {t: (r.ok, r.entries) for t, r in found.items()} == {
        "acme": (True, 75),
        "other": (True, 45),
    }
    assert seqs(services, "acme") == list(range(1, 76))
    assert seqs(services, "other") == list(range(1, 46))


class FailingDatabase:
    """Fault injection: every write transaction fails as a locked database does."""

    def write(self) -> AbstractContextManager[UnitOfWork]:
        raise Unavailable("the database is unavailable", retry_after=2)

    def read(self) -> AbstractContextManager[UnitOfWork]:
        raise AssertionError("not used")

    def ping(self) -> None: ...

    def close(self) -> None: ...


def test_a_failed_append_is_logged_and_counted_and_never_raises(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = replace(services, db=FailingDatabase())
    before = audit.append_failures()
    result = audit.record(
        broken,
        tenant_id="acme",
        actor="jane@example.com",
        action="document.delete",
        resource="doc_1",
        request_id="r1",
        outcome="success",
    )
    assert result is None
    assert audit.append_failures() == before + 1
    logged = capsys.readouterr().out
    assert "audit.append_failed" in logged
    assert "Unavailable" in logged
    assert "jane@example.com" not in logged


@pytest.mark.parametrize(
    "field_values",
    [
        {"resource": "jane@example.com"},
        {"resource": "Quarterly report, draft"},
        {"resource": ""},
        {"action": "Delete Document"},
        {"outcome": "Not Found!"},
        {"request_id": "has spaces"},
    ],
)
def test_free_text_is_refused_and_nothing_is_written(
    services: Services, field_values: dict[str, str]
) -> None:
    fields = {
        "actor": "alice",
        "action": "document.delete",
        "resource": "doc_1",
        "request_id": "r1",
        "outcome": "success",
    } | field_values
    with pytest.raises(ValueError, match="audit"), services.db.write() as uow:
        audit.append(uow, "acme", [AuditEvent(**fields)], at=services.clock())
    assert audit.record(services, tenant_id="acme", **fields) is None
    assert seqs(services, "acme") == []


def test_a_long_subject_is_cut_to_the_column(services: Services) -> None:
    entry = audit.record(
        services,
        tenant_id="acme",
        actor="s" * 1000,
        action="document.delete",
        resource="doc_1",
        request_id="r1",
        outcome="success",
    )
    assert entry is not None
    assert entry.actor == "s" * audit.MAX_ACTOR_CHARS
    assert reports(services)["acme"].ok


def test_pages_follow_the_cursor_and_refuse_a_forged_one(services: Services) -> None:
    write(services, "acme", 5)
    first, cursor = audit.page(services, "acme", limit=3, cursor=None)
    rest, end = audit.page(services, "acme", limit=3, cursor=cursor)
    assert [e.seq for e in first + rest] == [5, 4, 3, 2, 1]
    assert end is None
    with pytest.raises(InvalidRequest):
        audit.page(services, "acme", limit=3, cursor="-1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_sampler_caps_each_minute_and_reports_what_it_dropped() -> None:
    clock = FakeClock()
    sampler = Sampler(per_minute=3, clock=clock)
    first_minute = [sampler.admit("-", "auth.token_rejected") for _ in range(10)]
    assert first_minute == [(True, 0)] * 3 + [(False, 0)] * 7
    assert sampler.admit("acme", "auth.denied") == (True, 0)  # its own budget
    clock.now = 61.0
    assert sampler.admit("-", "auth.token_rejected") == (True, 7)
    assert sampler.admit("-", "auth.token_rejected") == (True, 0)
