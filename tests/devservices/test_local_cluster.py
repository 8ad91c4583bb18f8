"""``spine local-cluster``: the scale-out stores on one machine, as docs/deploy.md runs
them, then ``spine migrate up`` and ``spine doctor`` against them."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SPINE = [sys.executable, "-m", "spine"]


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = shlex.split(value)[0]
    return values


def test_local_cluster_runs_the_stores_that_migrate_and_doctor_then_use(
    tmp_path: Path, redis_url: str
) -> None:
    # Outside pytest's folders, which only root may enter: the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="spine-cluster-"))
    log = (tmp_path / "cluster.log").open("wb")
    cluster = subprocess.Popen(
        [*SPINE, "local-cluster", "--dir", str(directory), "--redis-url", redis_url],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while not (directory / "env").exists():
            assert cluster.poll() is None, (tmp_path / "cluster.log").read_text()
            assert time.monotonic() < deadline, "no env file after 90 s"
            time.sleep(0.2)
        stores = read_env(directory / "env")
        assert stores["SPINE_DATABASE_URL"].startswith("postgresql://spine@127.0.0.1:")
        assert stores["SPINE_BLOB_URL"] == "s3://spine/blobs"
        env = {**os.environ, **stores, "SPINE_DATA_DIR": str(tmp_path / "data")}
        migrated = subprocess.run(
            [*SPINE, "migrate", "up"], env=env, capture_output=True, text=True, check=False
        )
        assert migrated.returncode == 0, migrated.stderr
        assert "revision 0006" in migrated.stdout
        doctor = subprocess.run(
            [*SPINE, "doctor"], env=env, capture_output=True, text=True, check=False
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        # The role owns its tables and is no superuser: the RLS policies bind it.
        assert "row-level security does not apply" not in doctor.stderr
    finally:
        cluster.send_signal(signal.SIGTERM)
        code = cluster.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "cluster.log").read_text()
    assert not (directory / "postgres" / "data" / "postmaster.pid").exists()
    shutil.rmtree(directory)
