"""``spine export`` and ``spine import`` as commands: what they print, and their exit
status, on SQLite data dirs filled through the ports (no model needed)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from spine.adapters.sql.jobs import SqlJobRepository
from spine.cli import app
from spine.domain.documents import Chunk, Document, new_id
from spine.domain.jobs import Job, JobEvent, JobState
from spine.service.bootstrap import open_blob_store, open_database
from support.rows import job_row

runner = CliRunner(env={"COLUMNS": "300"})
T0 = datetime(2030, 1, 1, tzinfo=UTC)
MASTER_KEY = "A" * 43 + "="


def spine(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"SPINE_MASTER_KEY": MASTER_KEY})


def fill(data_dir: Path, tenant: str, documents: int, *, unfinished: int = 0) -> None:
    """``documents`` processed documents with two chunks and a finished job each."""
    db = open_database(f"sqlite:///{data_dir / 'spine.db'}")
    blobs = open_blob_store(f"file://{data_dir / 'blobs'}")
    rng = np.random.default_rng(7)
    try:
        with db.write() as uow:
            for n in range(documents):
                body = f"document {n} about herons".encode()
                stored = blobs.put(tenant, io.BytesIO(body))
                document_id, job_id = new_id("doc"), new_id("job")
                uow.documents.add(
                    tenant,
                    Document(
                        document_id, tenant, f"doc {n}", f"{n}.txt", "text/plain", len(body),
                        stored.sha256, {"n": n}, 2, T0, T0, latest_job_id=job_id,
                    ),
                )  # fmt: skip
                chunks = [
                    Chunk(
                        new_id("chk"), document_id, o, f"herons part {o} of {n}", 0, 9,
                        rng.standard_normal(384).astype(np.float32).tolist(),
                    )
                    for o in range(2)
                ]  # fmt: skip
                uow.index.replace(tenant, document_id, f"doc {n}", chunks)
                done = T0 + timedelta(seconds=1)
                uow.jobs.restore(
                    tenant,
                    Job(
                        job_id, tenant, document_id, JobState.SUCCEEDED, 1, 3, None, T0, T0,
                        done, None,
                        events=(JobEvent(job_id, None, JobState.SUCCEEDED, done, "ok"),),
                    ),
                )  # fmt: skip
            for _ in range(unfinished):
                uow.jobs.enqueue(tenant, job_row(tenant))
    finally:
        db.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    fill(folder, "acme", 3, unfinished=2)
    fill(folder, "globex", 1)
    return folder


def test_export_then_import_prints_each_kind_and_exits_0(source: Path, tmp_path: Path) -> None:
    exported = spine("export", "--out", str(tmp_path / "out"), "--data-dir", str(source))
    assert exported.exit_code == 0, exported.output
    assert "2 tenant(s)" in exported.stdout
    assert "2 unfinished job(s) (PENDING, RUNNING, RETRYING) were not exported" in (exported.stderr)

    imported = spine("import", str(tmp_path / "out"), "--data-dir", str(tmp_path / "target"))

    assert imported.exit_code == 0, imported.output
    rows = [line.split("│") for line in imported.stdout.splitlines() if "│ chunks" in line]
    assert [[cell.strip() for cell in row[1:6]] for row in rows] == [
        ["chunks", "6", "6", "same", "ok"],
        ["chunks", "2", "2", "same", "ok"],
    ]
    assert "MISMATCH" not in imported.stdout
    assert "imported 2 tenant(s)" in imported.stdout
    assert "18 counts and checksums match" in imported.stdout


def test_import_exits_1_naming_what_the_target_lacks(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert spine("export", "--out", str(tmp_path / "out"), "--data-dir", str(source)).exit_code == 0
    # A target that drops jobs: the check that reads them back must notice, and that the
    # documents now name a job that is not there.
    monkeypatch.setattr(SqlJobRepository, "restore", lambda self, tenant_id, job: None)

    imported = spine("import", str(tmp_path / "out"), "--data-dir", str(tmp_path / "target"))

    assert imported.exit_code == 1
    assert imported.stdout.count("MISMATCH") == 4
    # The last line on stderr, below the progress bars.
    assert imported.stderr.strip().splitlines()[-1] == (
        "spine: the target does not match the export: acme/documents, acme/jobs, "
        "globex/documents, globex/jobs"
    )


def test_import_of_a_folder_that_is_no_export_fails_in_one_line(tmp_path: Path) -> None:
    result = spine("import", str(tmp_path), "--data-dir", str(tmp_path / "target"))
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "manifest.json does not exist" in result.stderr


def test_export_warns_about_a_tenant_without_data(source: Path, tmp_path: Path) -> None:
    result = spine(
        "export", "--out", str(tmp_path / "out"), "--tenant", "acmee", "--data-dir", str(source)
    )
    assert result.exit_code == 0, result.output
    assert "tenant acmee has no data in the source (a typo?)" in result.stderr
