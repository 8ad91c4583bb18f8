"""The ``spine`` command, run as a user runs it: a real process against a real server."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from conftest import TEST_SECRET
from support.documents import make_pdf
from support.server import SPINE, SpineProcess, process_env

pytestmark = pytest.mark.slow


def spine(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*SPINE, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("cli")
    data_dir = root / "data"
    env = process_env(data_dir, TEST_SECRET)
    process, url = SpineProcess.serve(data_dir, env, workers=1)
    yield url, env | {"SPINE_URL": url}
    process.stop()


def token(env: dict[str, str], tenant: str, role: str = "writer") -> str:
    return spine("token", "create", "--tenant", tenant, "--role", role, env=env).stdout.strip()


def test_token_create_prints_only_a_token_with_the_claims(
    server: tuple[str, dict[str, str]],
) -> None:
    _, env = server
    result = spine("token", "create", "--tenant", "t1", "--role", "reader", "--ttl", "60", env=env)
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    claims = jwt.decode(
        lines[0], TEST_SECRET, algorithms=["HS256"], issuer="spine", audience="spine"
    )
    assert (claims["tenant"], claims["role"]) == ("t1", "reader")
    assert claims["exp"] - claims["iat"] == 60


def test_token_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    env = process_env(tmp_path / "d", "") | {"SPINE_JWT_SECRET": ""}
    first = spine("token", "create", "--tenant", "t", "--data-dir", str(tmp_path / "d"), env=env)
    secret_file = tmp_path / "d" / "jwt-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    jwt.decode(first.stdout.strip(), secret, algorithms=["HS256"], issuer="spine", audience="spine")
    spine("token", "create", "--tenant", "t", "--data-dir", str(tmp_path / "d"), env=env)
    assert secret_file.read_text().strip() == secret


def test_ingest_wait_then_search_and_jobs(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = server
    env = env | {"SPINE_TOKEN": token(env, "cli-tenant")}
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Aardvarks enjoy the persimmon orchard at sunrise.")
    (folder / "sub" / "b.md").write_text("# Notes\n\nThe velvet submarine surfaced at noon.")
    (folder / "c.pdf").write_bytes(make_pdf("Copper kettles whistle in the granary."))
    (folder / ".hidden").write_text("never uploaded")

    result = spine("ingest", str(folder), "--wait", env=env)
    assert "uploaded 3 file(s)" in result.stdout
    assert re.search(r"SUCCEEDED\s*│\s*3\s*│", result.stdout), result.stdout

    found = spine("search", "velvet submarine", "--mode", "keyword", env=env).stdout
    assert "velvet" in found
    assert "1 result(s)" in found

    listed = spine("jobs", "--state", "succeeded", env=env).stdout
    assert listed.count("SUCCEEDED") == 3


def test_ingest_waits_out_rate_limits_instead_of_failing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # One upload per second: six files take five 429s, each waited out by the CLI.
    env = process_env(data_dir, TEST_SECRET, rate_limit_writer="1/s burst 1")
    process, url = SpineProcess.serve(data_dir, env, workers=0)
    try:
        env = env | {"SPINE_URL": url}
        env["SPINE_TOKEN"] = token(env, "throttled")
        folder = tmp_path / "docs"
        folder.mkdir()
        for n in range(6):
            (folder / f"{n}.txt").write_text(f"document number {n} about lighthouses")

        result = spine("ingest", str(folder), env=env)

        assert "uploaded 6 file(s)" in result.stdout, result.stdout + result.stderr
    finally:
        process.stop()


def test_client_errors_are_one_readable_line(server: tuple[str, dict[str, str]]) -> None:
    _, env = server
    no_token = spine("search", "x", env=env | {"SPINE_TOKEN": ""}, check=False)
    assert no_token.returncode == 1
    assert no_token.stderr.strip().startswith("spine: no token")
    assert len(no_token.stderr.strip().splitlines()) == 1

    bad = spine("search", "x", env=env | {"SPINE_TOKEN": "garbage"}, check=False)
    assert bad.returncode == 1
    assert "401 unauthenticated" in bad.stderr
    assert "Traceback" not in bad.stderr

    down = spine(
        "search",
        "x",
        env=env | {"SPINE_TOKEN": "t", "SPINE_URL": "http://127.0.0.1:9"},
        check=False,
    )
    assert down.returncode == 1
    assert "cannot reach" in down.stderr


HEAD_REVISION = "0006"


def test_migrate_down_and_up(tmp_path: Path) -> None:
    env = process_env(tmp_path / "m", TEST_SECRET)
    assert f"revision {HEAD_REVISION}" in spine("migrate", "up", env=env).stdout
    assert "revision 0001" in spine("migrate", "down", "--revision", "0001", env=env).stdout
    assert "revision base" in spine("migrate", "down", env=env).stdout
    assert f"revision {HEAD_REVISION}" in spine("migrate", "up", env=env).stdout


def test_migrate_runs_against_postgresql(tmp_path: Path, postgres_url: str) -> None:
    env = process_env(tmp_path / "m", TEST_SECRET, database_url=postgres_url)
    assert f"revision {HEAD_REVISION}" in spine("migrate", "up", env=env).stdout
    assert "revision 0004" in spine("migrate", "down", "--revision", "0004", env=env).stdout
    assert f"revision {HEAD_REVISION}" in spine("migrate", "up", env=env).stdout


def test_migrate_against_an_unreachable_database_is_one_readable_line(tmp_path: Path) -> None:
    env = process_env(tmp_path / "m", TEST_SECRET, database_url="postgresql://spine@127.0.0.1:1/x")
    result = spine("migrate", "up", env=env, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("spine: cannot reach the database")
    assert len(result.stderr.strip().splitlines()) == 1


def test_dlq_list_and_retry(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = server
    env = env | {"SPINE_TOKEN": token(env, "dlq-tenant"), "COLUMNS": "250"}
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)
    failed = spine("ingest", str(bad), "--wait", env=env, check=False)
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout

    listed = spine("dlq", "list", env=env).stdout
    assert "Dead letters: 1" in listed
    assert "extraction-failed" in listed

    retried = spine("dlq", "retry", "--error-type", "extraction-failed", env=env).stdout
    assert "retried 1 job(s)" in retried
    assert spine("dlq", "retry", env=env, check=False).returncode == 1


def test_gc_removes_an_orphan_blob(tmp_path: Path) -> None:
    env = process_env(tmp_path / "g", TEST_SECRET)
    orphan = tmp_path / "g" / "blobs" / ("t" * 32) / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"nobody references me")
    kept = spine("gc", "--grace", "3600", env=env).stdout
    assert "removed 0" in kept
    assert orphan.exists()
    removed = spine("gc", "--grace", "0", env=env).stdout
    assert "examined 1, removed 1" in removed
    assert not orphan.exists()
