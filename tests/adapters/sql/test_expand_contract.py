"""Expand/contract: the previous release's SQL runs against this release's schema.

A deploy migrates first and starts the new code after, and a rollback starts the previous
code again on the migrated schema; so every revision only adds what the previous code
does not see (expand) and drops only what no supported release uses any more (contract).
This test replays, statement by statement and in order, what the previous release
(9208a97, revision 0004) executed during a realistic flow: uploads (one replayed by its
idempotency key, a duplicate, a dead letter, a second tenant), its worker processing them
with the real model (its per-tenant FTS5 tables made at run time by CREATE VIRTUAL TABLE),
searches in the three modes, document and job listings, retries, a PII policy, a forget,
a delete, audit pages, the SLO and hotspot reports, ``spine gc`` and ``spine audit
verify``. The recording and how to make it again for the next release are in
previous_release/capture.py.

Against a fresh SQLite file migrated to head, every statement must succeed, each read
must return as many rows as it did in the previous release, and the tables must end up
with the same rows; the rows the old code wrote must also be found by this release's code.

SQLite only: the previous release had no PostgreSQL store, so there is no previous query
to replay there. The replay on PostgreSQL starts with the next release, recorded from
this one.

The SQL is not the whole story of a rollback. The previous release migrates at start-up,
and its Alembic refuses a database at a revision it does not know ("Can't locate revision
identified by '0006'"): rolling back to it needs ``spine migrate down --revision 0004``,
run with this release's code, before the previous code starts. From this release on,
start-up leaves a database of a newer release as it is (see spine.adapters.sql.migrate).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.script import Script, ScriptDirectory

from spine.adapters.sql import migrate
from spine.adapters.sqlite.database import SqliteDatabase
from spine.adapters.sqlite.engine import create_sqlite_engine

RECORDING = Path(__file__).parent / "previous_release" / "statements_0004.jsonl"
#: The revisions of this release, newest first; the recording is of the revision before.
THIS_RELEASE = ("0006", "0005")


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(decode(item) for item in value)
    return value


def load() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    """The recording's header, its statements and transaction ends, its final counts."""
    lines = [json.loads(line) for line in RECORDING.read_text().splitlines()]
    return lines[0], lines[1:-1], lines[-1]["final"]


def table_counts(url: str) -> dict[str, int]:
    """Rows per table, counted as capture.py's ``table_counts`` counts them."""
    conn = create_sqlite_engine(url, immediate=False).raw_connection()
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


def replay(url: str, entries: list[dict[str, Any]]) -> None:
    """Run ``entries`` in order, each on its own connection's counterpart; fail on the
    first statement that errs or returns another number of rows."""
    engine = create_sqlite_engine(url, immediate=False)
    connections: dict[int, Any] = {}
    try:
        for number, entry in enumerate(entries, start=2):
            if entry["conn"] not in connections:
                # Raw: the recording has the BEGINs the previous release's engines emitted.
                connections[entry["conn"]] = engine.raw_connection()
            conn = connections[entry["conn"]]
            if "tx" in entry:
                conn.commit() if entry["tx"] == "commit" else conn.rollback()
                continue
            cursor = conn.cursor()
            where = f"line {number} of {RECORDING.name}: {entry['sql']}"
            try:
                if entry["many"]:
                    cursor.executemany(entry["sql"], decode(entry["params"]))
                else:
                    cursor.execute(entry["sql"], decode(entry["params"]))
                rows = cursor.fetchall() if cursor.description is not None else None
            except Exception as exc:
                pytest.fail(f"{type(exc).__name__}: {exc}\n{where}")
            finally:
                cursor.close()
            if "rows" in entry:
                assert rows is not None, where
                assert len(rows) == entry["rows"], where
    finally:
        for conn in connections.values():
            conn.close()
        engine.dispose()


def _head() -> Script:
    head = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_revision("head")
    assert head is not None
    return head


def test_the_recording_is_of_the_release_before_this_ones_revisions() -> None:
    header, _, _ = load()
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    walked = [rev.revision for rev in script.walk_revisions(base=header["revision"], head="head")]
    # A revision that is not this release's starts the next release, which makes this
    # one the previous: record it (capture.py), and start THIS_RELEASE again.
    assert walked == [*THIS_RELEASE, header["revision"]], (
        f"{RECORDING.name} records revision {header['revision']}, and the revisions after "
        f"it are {walked[:-1]}, not this release's {list(THIS_RELEASE)}: record the release "
        "before the head's (see previous_release/capture.py)"
    )


def test_the_previous_releases_statements_run_against_the_head_schema(tmp_path: Path) -> None:
    header, entries, final = load()
    url = f"sqlite:///{tmp_path / 'spine.db'}"
    migrate.upgrade(url)
    assert migrate.current(url) == _head().revision != header["revision"]

    replay(url, entries)

    # index_generations is 0005's: the previous release never writes it.
    assert table_counts(url) == final | {"index_generations": 0}
    # And this release finds what the previous one wrote: its chunks, by keyword and by
    # vector (the query vector of a recorded search, from the previous release's model).
    query_vector = next(
        decode(entry["params"])[0]
        for entry in entries
        if "sql" in entry and "FROM chunks_vec" in entry["sql"] and "MATCH" in entry["sql"]
    )
    database = SqliteDatabase(url)
    try:
        with database.read() as uow:
            assert uow.index.keyword("acme", "alpine meadows", 10)
            assert uow.index.keyword("rival", "heron", 10)
            assert uow.index.keyword("rival", "alpine meadows", 10) == []
            assert uow.index.semantic("acme", _floats(query_vector), 10)
    finally:
        database.close()


def _floats(blob: bytes) -> list[float]:
    return [float(x) for x in np.frombuffer(blob, dtype=np.float32)]
