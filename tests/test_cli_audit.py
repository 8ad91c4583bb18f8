"""``spine audit verify`` and ``spine audit list``, run on the database file itself."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlean
from typer.testing import CliRunner, Result

from spine.cli import app
from spine.service import audit
from spine.service.audit import AuditEvent
from spine.service.bootstrap import open_database

# Wide enough that Rich wraps neither the table nor the error line.
runner = CliRunner(env={"COLUMNS": "300"})


def spine(*args: str) -> Result:
    return runner.invoke(app, list(args))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """acme's chain is entries 1-5 naming docs 1, 2, 4, 5, 6; beta's is 1-2 naming docs 3, 7."""
    folder = tmp_path / "data"
    folder.mkdir()
    db = open_database(f"sqlite:///{folder / 'spine.db'}")
    plan = ["acme", "acme", "beta", "acme", "acme", "acme", "beta"]
    try:
        for i, tenant in enumerate(plan):
            with db.write() as uow:
                event = AuditEvent(
                    "alice", "document.delete", f"doc_{i + 1:032x}", f"r{i}", "success"
                )
                audit.append(uow, tenant, [event], at=datetime.now(UTC))
    finally:
        db.close()
    return folder


def tamper(folder: Path, *statements: str) -> None:
    with closing(sqlean.connect(folder / "spine.db")) as conn, conn:
        for statement in statements:
            conn.execute(statement)


def test_verify_reports_intact_chains(data_dir: Path) -> None:
    result = spine("audit", "verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "2 chain(s), 7 entries: all intact" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "intact" in line and "│" in line]
    assert len(rows) == 2
    assert "acme" in rows[0]
    assert "beta" in rows[1]


def test_verify_of_an_empty_database_passes(tmp_path: Path) -> None:
    result = spine("audit", "verify", "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 0, result.output
    assert "0 chain(s), 0 entries: all intact" in result.stdout


@pytest.mark.parametrize(
    ("statements", "where"),
    [
        (
            ["UPDATE audit_log SET outcome = 'forbidden' WHERE seq = 3 AND tenant_id = 'acme'"],
            "entry 3",
        ),
        (
            ["UPDATE audit_log SET resource = 'doc_x' WHERE seq = 1 AND tenant_id = 'acme'"],
            "entry 1",
        ),
        (["DELETE FROM audit_log WHERE seq = 3 AND tenant_id = 'acme'"], "entry 4"),
        (["DELETE FROM audit_log WHERE seq = 5 AND tenant_id = 'acme'"], "entry 5"),
        (
            [
                "UPDATE audit_log SET seq = -1 WHERE seq = 3 AND tenant_id = 'acme'",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4 AND tenant_id = 'acme'",
                "UPDATE audit_log SET seq = 4 WHERE seq = -1 AND tenant_id = 'acme'",
            ],
            "entry 3",
        ),
        (["UPDATE audit_heads SET hash = '" + "0" * 64 + "' WHERE tenant_id = 'acme'"], "entry 5"),
        (["UPDATE audit_heads SET count = 4 WHERE tenant_id = 'acme'"], "its head"),
    ],
    ids=["edited", "edited-first", "deleted-middle", "deleted-tail", "reordered", "head", "count"],
)
def test_verify_names_the_first_broken_entry_and_exits_1(
    data_dir: Path, statements: list[str], where: str
) -> None:
    tamper(data_dir, *statements)
    result = spine("audit", "verify", "--data-dir", str(data_dir))
    assert result.exit_code == 1, result.output
    assert f"audit chain of tenant 'acme' is broken at {where}:" in result.stderr
    assert "(1 of 2 chain(s) broken)" in result.stderr
    assert "beta" in result.stdout  # the other chain is still reported, and intact
    assert "all intact" not in result.stdout


def test_list_shows_one_tenants_entries_newest_first(data_dir: Path) -> None:
    result = spine("audit", "list", "--tenant", "acme", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    seqs = [
        int(line.split("│")[1]) for line in result.stdout.splitlines() if "document.delete" in line
    ]
    assert seqs == [5, 4, 3, 2, 1]
    older = spine("audit", "list", "--tenant", "acme", "--before", "3", "--data-dir", str(data_dir))
    assert "doc_" + f"{1:032x}" in older.stdout
    assert "doc_" + f"{4:032x}" not in older.stdout
    assert (
        f"doc_{2:032x}"
        not in spine("audit", "list", "--tenant", "beta", "--data-dir", str(data_dir)).stdout
    )
