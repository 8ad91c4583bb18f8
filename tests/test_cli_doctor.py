"""``spine doctor``: the readiness checks and the effective configuration, secrets masked."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from spine.cli import app

runner = CliRunner(env={"COLUMNS": "300"})
SECRET = "doctor-must-not-print-this-" + "s" * 20


def test_doctor_prints_checks_and_masks_secrets(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["doctor", "--data-dir", str(tmp_path / "data")],
        env={
            "SPINE_JWT_SECRET": SECRET,
            "SPINE_METRICS_TOKEN": SECRET,
            "SPINE_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'spine.db'}",
        },
    )
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "(set, hidden)" in result.output
    assert "Checks: ready" in result.output
    for check in ("database", "blob_store", "embedder"):
        assert check in result.output
    assert "slo_availability_objective" in result.output


def test_doctor_fails_in_one_line_when_a_store_cannot_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the blob folder should be")
    result = runner.invoke(
        app,
        ["doctor", "--data-dir", str(tmp_path / "data")],
        env={"SPINE_BLOB_URL": f"file://{blocker}"},
    )
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("spine: cannot start: FileExistsError")


def test_doctor_masks_a_database_password(tmp_path: Path) -> None:
    from spine.cli import masked_settings
    from spine.settings import Settings

    shown = masked_settings(
        Settings(data_dir=tmp_path, database_url="postgresql://spine:hunter2@db:5432/spine")
    )
    assert shown["database_url"] == "postgresql://spine:***@db:5432/spine"
