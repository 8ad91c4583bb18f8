"""Record the SQL a release of Spine executes, for tests/adapters/sql/test_expand_contract.py.

Expand/contract means the code of release N-1 still runs against the schema of release N,
so that rolling the code back needs no schema change. The test proves it for the SQL:
it replays, against a database migrated to this checkout's head, every statement the
previous release executed during a realistic flow. This script makes that recording. It
runs the *previous release's* code (not this checkout's) on the embedded store, drives it
through its own HTTP API (in process) and its own worker, and writes one JSON object per
line:

- ``{"release": ..., "revision": ...}`` first: the commit and its Alembic head;
- ``{"conn": n, "sql": ..., "params": [...], "many": false, "rows": r}`` per statement, in
  the order they ran, ``conn`` naming the DB-API connection it ran on (the flow runs on a
  few pooled connections) and ``rows`` how many rows it returned (absent for statements
  that return none); the replay expects as many;
- ``{"conn": n, "tx": "commit" | "rollback"}`` where SQLAlchemy ended a transaction (the
  ``BEGIN`` is a statement of its own: the engines emit it);
- ``{"final": {table: row count}}`` last: the database at the end, which the replay must
  reproduce.

Parameters are JSON, with ``{"$bytes": base64}`` for bytes (vectors). Statements Alembic
runs at start-up are not recorded (nor the ``PRAGMA``s every new connection runs, which
are not SQLAlchemy statements): the migrations are the schema under test, not a client
of it.

To record the release before the next one (run from the repository root)::

    git worktree add /tmp/spine-prev <commit of that release>
    PYTHONPATH=/tmp/spine-prev/src .venv/bin/python \\
        tests/adapters/sql/previous_release/capture.py \\
        tests/adapters/sql/previous_release/statements_<its head revision>.jsonl
    git worktree remove /tmp/spine-prev

then point ``RECORDING`` in test_expand_contract.py at the new file and delete the old
one. The flow below uses the API of release 0004 (9208a97); a later release may need a
route or a setting renamed here. The flow runs on one thread (no worker threads: it
drains the queue itself), so the order of the statements is one the replay can follow on
one thread too. Each result is read whole as it arrives (to count its rows), which
changes nothing the release does with it.

PostgreSQL: release 0004 had no PostgreSQL store, so this records SQLite only. Recording
the next previous release (this one) on PostgreSQL too needs a database URL option here,
psycopg's parameter style in the encoding, and a replay on PostgreSQL in the test.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlean
from sqlalchemy import Engine, event
from starlette.testclient import TestClient

import spine
import spine.adapters.sqlite.engine as sqlite_engine
from spine.adapters.sql import migrate
from spine.api.app import create_app
from spine.domain.auth import Role
from spine.observability.logging import configure_logging
from spine.queue.worker import Worker, claim_next
from spine.service import audit, gc
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.service.tokens import create_token
from spine.settings import Settings

SECRET = "capture-secret-" + "x" * 40
EMAIL = "ada.lovelace@example.org"


# -- recording -----------------------------------------------------------------------


def encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float):
        return value
    # SQLAlchemy's SQLite types hand the driver strings for dates; anything else is new.
    raise TypeError(f"no JSON encoding for a {type(value).__name__} parameter: {value!r}")


class _Cursor(sqlean.Cursor):  # type: ignore[misc]
    """A cursor that reads a statement's whole result at once, so the recorder can count
    the rows, and then hands them out as the driver would."""

    buffered: list[Any] | None = None

    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        super().execute(sql, parameters)
        self.buffered = super().fetchall() if self.description is not None else None
        return self

    def fetchone(self) -> Any:
        if self.buffered is None:
            return super().fetchone()
        return self.buffered.pop(0) if self.buffered else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if self.buffered is None:
            return list(super().fetchmany(size or self.arraysize))
        taken, self.buffered = (
            self.buffered[: size or self.arraysize],
            self.buffered[size or self.arraysize :],
        )
        return taken

    def fetchall(self) -> list[Any]:
        if self.buffered is None:
            return list(super().fetchall())
        taken, self.buffered = self.buffered, []
        return taken

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _Connection(sqlean.Connection):  # type: ignore[misc]
    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)


def _counting_driver() -> types.ModuleType:
    """sqlean, except that its connections make counting cursors."""
    module = types.ModuleType("sqlean_counting")
    module.__dict__.update(sqlean.__dict__)
    module.connect = lambda *args, **kwargs: sqlean.connect(  # type: ignore[attr-defined]
        *args, **kwargs, factory=_Connection
    )
    return module


class Recorder:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.recording = False
        self._connections: dict[int, tuple[int, Any]] = {}

    def _conn_number(self, dbapi_connection: Any) -> int:
        # The connection object is kept, so that its id() is never reused by another.
        key = id(dbapi_connection)
        if key not in self._connections:
            self._connections[key] = (len(self._connections) + 1, dbapi_connection)
        return self._connections[key][0]

    def install(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        event.listen(Engine, "commit", self._commit)
        event.listen(Engine, "rollback", self._rollback)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if not self.recording:
            return
        many = bool(rest[-1])
        self.lines.append(
            {
                "conn": self._conn_number(conn.connection.dbapi_connection),
                "sql": statement,
                "params": encode(list(parameters) if not many else [list(p) for p in parameters]),
                "many": many,
            }
        )

    def _after(self, conn: Any, cursor: Any, *rest: Any) -> None:
        if self.recording and getattr(cursor, "buffered", None) is not None:
            self.lines[-1]["rows"] = len(cursor.buffered)

    def _end(self, conn: Any, how: str) -> None:
        if self.recording:
            number = self._conn_number(conn.connection.dbapi_connection)
            self.lines.append({"conn": number, "tx": how})

    def _commit(self, conn: Any) -> None:
        self._end(conn, "commit")

    def _rollback(self, conn: Any) -> None:
        self._end(conn, "rollback")


def table_counts(url: str) -> dict[str, int]:
    """Rows of every table and virtual table but Alembic's version (the one thing a newer
    schema must differ in) and the virtual tables' own storage (FTS5's and vec0's shadow
    tables, an implementation detail of the extensions). test_expand_contract.py counts
    the same way."""
    conn = sqlite_engine.create_sqlite_engine(url, immediate=False).raw_connection()
    try:
        listed = [row[1:3] for row in conn.execute("PRAGMA table_list") if row[0] == "main"]
        virtual = [name for name, kind in listed if kind == "virtual"]
        return {
            name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # noqa: S608
            for name, kind in sorted(listed)
            if kind in ("table", "virtual")
            and name != "alembic_version"
            and not name.startswith("sqlite_")
            and not any(name.startswith(f"{owner}_") for owner in virtual)
        }
    finally:
        conn.close()


# -- the flow ------------------------------------------------------------------------


def headers(settings: Settings, tenant: str, role: Role, *scopes: str) -> dict[str, str]:
    token = create_token(
        SECRET,
        tenant_id=tenant,
        role=role,
        subject=f"{tenant}-{role.value}",
        ttl_seconds=3600,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        now=datetime.now(UTC),
        scopes=scopes,
    )
    return {"Authorization": f"Bearer {token}"}


def ok(response: Any, *statuses: int) -> Any:
    if response.status_code not in (statuses or (200,)):
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json() if response.content else None


def drain(services: Services) -> int:
    """Run every runnable job to its end on this thread, as a worker thread would."""
    worker = Worker(services, "capture-worker", stop=threading.Event())
    ran = 0
    while (job := claim_next(services, worker.worker_id)) is not None:
        # The heartbeat thread would renew the lease a third of the way through; the
        # lease here outlasts the job, so renew once by hand to record the statement.
        with services.db.write() as uow:
            uow.jobs.heartbeat(
                job.tenant_id,
                job.id,
                lease_token=job.lease_token or "",
                now=services.clock(),
                lease_seconds=services.settings.job_lease_seconds,
            )
        worker._run_one(job, time.time_ns())
        ran += 1
    return ran


FILLER = (
    "This paragraph is ordinary text about budgets, schedules and the weather, so that "
    "every document is long enough to make more than one chunk when it is processed. "
)
DOCUMENTS = {
    "meadow.txt": (
        "Pollinators in alpine meadows",
        f"Bumblebees visit gentians in alpine meadows. Write to {EMAIL}.\n\n{FILLER * 6}",
    ),
    "harbour.md": (
        "Harbour notes",
        f"# Harbour\n\nThe velvet submarine surfaced at noon near the lighthouse.\n\n{FILLER * 3}",
    ),
    "kettle.txt": ("Kettles", f"Copper kettles whistle in the granary at dawn.\n\n{FILLER}"),
}


def flow(services: Services, client: TestClient) -> None:
    settings = services.settings
    writer = headers(settings, "acme", Role.WRITER)
    reader = headers(settings, "acme", Role.READER)
    admin = headers(settings, "acme", Role.ADMIN, "pii:read", "ops:read")
    rival = headers(settings, "rival", Role.WRITER)

    ok(client.get("/readyz"))
    ids: dict[str, str] = {}
    for number, (name, (title, body)) in enumerate(DOCUMENTS.items()):
        accepted = ok(
            client.post(
                "/v1/documents",
                headers=writer | {"Idempotency-Key": f"upload-{number}"},
                files={"file": (name, body.encode(), "text/plain")},
                data={"title": title, "metadata": json.dumps({"n": number})},
            ),
            202,
        )
        ids[name] = accepted["document"]["id"]
    # The same request again (replayed), the same bytes again (a duplicate), a file that
    # cannot be extracted (a dead letter), and another tenant's document.
    ok(
        client.post(
            "/v1/documents",
            headers=writer | {"Idempotency-Key": "upload-0"},
            files={"file": ("meadow.txt", DOCUMENTS["meadow.txt"][1].encode(), "text/plain")},
            data={"title": DOCUMENTS["meadow.txt"][0], "metadata": json.dumps({"n": 0})},
        ),
        202,
    )
    ok(
        client.post(
            "/v1/documents",
            headers=writer,
            files={"file": ("again.txt", DOCUMENTS["kettle.txt"][1].encode(), "text/plain")},
        ),
        200,
    )
    broken = ok(
        client.post(
            "/v1/documents",
            headers=writer,
            files={"file": ("broken.pdf", b"%PDF-1.7\n% not really\n", "application/pdf")},
        ),
        202,
    )
    ok(
        client.post(
            "/v1/documents",
            headers=rival,
            files={"file": ("rival.txt", b"The rival's heron stands in the reeds.", "text/plain")},
        ),
        202,
    )
    drain(services)

    ok(client.get("/v1/documents?limit=2", headers=reader))
    page = ok(client.get("/v1/documents?limit=2", headers=reader))
    ok(client.get(f"/v1/documents?limit=2&cursor={page['next_cursor']}", headers=reader))
    ok(client.get(f"/v1/documents/{ids['meadow.txt']}", headers=reader))
    ok(client.get(f"/v1/documents/{ids['meadow.txt']}/text", headers=reader))
    ok(client.get(f"/v1/documents/{ids['meadow.txt']}/text?reveal=true", headers=admin))
    for mode in ("keyword", "semantic", "hybrid"):
        found = ok(client.get(f"/v1/search?q=alpine+meadows&mode={mode}&k=5", headers=reader))
        if not found["results"]:
            raise RuntimeError(f"a {mode} search found nothing")
    ok(client.get("/v1/search?q=heron&mode=hybrid", headers=rival))

    ok(client.get("/v1/jobs", headers=writer))
    ok(client.get("/v1/jobs?state=FAILED", headers=admin))
    ok(client.get(f"/v1/jobs/{broken['job']['id']}", headers=writer))
    ok(client.get("/v1/jobs/stats", headers=admin))
    ok(client.post(f"/v1/jobs/{broken['job']['id']}/retry", headers=admin))
    drain(services)
    ok(client.post("/v1/jobs/retry", headers=admin, json={"limit": 10}))
    drain(services)

    ok(client.get("/v1/privacy/policy", headers=admin))
    policy = {"actions": {"PHONE": "keep"}, "custom": [{"kind": "BADGE", "pattern": r"B-\d{4}"}]}
    ok(client.put("/v1/privacy/policy", headers=admin, json=policy))
    ok(client.post("/v1/privacy/forget", headers=admin, json={"value": EMAIL}))
    ok(
        client.delete(
            f"/v1/documents/{ids['harbour.md']}", headers=writer | {"Idempotency-Key": "delete-1"}
        ),
        204,
    )
    ok(client.get(f"/v1/documents/{ids['harbour.md']}", headers=reader), 404)

    audit_page = ok(client.get("/v1/audit?limit=3", headers=admin))
    ok(client.get(f"/v1/audit?limit=3&cursor={audit_page['next_cursor']}", headers=admin))
    ok(client.get("/v1/admin/slo", headers=admin))
    ok(client.get("/v1/admin/hotspots", headers=admin))

    # What `spine gc` and `spine audit verify` run.
    gc.sweep_blobs(services.db, services.blobs, grace_seconds=0)
    gc.purge_idempotency_keys(services.db, now=services.clock())
    audit.verify(services.db)


# -- main ----------------------------------------------------------------------------


def release_commit() -> str:
    source = Path(spine.__file__).parent
    result = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def capture(out: Path) -> int:
    """Run the flow, write the recording, return how many statements it holds."""
    recorder = Recorder()
    sqlite_engine.sqlean = _counting_driver()  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="spine-capture-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            jwt_secret=SECRET,
            # The flow runs jobs on this thread (``drain``): one order of statements.
            workers=0,
            job_lease_seconds=600,
            # Only the flush at shutdown, on the thread that closes the app.
            slo_flush_seconds=3600,
            log_level="WARNING",
        )
        configure_logging(settings)
        url = settings.resolved_database_url()
        migrate.upgrade(url)
        revision = migrate.current(url)
        recorder.install()
        services = bootstrap(settings)
        recorder.recording = True
        try:
            with TestClient(create_app(services=services)) as client:
                flow(services, client)
        finally:
            recorder.recording = False
            services.close()
        final = table_counts(url)
    lines = [{"release": release_commit(), "revision": revision}, *recorder.lines]
    lines.append({"final": final})
    with out.open("w") as handle:
        for line in lines:
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
    return sum("sql" in line for line in recorder.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the JSON Lines file to write")
    args = parser.parse_args()
    count = capture(args.out)
    print(
        f"recorded {count} statements of spine at {Path(spine.__file__).parent} "
        f"into {args.out} ({args.out.stat().st_size} bytes)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
