"""Tenant scoping is a property of the repository layer, checked three ways.

1. Shape: every public method of every tenant repository, the Protocols in spine.ports
   and the SQL classes behind the unit of work alike, takes ``tenant_id`` first. Only the
   ports listed in TENANT_BLIND (the worker's dispatcher, housekeeping) may do otherwise.
2. Statements: every public method of the SQL tenant repositories is run once against a
   real SQLite file while every statement is captured; each must constrain ``tenant_id``
   (in its WHERE clause, or its column list for an INSERT) and carry the tenant's value.
3. Behaviour: a write under the wrong tenant finds nothing and leaves every row as it was.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, get_type_hints

import pytest
from sqlalchemy import Engine, event, select

from spine import ports
from spine.adapters.sql import migrate, tables
from spine.adapters.sqlite.database import SqliteDatabase, SqliteUnitOfWork
from spine.adapters.sqlite.engine import create_sqlite_engine
from spine.domain.documents import Document, new_id
from spine.domain.jobs import Job, JobError, JobState, RetryDecision, RetryPolicy
from spine.errors import LeaseLost, NotFound
from spine.ports import StoredResponse
from support.rows import document_row, job_row

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TENANT = "tenant-under-test"
OTHER = "someone-else"

#: The ports that serve every tenant by design. Adding one here is a security decision.
TENANT_BLIND = {ports.JobDispatcher, ports.Housekeeping, ports.SloRepository}


# -- 1. shape ----------------------------------------------------------------------------


def methods_without_a_leading_tenant(cls: type) -> list[str]:
    offenders = []
    for name, function in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        parameters = list(inspect.signature(function).parameters.values())[1:]  # self
        first = parameters[0] if parameters else None
        if (
            first is None
            or first.name != "tenant_id"
            or first.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD
        ):
            offenders.append(f"{cls.__name__}.{name}")
    return offenders


def unit_of_work_ports() -> dict[str, type]:
    """What each property of ports.UnitOfWork hands out: new properties are included."""
    found = {}
    for name, member in inspect.getmembers(ports.UnitOfWork):
        if isinstance(member, property) and member.fget is not None:
            found[name] = get_type_hints(member.fget)["return"]
    return found


def test_the_unit_of_work_hands_out_tenant_repositories_and_two_tenant_blind_ports() -> None:
    handed_out = unit_of_work_ports()
    assert {"documents", "jobs", "index", "idempotency", "audit", "privacy"} <= handed_out.keys()
    assert handed_out["dispatch"] is ports.JobDispatcher
    assert handed_out["housekeeping"] is ports.Housekeeping
    assert handed_out["slo"] is ports.SloRepository  # counts of every tenant's events
    assert set(handed_out.values()) & TENANT_BLIND == TENANT_BLIND


def test_every_tenant_repository_protocol_method_takes_tenant_id_first() -> None:
    repositories = [cls for cls in unit_of_work_ports().values() if cls not in TENANT_BLIND]
    offenders = [name for cls in repositories for name in methods_without_a_leading_tenant(cls)]
    assert offenders == []


def test_every_sql_tenant_repository_method_takes_tenant_id_first() -> None:
    blind = {"dispatch", "housekeeping", "slo"}
    classes = [
        get_type_hints(SqliteUnitOfWork)[field.name]
        for field in dataclasses.fields(SqliteUnitOfWork)
        if field.name not in blind
    ]
    assert len(classes) >= 6
    offenders = [name for cls in classes for name in methods_without_a_leading_tenant(cls)]
    assert offenders == []


def test_the_shape_check_catches_a_method_without_a_leading_tenant() -> None:
    class LeakyRepository(Protocol):
        def scoped(self, tenant_id: str, key: str) -> None: ...

        def everything(self) -> list[str]: ...

        def keyword_tenant(self, *, tenant_id: str) -> None: ...

        def tenant_second(self, key: str, tenant_id: str) -> None: ...

    assert methods_without_a_leading_tenant(LeakyRepository) == [
        "LeakyRepository.everything",
        "LeakyRepository.keyword_tenant",
        "LeakyRepository.tenant_second",
    ]


def test_the_tenant_blind_ports_are_not_on_any_tenant_repository() -> None:
    """Their methods used to live on the tenant repositories; they must not come back."""
    blind_methods = {"claim", "reap_expired", "all_blob_refs", "purge_expired"}
    for cls in (ports.JobRepository, ports.DocumentRepository, ports.IdempotencyRepository):
        assert blind_methods.isdisjoint(dir(cls)), cls.__name__


# -- 2. statements -------------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    database = f"sqlite:///{tmp_path / 'spine.db'}"
    migrate.upgrade(database)
    return database


@dataclasses.dataclass
class Captured:
    method: str
    statement: str
    parameters: Any


class StatementRecorder:
    """Captures each statement with the repository method that issued it."""

    def __init__(self, engine: Engine) -> None:
        self.current: str | None = None
        self.captured: list[Captured] = []
        self.called: set[str] = set()
        event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any
    ) -> None:
        if self.current is not None:
            self.captured.append(Captured(self.current, statement, parameters))

    def wrap(self, label: str, repository: Any) -> Any:
        recorder = self

        class Recording:
            def __getattr__(self, name: str) -> Callable[..., Any]:
                method = getattr(repository, name)

                def call(*args: Any, **kwargs: Any) -> Any:
                    recorder.current = f"{label}.{name}"
                    recorder.called.add(recorder.current)
                    try:
                        return method(*args, **kwargs)
                    finally:
                        recorder.current = None

                return call

        return Recording()


def public_methods(cls: type) -> set[str]:
    return {
        name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")
    }


def flatten(parameters: Any) -> list[Any]:
    if isinstance(parameters, dict):
        return list(parameters.values())
    if isinstance(parameters, list | tuple):
        return [value for item in parameters for value in flatten(item)]
    return [parameters]


def statement_problem(captured: Captured) -> str | None:
    sql = " ".join(captured.statement.split())
    verb = sql.split(" ", 1)[0].upper()
    if verb == "INSERT":
        columns = sql.split("(", 1)[1].split(")", 1)[0]
        if not re.search(r"\btenant_id\b", columns):
            return "inserts no tenant_id"
    elif verb in ("SELECT", "UPDATE", "DELETE"):
        where = re.split(r"\bWHERE\b", sql, maxsplit=1, flags=re.IGNORECASE)
        if len(where) < 2 or not re.search(r"\btenant_id\s*=", where[1]):
            return "has no tenant_id condition in its WHERE clause"
    else:
        return f"is an unexpected {verb}"
    if TENANT not in flatten(captured.parameters):
        return "does not carry the tenant's value"
    return None


def make_document(document_id: str, sha: str = "a" * 64) -> Document:
    return document_row(TENANT, document_id, filename="t.txt", sha256=sha, at=T0)


def make_job(document_id: str, created_by: str | None = "alice") -> Job:
    return job_row(TENANT, document_id=document_id, created_at=T0, created_by=created_by)


def finished_job(job: Job) -> Job:
    """``job`` as ``spine import`` restores it: SUCCEEDED, with its history, new id."""
    return dataclasses.replace(
        job,
        id=new_id("job"),
        state=JobState.SUCCEEDED,
        lease_token=None,
        lease_expires_at=None,
        finished_at=T0,
        events=job.events,
    )


def claim_one(uow: SqliteUnitOfWork) -> Job:
    job = uow.dispatch.claim(worker_id="w", now=T0, lease_seconds=30)
    assert job is not None
    assert job.lease_token is not None
    return job


def test_every_statement_of_the_tenant_repositories_is_scoped_to_the_tenant(url: str) -> None:
    engine = create_sqlite_engine(url, immediate=True)
    recorder = StatementRecorder(engine)
    try:
        with engine.begin() as conn:
            uow = SqliteUnitOfWork.on(conn)
            documents = recorder.wrap("documents", uow.documents)
            jobs = recorder.wrap("jobs", uow.jobs)
            keys = recorder.wrap("idempotency", uow.idempotency)

            doc_id = new_id("doc")
            documents.add(TENANT, make_document(doc_id))
            documents.get(TENANT, doc_id)
            documents.list(TENANT, limit=10, after=None)
            documents.list(TENANT, limit=10, after=doc_id)
            documents.find_by_sha256(TENANT, "a" * 64)
            documents.count_with_sha256(TENANT, "a" * 64)
            job = make_job(doc_id)
            jobs.enqueue(TENANT, job)
            documents.set_latest_job(TENANT, doc_id, job.id)
            jobs.get(TENANT, job.id, created_by="alice")
            jobs.list(TENANT, state=JobState.PENDING, created_by="alice", limit=5, after=job.id)
            jobs.count_by_state(TENANT, created_by="alice")

            running = claim_one(uow)  # the dispatcher is not under test here
            assert running.lease_token is not None
            jobs.heartbeat(
                TENANT, running.id, lease_token=running.lease_token, now=T0, lease_seconds=30
            )
            jobs.fail(
                TENANT,
                running.id,
                lease_token=running.lease_token,
                decision=RetryDecision(JobState.FAILED, None, "permanent"),
                error=JobError("extraction-failed", "bad"),
                now=T0,
            )
            jobs.failed_ids(TENANT, error_type="extraction-failed", created_by="alice", limit=5)
            jobs.requeue(TENANT, job.id, now=T0, detail="retried", queued_by="bob")
            again = claim_one(uow)
            assert again.lease_token is not None
            jobs.succeed(TENANT, again.id, lease_token=again.lease_token, now=T0)
            documents.mark_processed(TENANT, doc_id, chunk_count=0, title="t", now=T0)
            jobs.delete_for_document(TENANT, doc_id)
            documents.delete(TENANT, doc_id)
            jobs.restore(TENANT, finished_job(again))

            keys.begin(
                TENANT,
                "k1",
                fingerprint="f",
                now=T0,
                ttl=timedelta(hours=1),
                lock=timedelta(seconds=30),
            )
            keys.complete(TENANT, "k1", StoredResponse(200, "{}", {}))
            keys.begin(  # expired by now: deleted and claimed afresh
                TENANT,
                "k1",
                fingerprint="f",
                now=T0 + timedelta(hours=2),
                ttl=timedelta(hours=1),
                lock=timedelta(seconds=30),
            )
            keys.begin(  # still locked by the claim above, whose request "died": reclaimed
                TENANT,
                "k1",
                fingerprint="f",
                now=T0 + timedelta(hours=2, minutes=1),
                ttl=timedelta(hours=1),
                lock=timedelta(seconds=30),
            )
            keys.release(TENANT, "k1")
    finally:
        engine.dispose()

    expected = (
        {f"documents.{name}" for name in public_methods(type(uow.documents))}
        | {f"jobs.{name}" for name in public_methods(type(uow.jobs))}
        | {f"idempotency.{name}" for name in public_methods(type(uow.idempotency))}
    )
    assert recorder.called == expected, "every public method must be exercised here"
    kinds = {" ".join(c.statement.split()).split(" ", 1)[0].upper() for c in recorder.captured}
    assert {"INSERT", "SELECT", "UPDATE", "DELETE"} <= kinds
    problems = [
        f"{c.method}: {problem}: {c.statement}"
        for c in recorder.captured
        if (problem := statement_problem(c)) is not None
    ]
    assert problems == []


def test_the_statement_check_catches_an_unscoped_statement() -> None:
    cases = {
        "SELECT id FROM documents": "has no tenant_id condition",
        "SELECT id FROM documents WHERE sha256 = ?": "has no tenant_id condition",
        "DELETE FROM jobs WHERE id = ?": "has no tenant_id condition",
        "UPDATE jobs SET state=? WHERE jobs.id = ?": "has no tenant_id condition",
        "INSERT INTO jobs (id, state) VALUES (?, ?)": "inserts no tenant_id",
        "SELECT id FROM jobs WHERE tenant_id = ?": "does not carry the tenant's value",
    }
    for statement, problem in cases.items():
        found = statement_problem(Captured("x", statement, ("other",)))
        assert found is not None
        assert problem in found, statement
    scoped = Captured("x", "SELECT id FROM jobs WHERE jobs.tenant_id = ?", (TENANT,))
    assert statement_problem(scoped) is None


# -- 3. behaviour --------------------------------------------------------------------------


@pytest.fixture
def db(url: str) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(url)
    yield database
    database.close()


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_sqlite_engine(url, immediate=False)
    try:
        with engine.connect() as conn:
            return {
                table.name: sorted(tuple(map(str, row)) for row in conn.execute(select(table)))
                for table in (
                    tables.documents,
                    tables.jobs,
                    tables.job_events,
                    tables.idempotency_keys,
                )
            }
    finally:
        engine.dispose()


def test_writes_under_the_wrong_tenant_find_nothing_and_change_nothing(
    db: SqliteDatabase, url: str
) -> None:
    doc_id = new_id("doc")
    with db.write() as uow:
        uow.documents.add(TENANT, make_document(doc_id))
        failed = make_job(doc_id)
        uow.jobs.enqueue(TENANT, failed)
        first = claim_one(uow)
        assert first.lease_token is not None
        uow.jobs.fail(
            TENANT,
            first.id,
            lease_token=first.lease_token,
            decision=RetryDecision(JobState.FAILED, None, "permanent"),
            error=JobError("extraction-failed", "bad"),
            now=T0,
        )
        uow.jobs.enqueue(TENANT, make_job(doc_id))
        running = claim_one(uow)
        assert running.lease_token is not None
        token = running.lease_token
        uow.idempotency.begin(
            TENANT, "k", fingerprint="f", now=T0, ttl=timedelta(hours=1), lock=timedelta(0)
        )
    before = snapshot(url)

    refused: list[tuple[type[Exception], Callable[[SqliteUnitOfWork], Any]]] = [
        (NotFound, lambda uow: uow.documents.get(OTHER, doc_id)),
        (NotFound, lambda uow: uow.documents.delete(OTHER, doc_id)),
        (NotFound, lambda uow: uow.documents.set_latest_job(OTHER, doc_id, running.id)),
        (
            NotFound,
            lambda uow: uow.documents.mark_processed(
                OTHER, doc_id, chunk_count=9, title="x", now=T0
            ),
        ),
        (NotFound, lambda uow: uow.jobs.get(OTHER, failed.id)),
        (
            NotFound,
            lambda uow: uow.jobs.requeue(OTHER, failed.id, now=T0, detail="x", queued_by="m"),
        ),
        (
            LeaseLost,
            lambda uow: uow.jobs.heartbeat(
                OTHER, running.id, lease_token=token, now=T0, lease_seconds=99
            ),
        ),
        (LeaseLost, lambda uow: uow.jobs.succeed(OTHER, running.id, lease_token=token, now=T0)),
        (
            LeaseLost,
            lambda uow: uow.jobs.fail(
                OTHER,
                running.id,
                lease_token=token,
                decision=RetryDecision(JobState.FAILED, None, "x"),
                error=JobError("x", "x"),
                now=T0,
            ),
        ),
    ]
    for error, action in refused:
        with pytest.raises(error), db.write() as uow:
            action(uow)
        assert snapshot(url) == before

    with db.write() as uow:
        uow.jobs.delete_for_document(OTHER, doc_id)
        uow.idempotency.complete(OTHER, "k", StoredResponse(200, "{}", {}))
        uow.idempotency.release(OTHER, "k")
        assert uow.documents.find_by_sha256(OTHER, "a" * 64) is None
        assert uow.documents.count_with_sha256(OTHER, "a" * 64) == 0
        assert uow.documents.list(OTHER, limit=10, after=None) == []
        assert uow.jobs.list(OTHER, state=None, limit=10, after=None) == []
        assert sum(uow.jobs.count_by_state(OTHER).values()) == 0
        assert uow.jobs.failed_ids(OTHER, error_type=None, limit=10) == []
    assert snapshot(url) == before

    # The same key under another tenant is another key: claimed afresh, not replayed.
    with db.write() as uow:
        assert (
            uow.idempotency.begin(
                OTHER, "k", fingerprint="g", now=T0, ttl=timedelta(hours=1), lock=timedelta(0)
            )
            is None
        )


# -- the tenant-blind ports -------------------------------------------------------------------


def test_the_dispatcher_claims_and_reaps_jobs_of_every_tenant(db: SqliteDatabase) -> None:
    with db.write() as uow:
        for tenant in ("acme", "globex"):
            job = make_job(new_id("doc"))
            uow.jobs.enqueue(tenant, dataclasses.replace(job, tenant_id=tenant))
    with db.write() as uow:
        claimed = [uow.dispatch.claim(worker_id="w", now=T0, lease_seconds=1) for _ in range(3)]
    assert sorted(job.tenant_id for job in claimed if job is not None) == ["acme", "globex"]
    assert claimed[2] is None
    with db.write() as uow:
        reaped = uow.dispatch.reap_expired(now=T0 + timedelta(seconds=5), policy=RetryPolicy())
    assert reaped == 2


def test_housekeeping_sees_blobs_and_purges_keys_of_every_tenant(db: SqliteDatabase) -> None:
    with db.write() as uow:
        for tenant, sha in (("acme", "a" * 64), ("globex", "b" * 64)):
            document = dataclasses.replace(make_document(new_id("doc"), sha), tenant_id=tenant)
            uow.documents.add(tenant, document)
            for key, ttl in (("old", timedelta(seconds=1)), ("live", timedelta(days=1))):
                uow.idempotency.begin(
                    tenant, key, fingerprint="f", now=T0, ttl=ttl, lock=timedelta(0)
                )
    with db.write() as uow:
        assert uow.housekeeping.all_blob_refs() == {("acme", "a" * 64), ("globex", "b" * 64)}
        later = T0 + timedelta(hours=1)
        assert uow.housekeeping.purge_expired_idempotency_keys(now=later, limit=1) == 1
        assert uow.housekeeping.purge_expired_idempotency_keys(now=later, limit=10) == 1
        assert uow.housekeeping.purge_expired_idempotency_keys(now=later, limit=10) == 0
        # The live keys stay: the same request under them is still a replay, not a new run.
        for tenant in ("acme", "globex"):
            uow.idempotency.complete(tenant, "live", StoredResponse(201, None, {}))
            stored = uow.idempotency.begin(
                tenant, "live", fingerprint="f", now=later, ttl=timedelta(1), lock=timedelta(0)
            )
            assert stored == StoredResponse(201, None, {})
