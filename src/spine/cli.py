"""The ``spine`` command: run the server and workers, make tokens, and talk to the API.

Client commands read ``SPINE_URL`` and ``SPINE_TOKEN``; server commands read the
``SPINE_*`` settings, with ``--data-dir`` over ``SPINE_DATA_DIR``.
"""

from __future__ import annotations

import html
import mimetypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from spine.domain.auth import Role, Scope
from spine.settings import Settings

if TYPE_CHECKING:
    from spine.bench.envelope import Envelope
    from spine.bench.quality import IngestProgress
    from spine.ports import BlobStore, Database
    from spine.service.container import Services

app = typer.Typer(help="Spine: self-hostable multi-tenant document search.", no_args_is_help=True)
token_app = typer.Typer(help="Make API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
keys_app = typer.Typer(help="Key pairs for RS256/ES256 tokens.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
dlq_app = typer.Typer(help="The dead-letter queue: jobs that FAILED.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
embedder_app = typer.Typer(help="The embedding model as an HTTP service.", no_args_is_help=True)
app.add_typer(embedder_app, name="embedder")
bench_app = typer.Typer(help="Benchmarks: numbers you can rerun.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
audit_app = typer.Typer(help="The audit log, read from the database.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

console = Console()
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="SPINE_DATA_DIR", help="Data folder (embedded default)."),
]
UrlOption = Annotated[
    str, typer.Option("--url", envvar="SPINE_URL", help="The Spine API's base URL.")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="SPINE_TOKEN", help="A bearer token.")
]
TERMINAL_STATES = ("SUCCEEDED", "FAILED")


def fail(message: str) -> NoReturn:
    """Every CLI error is one readable line on stderr and exit status 1."""
    err_console.print(f"[red]spine:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    values = {key: value for key, value in overrides.items() if value is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        return Settings(**values)
    except ValueError as exc:
        fail(f"invalid settings: {exc}")


def _make_token(
    settings: Settings,
    tenant: str,
    role: Role,
    ttl: int,
    subject: str,
    *,
    scopes: list[Scope] | None = None,
    audience: str | None = None,
    private_key: Path | None = None,
    kid: str | None = None,
) -> str:
    """HS256 with the settings' secret, or RS256/ES256 with ``private_key``."""
    from spine.adapters.auth import keys
    from spine.service.tokens import ALGORITHM, create_token, load_or_create_secret

    signing_key: str | keys.SigningKey
    try:
        if private_key is None:
            signing_key = load_or_create_secret(settings.jwt_secret, settings.data_dir)
            algorithm, kid = ALGORITHM, None
        else:
            signing_key = keys.load_private_key(private_key)
            algorithm = keys.signing_algorithm(signing_key)
            # The thumbprint is the kid `spine keys generate` published in the JWKS.
            kid = kid or keys.key_id(signing_key)
    except ValueError as exc:
        fail(str(exc))
    return create_token(
        signing_key,
        tenant_id=tenant,
        role=role,
        subject=subject,
        ttl_seconds=ttl,
        issuer=settings.jwt_issuer,
        audience=audience or settings.jwt_audience,
        now=datetime.now(UTC),
        scopes=[scope.value for scope in scopes or []],
        algorithm=algorithm,
        kid=kid,
    )


# -- server side ----------------------------------------------------------------------


@app.command()
def serve(
    data_dir: DataDirOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[
        int | None, typer.Option(help="Worker threads in this process (0: API only).")
    ] = None,
    print_token: Annotated[
        str | None,
        typer.Option(help="Print a 24 h development admin token for this tenant at start."),
    ] = None,
) -> None:
    """Run the HTTP API and the workers in one process (the embedded default)."""
    import uvicorn

    from spine.api.app import create_app

    settings = _settings(data_dir, workers=workers)
    base = f"http://{host}:{port}"
    console.print(f"Spine API   {base}")
    console.print(f"OpenAPI     {base}/docs")
    console.print(f"Data        {settings.data_dir.resolve()}  workers={settings.workers}")
    if print_token:
        token = _make_token(settings, print_token, Role.ADMIN, 86_400, "dev")
        console.print(f"Token ({print_token}, admin, 24 h):\n{token}", soft_wrap=True)
        console.print(f"  export SPINE_URL={base} SPINE_TOKEN={token}", soft_wrap=True)
    _observe(settings)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        # Spine's own `http.request` event replaces uvicorn's access log: it names the
        # route template, never the path and query (which can hold personal data).
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        # h11's own cap (16 KiB) would answer a plain-text 400 before Spine's 431
        # problem+json; leave room for the request line and keep a cap.
        h11_max_incomplete_event_size=settings.max_header_bytes + 8 * 1024,
    )


def _observe(settings: Settings) -> None:
    """Logs and traces for a server process (``serve``, ``worker``)."""
    from spine.observability.logging import configure_logging
    from spine.observability.tracing import configure_tracing

    configure_logging(settings)
    configure_tracing(settings)


@app.command("local-cluster")
def local_cluster(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder of the servers' data (kept between runs).")
    ] = Path(".spine-cluster"),
    redis_url: Annotated[
        str, typer.Option(help="The Redis the topology shares (not started here).")
    ] = "redis://127.0.0.1:6379/0",
) -> None:
    """Run PostgreSQL + pgvector and an S3 server on loopback, for the scale-out topology
    on one machine (what the tests use; needs the `test` extra). Ctrl-C stops both."""
    import redis

    from spine.devservices.cluster import start_local_cluster

    try:
        cluster = start_local_cluster(directory.resolve(), redis_url=redis_url)
    except (RuntimeError, OSError) as exc:
        fail(f"cannot start the local cluster: {str(exc).splitlines()[0]}")
    env_file = directory / "env"
    cluster.write_env(env_file)
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        err_console.print(f"[yellow]warning:[/yellow] no Redis answers at {redis_url}")
    console.print(f"PostgreSQL + pgvector and S3 are running; their settings are in {env_file}:")
    console.print(f"  source {env_file}", soft_wrap=True)
    console.print("  spine migrate up")
    console.print("  spine serve --workers 0 --port 8000 &   spine serve --workers 0 --port 8001 &")
    console.print("  spine worker --concurrency 2 &   spine worker --concurrency 2 &")
    console.print("Ctrl-C stops the servers (their data stays).")
    signals: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: signals.append(signum))
    try:
        while not signals:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


@app.command()
def worker(
    data_dir: DataDirOption = None,
    concurrency: Annotated[int, typer.Option(help="Worker threads.")] = 1,
) -> None:
    """Run workers alone, without the API (scale-out)."""
    from spine.queue.worker import WorkerPool
    from spine.service.bootstrap import bootstrap
    from spine.service.slo import SloFlusher

    settings = _settings(data_dir, workers=concurrency)
    _observe(settings)
    services = bootstrap(settings)
    if settings.worker_metrics_port is not None:
        from prometheus_client import start_http_server

        # The worker has no API: its series (steps, runs, busy ratio) get their own port.
        start_http_server(
            settings.worker_metrics_port,
            addr=settings.worker_metrics_host,
            registry=services.metrics.registry,
        )
    pool = WorkerPool(services, concurrency)
    signals: list[int] = []

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only a list append: a handler that takes a lock (Event.set) can deadlock against
        # the main thread it interrupted.
        signals.append(signum)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    pool.start()
    # Freshness is counted where jobs finish: this process writes its own SLO counts.
    flusher = SloFlusher(services)
    flusher.start()
    database = _without_password(settings.resolved_database_url())
    console.print(f"Spine worker: {concurrency} thread(s) on {database}")
    while not signals:
        time.sleep(0.2)
    console.print("Stopping: finishing or releasing running jobs...")
    finished = pool.stop()
    flusher.stop()
    if not finished:
        # A released job's thread is still inside the model. Interpreter teardown would
        # free onnxruntime under it and abort; the release is committed, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    services.close()


#: Settings whose values are secrets: shown as set or not, never printed.
SECRET_SETTINGS = frozenset({"jwt_secret", "master_key", "embedder_api_key", "metrics_token"})


def masked_settings(settings: Settings) -> dict[str, str]:
    """Every effective setting as text, secrets and URL passwords masked."""
    values = settings.model_dump()
    values["database_url"] = settings.resolved_database_url()
    values["blob_url"] = settings.resolved_blob_url()
    return {
        name: ("(set, hidden)" if value else "(unset)")
        if name in SECRET_SETTINGS
        else _without_password(str(value))
        for name, value in values.items()
    }


def _without_password(text: str) -> str:
    from urllib.parse import urlsplit

    if "://" not in text:
        return text
    password = urlsplit(text).password
    return text.replace(f":{password}@", ":***@") if password else text


@app.command()
def doctor(data_dir: DataDirOption = None) -> None:
    """Check the database, blob store and embedder as /readyz does; show the effective
    configuration (secrets masked). Exit 1 when Spine would not be ready."""
    from spine.service.bootstrap import bootstrap
    from spine.service.health import readiness

    settings = _settings(data_dir)
    config = Table(title="Effective configuration (SPINE_* environment, defaults)")
    config.add_column("setting")
    config.add_column("value", overflow="fold")
    for name, value in masked_settings(settings).items():
        config.add_row(name, escape(value))
    console.print(config)
    try:
        services = bootstrap(settings)
    except Exception as exc:
        fail(f"cannot start: {type(exc).__name__}: {exc}")
    try:
        report = readiness(services)
    finally:
        services.close()
    checks = Table(title=f"Checks: {report.status}")
    for column in ("check", "status", "detail", "ms"):
        checks.add_column(column)
    colours = {"ok": "green", "degraded": "yellow", "failed": "red"}
    for check in report.checks:
        colour = colours[check.status]
        checks.add_row(
            check.name,
            f"[{colour}]{check.status}[/{colour}]",
            escape(check.detail),
            f"{check.duration_ms:.1f}",
        )
    console.print(checks)
    for warning in getattr(services.db, "warnings", ()):
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    if not report.ready:
        failed = ", ".join(c.name for c in report.checks if c.status == "failed")
        fail(f"not ready: {failed}")


@embedder_app.command("serve")
def embedder_serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8001,
    batch_size: Annotated[
        int | None, typer.Option(help="Texts per model call (default: SPINE_EMBED_BATCH_SIZE).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="onnxruntime threads, 0 = auto (SPINE_EMBED_THREADS).")
    ] = None,
    max_batch_size: Annotated[
        int, typer.Option(help="Most inputs one request may carry; more answer 413.", min=1)
    ] = 256,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="SPINE_EMBEDDER_SERVER_API_KEY", help="Require 'Authorization: Bearer KEY'."
        ),
    ] = None,
) -> None:
    """Serve the local model over an OpenAI-compatible POST /v1/embeddings."""
    from spine.embedder_server import serve_embedder

    settings = _settings(None, embed_batch_size=batch_size, embed_threads=threads)
    console.print(f"Spine embedder  http://{host}:{port}/v1/embeddings")
    serve_embedder(
        host,
        port,
        settings.embed_batch_size,
        threads=settings.embed_threads,
        max_batch_size=max_batch_size,
        api_key=api_key,
    )


@token_app.command("create")
def token_create(
    tenant: Annotated[str, typer.Option(help="The tenant the token acts for.")],
    role: Annotated[Role, typer.Option(help="reader, writer or admin.")] = Role.WRITER,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 3600,
    subject: Annotated[str, typer.Option(help="The sub claim.")] = "cli",
    scope: Annotated[
        list[Scope] | None, typer.Option(help="A scope to grant, e.g. pii:read; repeatable.")
    ] = None,
    audience: Annotated[
        str | None, typer.Option(help="The aud claim (default: SPINE_JWT_AUDIENCE).")
    ] = None,
    private_key: Annotated[
        Path | None,
        typer.Option(help="Sign RS256/ES256 with this PEM (from `spine keys generate`)."),
    ] = None,
    kid: Annotated[
        str | None, typer.Option(help="The kid header (default: the key's RFC 7638 thumbprint).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print a signed token, and nothing else. Without --private-key it is HS256."""
    if kid and private_key is None:
        fail("--kid needs --private-key (HS256 tokens carry no kid)")
    print(
        _make_token(
            _settings(data_dir),
            tenant,
            role,
            ttl,
            subject,
            scopes=scope,
            audience=audience,
            private_key=private_key,
            kid=kid,
        )
    )


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option(help="Folder for private-key.pem and jwks.json.")],
    alg: Annotated[str, typer.Option(help="ES256 (EC P-256) or RS256 (RSA 3072).")] = "ES256",
) -> None:
    """Make a signing key pair: a private PEM (mode 0600) and a JWKS with its public key."""
    from spine.adapters.auth import keys

    if alg.upper() not in ("ES256", "RS256"):
        fail(f"--alg must be ES256 or RS256, not {alg}")
    try:
        private_path, jwks_path = keys.write_key_pair(keys.generate_private_key(alg.upper()), out)
    except FileExistsError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write to {out}: {exc.strerror or type(exc).__name__}")
    console.print(f"private key  {private_path}  (keep it secret: it signs tokens)", soft_wrap=True)
    console.print(f"public JWKS  {jwks_path}", soft_wrap=True)
    console.print(f"export SPINE_JWT_JWKS_URL={jwks_path.resolve()}", soft_wrap=True)


@app.command()
def migrate(
    direction: Annotated[str, typer.Argument(help="up or down")],
    revision: Annotated[str | None, typer.Option(help="Target revision.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Apply (up) or roll back (down) the database migrations."""
    from sqlalchemy.exc import OperationalError

    from spine.adapters.sql import migrate as migrations

    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    if direction not in ("up", "down"):
        fail("direction must be 'up' or 'down'")
    try:
        if direction == "up":
            migrations.upgrade(url, revision or "head")
        else:
            migrations.downgrade(url, revision or "base")
        at = migrations.current(url)
    except OperationalError as exc:
        fail(f"cannot reach the database: {str(exc.orig).strip().splitlines()[0]}")
    console.print(f"database at revision {at or 'base'}")


@app.command()
def gc(
    data_dir: DataDirOption = None,
    grace: Annotated[
        float, typer.Option(help="Keep unreferenced blobs younger than this many seconds.")
    ] = 3600.0,
) -> None:
    """Remove blobs that no document references (orphans of failed writes and deletes),
    and idempotency keys that have expired."""
    from spine.service.bootstrap import open_blob_store, open_database
    from spine.service.container import utc_now
    from spine.service.gc import purge_idempotency_keys, sweep_blobs

    settings = _settings(data_dir)
    db = open_database(settings.resolved_database_url())
    try:
        report = sweep_blobs(db, open_blob_store(settings.resolved_blob_url()), grace_seconds=grace)
        purged = purge_idempotency_keys(db, now=utc_now())
    finally:
        db.close()
    console.print(
        f"examined {report.examined}, removed {report.removed}, "
        f"kept {report.kept_recent} younger than {grace:.0f} s"
    )
    console.print(f"purged {purged} expired idempotency key(s)")


@audit_app.command("verify")
def audit_verify(data_dir: DataDirOption = None) -> None:
    """Check every tenant's hash chain against its head; exit 1 naming the first break."""
    from spine.service.audit import verify
    from spine.service.bootstrap import open_database

    settings = _settings(data_dir)
    db = open_database(settings.resolved_database_url())
    try:
        reports = verify(db)
    finally:
        db.close()
    table = Table(title="Audit chains")
    for column in ("tenant", "entries", "head seq", "status"):
        table.add_column(column)
    for report in reports:
        where = "head" if report.broken_seq is None else f"entry {report.broken_seq}"
        table.add_row(
            escape(report.tenant_id),
            str(report.entries),
            str(report.head.seq) if report.head else "-",
            "[green]intact[/green]" if report.ok else f"[red]broken at {where}[/red]",
        )
    console.print(table)
    broken = [report for report in reports if not report.ok]
    if broken:
        first = broken[0]
        where = "its head" if first.broken_seq is None else f"entry {first.broken_seq}"
        fail(
            escape(
                f"audit chain of tenant {first.tenant_id!r} is broken at {where}: "
                f"{first.problem} ({len(broken)} of {len(reports)} chain(s) broken)"
            )
        )
    entries = sum(report.entries for report in reports)
    console.print(f"{len(reports)} chain(s), {entries} entries: all intact")


@audit_app.command("list")
def audit_list(
    tenant: Annotated[str, typer.Option(help="The tenant whose entries to show.")],
    limit: Annotated[int, typer.Option(help="How many.", min=1, max=1000)] = 50,
    before: Annotated[
        int | None, typer.Option(help="Only entries older than this seq (paging).", min=1)
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """A tenant's audit entries, newest first."""
    from spine.service.bootstrap import open_database

    settings = _settings(data_dir)
    db = open_database(settings.resolved_database_url())
    try:
        with db.read() as uow:
            entries = uow.audit.page(tenant, limit=limit, before=before)
    finally:
        db.close()
    table = Table(title=f"Audit log of {escape(tenant)}: {len(entries)} entries, newest first")
    for column in ("seq", "at (UTC)", "actor", "action", "resource", "request id", "outcome"):
        # Ids are copied into other tools: wrap them, never cut them short with an ellipsis.
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(
            str(entry.seq),
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(entry.actor),
            entry.action,
            escape(entry.resource),
            escape(entry.request_id),
            entry.outcome,
        )
    console.print(table)


# -- moving between modes ---------------------------------------------------------------

TenantsOption = Annotated[
    list[str] | None,
    typer.Option("--tenant", help="A tenant to move (repeat the option); default: every one."),
]


def _open_stores(settings: Settings) -> tuple[Database, BlobStore]:
    """The configured database and blob store, or one line saying why not."""
    from spine.service.bootstrap import open_blob_store, open_database

    try:
        db = open_database(
            settings.resolved_database_url(), busy_timeout_ms=settings.db_busy_timeout_ms
        )
    except Exception as exc:
        fail(f"cannot open the database: {_first_line(exc)}")
    try:
        return db, open_blob_store(settings.resolved_blob_url())
    except Exception as exc:
        db.close()
        fail(f"cannot open the blob store: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write; must be new or empty.")],
    tenant: TenantsOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write tenants (default: all) from the configured stores to a folder, with counts
    and checksums, for `spine import` into the same or the other mode."""
    from spine import __version__
    from spine.adapters.sql import migrate as migrations
    from spine.errors import SpineError
    from spine.service.container import utc_now
    from spine.service.transfer import export_tenants

    settings = _settings(data_dir)
    url = settings.resolved_database_url()
    db, blobs = _open_stores(settings)
    started = time.perf_counter()
    try:
        with _progress() as progress:
            tasks: dict[str, Any] = {}

            def advance(tenant_id: str) -> None:
                if tenant_id not in tasks:
                    tasks[tenant_id] = progress.add_task(
                        f"Exporting {escape(tenant_id)}", total=None
                    )
                progress.advance(tasks[tenant_id])

            manifest = export_tenants(
                db,
                blobs,
                out,
                tenant,
                now=utc_now(),
                spine_version=__version__,
                schema_revision=migrations.current(url),
                source={
                    "database": url.split(":", 1)[0],
                    "blob_store": settings.resolved_blob_url().split(":", 1)[0],
                },
                on_document=advance,
            )
    except SpineError as exc:
        fail(escape(exc.message))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or type(exc).__name__}")
    finally:
        db.close()
    elapsed = time.perf_counter() - started
    table = Table(title=f"Exported to {escape(str(out))}")
    columns = ("tenant", "documents", "chunks", "jobs", "audit entries", "blobs", "unfinished")
    for column in columns:
        table.add_column(column, justify="left" if column == "tenant" else "right")
    for entry in manifest["tenants"]:
        kinds = entry["kinds"]
        table.add_row(
            escape(entry["tenant"]),
            *(str(kinds[kind]["count"]) for kind in ("documents", "chunks", "jobs", "audit")),
            str(kinds["blobs"]["count"]),
            str(entry["unfinished_jobs_skipped"]),
        )
    console.print(table)
    size = _folder_size(out)
    console.print(
        f"{len(manifest['tenants'])} tenant(s), {size / 1e6:.1f} MB in {elapsed:.1f} s; "
        f"counts and checksums in {escape(str(out / 'manifest.json'))}",
        soft_wrap=True,
    )
    for entry in manifest["tenants"]:
        if not any(kind["count"] for kind in entry["kinds"].values()):
            err_console.print(
                f"[yellow]warning:[/yellow] tenant {escape(entry['tenant'])} has no data in "
                "the source (a typo?)",
                soft_wrap=True,
            )
        if entry["missing_blobs"]:
            err_console.print(
                f"[yellow]warning:[/yellow] tenant {escape(entry['tenant'])}: "
                f"{len(entry['missing_blobs'])} blob(s) named by documents were not in the "
                "store (originals deleted?) and are not in the export",
                soft_wrap=True,
            )
        if entry["audit_chain"] != "intact":
            err_console.print(
                f"[yellow]warning:[/yellow] audit chain of {escape(entry['tenant'])} is "
                f"{escape(entry['audit_chain'])}; exported as it is",
                soft_wrap=True,
            )
    skipped = manifest["unfinished_jobs_skipped"]
    if skipped:
        err_console.print(
            f"[yellow]warning:[/yellow] {skipped} unfinished job(s) (PENDING, RUNNING, "
            "RETRYING) were not exported: let the workers drain the queue and export again, "
            "or re-upload those documents with ?reprocess=true after the import",
            soft_wrap=True,
        )


@app.command("import")
def import_command(
    src: Annotated[Path, typer.Argument(help="A folder written by `spine export`.")],
    tenant: TenantsOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write an export into the configured stores, then read it back from them and check
    every count and checksum against the manifest (exit 1 on any difference)."""
    from spine.errors import SpineError
    from spine.service.container import utc_now
    from spine.service.keyring import load_master_key
    from spine.service.transfer import import_tenants, read_manifest, selected_tenants

    settings = _settings(data_dir)
    if not settings.resolved_database_url().startswith("sqlite") and not settings.master_key:
        fail("SPINE_MASTER_KEY must be set to import into a shared database")
    try:
        entries = selected_tenants(read_manifest(src), tenant)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        master = load_master_key(settings.master_key, settings.data_dir)
    except SpineError as exc:
        fail(escape(exc.message))
    except (ValueError, OSError) as exc:
        fail(escape(str(exc)))
    db, blobs = _open_stores(settings)
    started = time.perf_counter()
    try:
        with _progress() as progress:
            totals = {entry["tenant"]: entry["kinds"]["documents"]["count"] for entry in entries}
            tasks: dict[tuple[str, str], Any] = {}

            def step(verb: str) -> Any:
                def advance(tenant_id: str) -> None:
                    key = (verb, tenant_id)
                    if key not in tasks:
                        label = f"{verb} {escape(tenant_id)}"
                        tasks[key] = progress.add_task(label, total=totals.get(tenant_id))
                    progress.advance(tasks[key])

                return advance

            report = import_tenants(
                db,
                blobs,
                src,
                tenant,
                master_key_id=master.key_id,
                now=utc_now(),
                on_document=step("Importing"),
                on_verified=step("Verifying"),
            )
    except SpineError as exc:
        fail(escape(exc.message))
    finally:
        db.close()
    elapsed = time.perf_counter() - started
    for entry in entries:
        tenant_id = entry["tenant"]
        table = Table(title=f"Tenant {escape(tenant_id)}: the target against the manifest")
        for column in ("kind", "expected", "found", "checksum", "ok"):
            table.add_column(column)
        for check in (c for c in report.checks if c.tenant_id == tenant_id):
            same = check.expected.sha256 == check.found.sha256
            table.add_row(
                check.kind,
                str(check.expected.count),
                str(check.found.count),
                "same" if same else "[red]differs[/red]",
                "[green]ok[/green]" if check.ok else "[red]MISMATCH[/red]",
            )
        for chain in (c for c in report.chains if c.tenant_id == tenant_id):
            table.add_row(
                "audit chain",
                "intact",
                "intact" if chain.ok else "broken",
                "-",
                "[green]ok[/green]" if chain.ok else "[red]BROKEN[/red]",
            )
        console.print(table)
    bad = [check for check in report.checks if not check.ok]
    broken = [chain for chain in report.chains if not chain.ok]
    if bad or broken:
        what = [f"{c.tenant_id}/{c.kind}" for c in bad]
        what += [f"{c.tenant_id}/audit chain ({c.problem})" for c in broken]
        fail(escape(f"the target does not match the export: {', '.join(what)}"))
    console.print(
        f"imported {len(entries)} tenant(s) in {elapsed:.1f} s: "
        f"{len(report.checks)} counts and checksums match, audit chains intact"
    )


SPARK_LEVELS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], *, full: float = 0.0) -> str:
    """One character per value, scaled so that the largest value, or ``full`` if that is
    larger, is the full bar; a space for None (no events). Zero is the lowest bar: quiet
    and good, unlike a gap, which is no data."""
    peak = max([full, *(v for v in values if v is not None)])
    top = len(SPARK_LEVELS) - 1
    return "".join(
        " " if v is None else SPARK_LEVELS[min(top, round(v / peak * top)) if peak > 0 else 0]
        for v in values
    )


@app.command()
def slo(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """SLIs, error budgets and burn rates, read from the database (no server needed)."""
    import json

    from spine.service.bootstrap import open_database
    from spine.service.slo import BURN_WINDOWS, HISTORY_HOURS, build_report

    settings = _settings(data_dir)
    db = open_database(settings.resolved_database_url())
    try:
        report = build_report(db, settings, datetime.now(UTC))
    finally:
        db.close()
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    table = Table(title=f"SLOs over {report.window_days} days")
    for column in ("SLO", "objective", f"SLI ({report.window_days}d)", "events", "budget left"):
        table.add_column(column)
    for window in BURN_WINDOWS:
        table.add_column(f"burn {window}", justify="right")
    table.add_column(f"error ratio, last {HISTORY_HOURS} h")
    for status in report.slos:
        left = status.budget_remaining
        color = "green" if left >= 0.5 else "yellow" if left > 0 else "red"
        # Overspent budgets are negative; the display stops at 0 and says so.
        budget = f"{left:.1%}" if left > 0 else f"exhausted ({left:.0%})"
        table.add_row(
            status.name,
            f"{status.objective:.2%}",
            f"{status.sli:.3%}" if status.total else "-",
            f"{status.budget_bad:,} bad / {status.total:,}",
            f"[{color}]{budget}[/{color}]",
            *(_burn(status.burn_rates[window]) for window in BURN_WINDOWS),
            # Full height is the allowed error ratio (burn rate 1) or the worst hour.
            sparkline(status.history, full=1 - status.objective),
        )
    console.print(table)


def _burn(rate: float) -> str:
    """Above 1 the budget runs out before the window's end: worth a colour."""
    return f"[red]{rate:.1f}[/red]" if rate > 1 else f"{rate:.1f}"


# -- client side ----------------------------------------------------------------------


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            fail("no token: set SPINE_TOKEN or pass --token (see `spine token create`)")
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(MAX_THROTTLED_RETRIES + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                fail(f"cannot reach {self.url} ({type(exc).__name__}); is `spine serve` running?")
            if response.status_code != 429 or attempt == MAX_THROTTLED_RETRIES:
                break
            # Rate limited: the server says when a token is free again; wait and resend
            # (an upload's file handle is rewound first).
            time.sleep(_retry_after(response))
            for _name, value in (kwargs.get("files") or {}).items():
                value[1].seek(0)
        if response.status_code >= 400:
            fail(_describe_error(response))
        return response.json() if response.content else None


#: A CLI run waits out this many 429s in a row before it gives up on a request.
MAX_THROTTLED_RETRIES = 20
MAX_RETRY_AFTER_SECONDS = 60.0


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), MAX_RETRY_AFTER_SECONDS)


def _describe_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return f"{response.status_code} {body.get('type', 'error')}: {body.get('detail', '')}".strip()


def _iter_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                parts = child.relative_to(path).parts
                if child.is_file() and not any(part.startswith(".") for part in parts):
                    yield child
        elif path.is_file():
            yield path
        else:
            fail(f"no such file or folder: {path}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to upload.")],
    wait: Annotated[bool, typer.Option(help="Wait until every job ends.")] = False,
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
) -> None:
    """Upload files (folders recursively) and optionally wait for processing."""
    client = Client(url, token)
    files = list(_iter_files(paths))
    if not files:
        fail("nothing to upload")
    jobs: dict[str, str] = {}
    with _progress() as progress:
        task = progress.add_task("Uploading", total=len(files))
        for path in files:
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            with path.open("rb") as handle:
                body = client.request(
                    "POST", "/v1/documents", files={"file": (path.name, handle, content_type)}
                )
            jobs[body["job"]["id"]] = str(path)
            progress.advance(task)
    console.print(f"uploaded {len(files)} file(s)")
    if not wait:
        return
    states = _wait_for(client, list(jobs))
    _print_summary(states, jobs)
    if any(state == "FAILED" for state, _ in states.values()):
        raise typer.Exit(1)


def _wait_for(client: Client, job_ids: list[str]) -> dict[str, tuple[str, str]]:
    states: dict[str, tuple[str, str]] = {}
    pending = list(job_ids)
    with _progress() as progress:
        task = progress.add_task("Processing", total=len(job_ids))
        while pending:
            still: list[str] = []
            for job_id in pending:
                job = client.request("GET", f"/v1/jobs/{job_id}")
                error = job.get("error") or {}
                states[job_id] = (job["state"], error.get("message", ""))
                if job["state"] in TERMINAL_STATES:
                    progress.advance(task)
                else:
                    still.append(job_id)
            pending = still
            if pending:
                time.sleep(0.5)
    return states


def _print_summary(states: dict[str, tuple[str, str]], names: dict[str, str]) -> None:
    counts = Counter(state for state, _ in states.values())
    table = Table(title="Jobs by state")
    table.add_column("state")
    table.add_column("count", justify="right")
    for state, count in sorted(counts.items()):
        table.add_row(state, str(count))
    console.print(table)
    for job_id, (state, message) in states.items():
        if state == "FAILED":
            console.print(f"[red]FAILED[/red] {names[job_id]}: {message}", highlight=False)


def _snippet_markup(snippet: str) -> str:
    """API snippets are HTML with <mark>; the terminal wants Rich markup, safely escaped."""
    parts = snippet.split("<mark>")
    out = [escape(html.unescape(parts[0]))]
    for part in parts[1:]:
        marked, _, rest = part.partition("</mark>")
        out.append(f"[bold yellow]{escape(html.unescape(marked))}[/bold yellow]")
        out.append(escape(html.unescape(rest)))
    return "".join(out)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option(help="Number of results.")] = 10,
    mode: Annotated[str, typer.Option(help="hybrid, keyword or semantic.")] = "hybrid",
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
) -> None:
    """Search the tenant's documents."""
    client = Client(url, token)
    body = client.request("GET", "/v1/search", params={"q": query, "k": k, "mode": mode})
    table = Table(title=f"{len(body['results'])} result(s) in {body['took_ms']} ms ({mode})")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("title")
    table.add_column("snippet")
    for rank, hit in enumerate(body["results"], start=1):
        table.add_row(
            str(rank), f"{hit['score']:.4f}", escape(hit["title"]), _snippet_markup(hit["snippet"])
        )
    console.print(table)


def _print_jobs(items: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in ("id", "document", "state", "attempts", "error"):
        table.add_column(column)
    for job in items:
        error = job.get("error") or {}
        table.add_row(
            job["id"],
            job["document_id"],
            job["state"],
            f"{job['attempts']}/{job['max_attempts']}",
            f"{error.get('type', '')}: {error.get('message', '')}" if error else "",
        )
    console.print(table)


@app.command()
def jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 50,
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
) -> None:
    """List the tenant's jobs, newest first."""
    client = Client(url, token)
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state.upper()
    _print_jobs(client.request("GET", "/v1/jobs", params=params)["items"], "Jobs")


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="How many.")] = 50,
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
) -> None:
    """Dead letters, newest first, with their errors."""
    client = Client(url, token)
    stats = client.request("GET", "/v1/jobs/stats")
    body = client.request("GET", "/v1/jobs", params={"state": "FAILED", "limit": limit})
    _print_jobs(body["items"], f"Dead letters: {stats['dlq_depth']}")


@dlq_app.command("retry")
def dlq_retry(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Jobs to retry.")] = None,
    error_type: Annotated[
        str | None, typer.Option(help="Retry every dead letter with this error.type.")
    ] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
) -> None:
    """Take dead letters back to PENDING: named ones, one error type, or all."""
    client = Client(url, token)
    if job_ids:
        for job_id in job_ids:
            job = client.request("POST", f"/v1/jobs/{job_id}/retry")
            console.print(f"{job['id']} -> {job['state']}")
        return
    if not (error_type or all_jobs):
        fail("name jobs, or pass --error-type TYPE or --all")
    body = client.request("POST", "/v1/jobs/retry", json={"error_type": error_type, "limit": 1000})
    console.print(f"retried {body['count']} job(s)")


@bench_app.command("embed")
def bench_embed(
    chunks: Annotated[int, typer.Option(help="Chunks per run.", min=1)] = 200,
    repeats: Annotated[
        int, typer.Option(help="Timed runs; median and spread are shown.", min=1)
    ] = 3,
    batch_size: Annotated[int | None, typer.Option(help="Chunks per model call.")] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="A BEIR corpus.jsonl; default: stdlib docstrings.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the JSON result.")] = Path("bench/results"),
) -> None:
    """The embedder's chunks/s on realistic ~256-token chunks: ingestion's upper bound."""
    from spine.bench import embed as bench
    from spine.service.bootstrap import open_embedder

    settings = _settings(None, embed_batch_size=batch_size)
    texts = bench.beir_texts(corpus) if corpus else bench.stdlib_texts()
    sample = bench.make_chunks(texts, chunks, settings.chunk_target_tokens)
    if not sample:
        fail("no text to make chunks from")
    with _progress() as progress:
        task = progress.add_task("Embedding", total=repeats)
        result = bench.run(
            lambda: open_embedder(settings),
            sample,
            batch_size=settings.embed_batch_size,
            repeats=repeats,
            on_run=lambda _index, _rate: progress.advance(task),
        )
    table = Table(title=f"{result.model_id}: {result.chunks} chunks x {repeats} runs")
    for column in ("batch", "load s", "chunks/s median", "min", "max", "chars", "tokens"):
        table.add_column(column, justify="right")
    table.add_row(
        str(result.batch_size),
        f"{result.load_seconds:.2f}",
        f"{result.chunks_per_second_median:.1f}",
        f"{result.chunks_per_second_min:.1f}",
        f"{result.chunks_per_second_max:.1f}",
        f"{result.chars_median:.0f}",
        f"{result.tokens_median:.0f}",
    )
    console.print(table)
    console.print(", ".join(f"{k} {v}" for k, v in result.machine.items()))
    console.print(f"wrote {bench.write(result, out)}")


# Options `bench quality` and `bench fusion` share.
BeirDataset = Annotated[
    Path, typer.Option(help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")
]
LimitQueries = Annotated[
    int | None, typer.Option(help="Only the first N judged queries: a quick run.", min=1)
]
IngestWorkers = Annotated[
    int, typer.Option(envvar="SPINE_WORKERS", help="Worker threads ingesting.", min=1)
]
BenchDataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Ingest here and keep it; a later run with it only completes what is "
        "missing. Default: a temporary folder, removed at the end.",
    ),
]
BenchTenant = Annotated[str, typer.Option(help="The tenant holding the corpus.")]
ResultsFolder = Annotated[Path, typer.Option(help="Folder for the JSON result.")]


@contextmanager
def _bench_services(data_dir: Path | None, workers: int) -> Iterator[Services]:
    """Spine on ``data_dir``, or on a temporary folder removed at the end, with no cache
    between a search and its index."""
    from spine.bench import quality
    from spine.observability.logging import configure_logging
    from spine.service.bootstrap import bootstrap

    # Not SPINE_DATA_DIR: the bench tenant's documents do not belong in a real data dir.
    directory = data_dir or Path(tempfile.mkdtemp(prefix="spine-bench-"))
    try:
        settings = _settings(
            directory,
            workers=workers,
            **quality.UNCACHED,
            # Each processed document logs its steps; the progress bars say enough.
            log_level=None if "SPINE_LOG_LEVEL" in os.environ else "WARNING",
        )
        configure_logging(settings)
        try:
            services = bootstrap(settings)
        except ValueError as exc:
            fail(f"cannot start Spine on {directory}: {exc}")
        try:
            yield services
        finally:
            services.close()
    finally:
        if data_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def _ingest_progress(progress: Progress, corpus: int) -> Callable[[IngestProgress], None]:
    uploading = progress.add_task("Uploading", total=corpus)
    processing = progress.add_task("Processing", total=None)

    def on_ingest(state: IngestProgress) -> None:
        progress.update(uploading, completed=state.stored)
        progress.update(processing, completed=state.processed, total=state.documents)

    return on_ingest


@bench_app.command("quality")
def bench_quality(
    dataset: BeirDataset,
    split: Annotated[str, typer.Option(help="Which qrels/<split>.tsv to score.")] = "test",
    modes: Annotated[
        str, typer.Option(help="Search modes to measure, comma-separated.")
    ] = "hybrid,keyword,semantic",
    limit_queries: LimitQueries = None,
    workers: IngestWorkers = 2,
    data_dir: BenchDataDir = None,
    tenant: BenchTenant = "bench",
    out: ResultsFolder = Path("bench/results"),
) -> None:
    """nDCG@10, Recall@100, MRR@10 and latency of each search mode on a BEIR dataset,
    with the corpus ingested through the real pipeline."""
    from spine.bench import quality as bench
    from spine.domain.search import SearchMode

    try:
        chosen = list(dict.fromkeys(SearchMode(name.strip()) for name in modes.split(",")))
    except ValueError:
        fail(f"--modes takes {', '.join(SearchMode)}, comma-separated, not {modes!r}")
    try:
        data = bench.load_dataset(dataset, split, limit_queries=limit_queries)
    except bench.DatasetError as exc:
        fail(str(exc))
    with _bench_services(data_dir, workers) as services:
        try:
            with _progress() as progress:
                on_ingest = _ingest_progress(progress, len(data.corpus))
                searching = {
                    mode: progress.add_task(f"Searching {mode}", total=len(data.queries))
                    for mode in chosen
                }
                result = bench.run(
                    services,
                    data,
                    tenant=tenant,
                    modes=chosen,
                    workers=workers,
                    on_ingest=on_ingest,
                    on_query=lambda mode: progress.advance(searching[mode]),
                )
        except bench.BenchError as exc:
            fail(str(exc))
    table = Table(title=f"{result.dataset} {result.split}: {result.queries} queries")
    for column in ("mode", "nDCG@10", "R@100", "MRR@10", "queries", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, measured in result.modes.items():
        table.add_row(
            mode,
            f"{measured.metrics['ndcg@10']:.4f}",
            f"{measured.metrics['recall@100']:.4f}",
            f"{measured.metrics['mrr@10']:.4f}",
            str(measured.queries),
            f"{measured.latency_ms_median:.1f}",
            f"{measured.latency_ms_p95:.1f}",
        )
        if measured.refused:
            err_console.print(
                f"[yellow]warning:[/yellow] {mode}: search refused {measured.refused} "
                "queries; they count as finding nothing"
            )
    console.print(table)
    reused = f", the rest found in {data_dir}" if result.uploaded < result.documents else ""
    console.print(
        f"{result.documents} documents, {result.chunks} chunks; "
        f"ingest {result.ingest_seconds:.1f} s ({result.uploaded} uploaded{reused})"
    )
    console.print(", ".join(f"{k} {v}" for k, v in result.machine.items()))
    console.print(f"wrote {bench.write(result, out)}")


#: Rows of the fusion table: enough to see the shape of the grid's top.
FUSION_TABLE_ROWS = 15


@bench_app.command("fusion")
def bench_fusion(
    dataset: BeirDataset,
    split: Annotated[
        str, typer.Option(help="Which qrels/<split>.tsv to score; tuning never reads test.")
    ] = "train",
    limit_queries: LimitQueries = None,
    workers: IngestWorkers = 2,
    data_dir: BenchDataDir = None,
    tenant: BenchTenant = "bench",
    out: ResultsFolder = Path("bench/results"),
    rrf_k: Annotated[str, typer.Option(help="RRF's k values, comma-separated.")] = "5,10,20,60",
    keyword_weights: Annotated[
        str, typer.Option(help="The keyword leg's shares in fusion, comma-separated.")
    ] = "0.3,0.4,0.5,0.6,0.7",
    title_weights: Annotated[
        str, typer.Option(help="Title weights of the keyword leg, comma-separated.")
    ] = "1,2",
) -> None:
    """nDCG@10, Recall@100 and MRR@10 of every hybrid ranking in a grid, each leg alone
    included, on a BEIR dataset ingested through the real pipeline: how the ranking
    defaults are chosen."""
    from spine.bench import fusion as bench
    from spine.bench import quality

    try:
        grid = bench.Grid.parse(
            rrf_k=rrf_k, keyword_weights=keyword_weights, title_weights=title_weights
        )
    except bench.GridError as exc:
        # The parameters are named as the options are: rrf_k is --rrf-k.
        fail(f"--{exc.parameter.replace('_', '-')} takes {exc}")
    try:
        data = quality.load_dataset(dataset, split, limit_queries=limit_queries)
    except quality.DatasetError as exc:
        fail(str(exc))
    with _bench_services(data_dir, workers) as services:
        try:
            with _progress() as progress:
                on_ingest = _ingest_progress(progress, len(data.corpus))
                searching = progress.add_task("Searching", total=len(data.queries))
                result = bench.run(
                    services,
                    data,
                    grid,
                    tenant=tenant,
                    workers=workers,
                    on_ingest=on_ingest,
                    on_query=lambda: progress.advance(searching),
                )
        except quality.BenchError as exc:
            fail(str(exc))
    leaderboard = result.leaderboard()
    places = {scored.label: place for place, scored in enumerate(leaderboard, start=1)}
    shown = leaderboard[:FUSION_TABLE_ROWS]
    default = result.by_label(result.default)
    table = Table(
        title=f"{result.dataset} {result.split}: {result.queries} queries, "
        f"{len(result.points)} rankings by nDCG@10"
    )
    for column in ("#", "ranking", "title", "rrf k", "kw weight", "nDCG@10", "R@100", "MRR@10", ""):
        table.add_column(column, justify="left" if column in ("ranking", "") else "right")
    for scored in shown if default in shown else [*shown, default]:
        point, metrics = scored.point, scored.metrics
        table.add_row(
            str(places[scored.label]),
            point.ranker,
            "-" if point.title_weight is None else f"{point.title_weight:g}",
            "-" if point.rrf_k is None else str(point.rrf_k),
            "-" if point.keyword_weight is None else f"{point.keyword_weight:g}",
            f"{metrics['ndcg@10']:.4f}",
            f"{metrics['recall@100']:.4f}",
            f"{metrics['mrr@10']:.4f}",
            "default" if scored is default else "",
            end_section=scored is shown[-1] and default not in shown,
        )
    console.print(table)
    if result.refused:
        err_console.print(
            f"[yellow]warning:[/yellow] search refuses {result.refused} queries; "
            "they count as finding nothing"
        )
    best = leaderboard[0]
    console.print(
        f"best: {best.label}: nDCG@10 {best.metrics['ndcg@10']:.4f}, "
        f"R@100 {best.metrics['recall@100']:.4f}, MRR@10 {best.metrics['mrr@10']:.4f}",
        highlight=False,
    )
    console.print(
        f"configured defaults: {default.label}: nDCG@10 {default.metrics['ndcg@10']:.4f} "
        f"(#{places[default.label]} of {len(leaderboard)}), "
        f"R@100 {default.metrics['recall@100']:.4f}, MRR@10 {default.metrics['mrr@10']:.4f}",
        highlight=False,
    )
    ranking = result.ranking
    console.print(
        f"{result.documents} documents, {result.chunks} chunks; pools: "
        f"{ranking['search_keyword_candidates']} keyword, "
        f"{ranking['search_vector_candidates']} vector chunks; model {ranking['model_id']}",
        highlight=False,
    )
    console.print(", ".join(f"{k} {v}" for k, v in result.machine.items()))
    console.print(f"wrote {bench.write(result, out)}")


HTTP_LATENCY_COLUMNS = ("p50 ms", "p95 ms", "p99 ms", "max ms")


def _advancing(progress: Progress, task: TaskID) -> Callable[[object], None]:
    return lambda _sample: progress.advance(task)


@bench_app.command("http")
def bench_http(
    scenarios: Annotated[
        str,
        typer.Option(help="Scenarios, comma-separated: search-uncached, search-cached, upload."),
    ] = "search-uncached,search-cached,upload",
    rates: Annotated[
        str, typer.Option(help="Requests per second to try in each scenario, comma-separated.")
    ] = "10,20,30,40,60,80,120,160",
    duration: Annotated[float, typer.Option(help="Seconds of arrivals per rate.", min=0.1)] = 10,
    documents: Annotated[
        int, typer.Option(help="Synthetic documents uploaded (and processed) first.", min=0)
    ] = 200,
    senders: Annotated[int, typer.Option(help="Threads sending requests.", min=1)] = 64,
    poisson: Annotated[
        bool, typer.Option(help="Poisson arrivals (seeded) instead of constant spacing.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seeds the documents, queries and arrivals.")] = 0,
    url: Annotated[
        str | None,
        typer.Option(help="Load this server instead of starting `spine serve --workers 1`."),
    ] = None,
    token: TokenOption = None,
    topology: Annotated[
        str,
        typer.Option(
            help="What the bench starts: embedded (one `spine serve` on SQLite) or scale-out "
            "(PostgreSQL + pgvector, S3 and this machine's Redis, --apis API processes and "
            "one worker process)."
        ),
    ] = "embedded",
    apis: Annotated[int, typer.Option(help="Scale-out: API processes, taken in turn.", min=1)] = 2,
    keep_going: Annotated[
        bool,
        typer.Option(help="Try every rate, not stopping after the first that misses its SLO."),
    ] = False,
    out: ResultsFolder = Path("bench/results"),
) -> None:
    """Open-loop load at fixed arrival rates, latency measured from each request's intended
    send time; finds the highest search rate whose p95 stays within the search SLO."""
    from spine.bench import http as bench

    chosen = list(dict.fromkeys(name.strip() for name in scenarios.split(",") if name.strip()))
    unknown = [name for name in chosen if name not in bench.SCENARIOS]
    if unknown or not chosen:
        fail(f"--scenarios takes {', '.join(bench.SCENARIOS)}, comma-separated, not {scenarios!r}")
    try:
        ladder = sorted({float(rate) for rate in rates.split(",")})
    except ValueError:
        fail(f"--rates takes numbers, comma-separated, not {rates!r}")
    if not ladder or ladder[0] <= 0:
        fail("--rates must be positive")
    if url is not None and not token:
        fail("--url needs --token (or SPINE_TOKEN)")
    if topology not in ("embedded", "scale-out"):
        fail(f"--topology takes embedded or scale-out, not {topology!r}")
    settings = _settings(None)
    started = (
        f"{apis} x spine serve --workers 0 + spine worker --concurrency 2 on PostgreSQL, S3 "
        "and Redis (started by the bench)"
        if topology == "scale-out"
        else "spine serve --workers 1 (started by the bench)"
    )
    result = bench.HttpBenchResult(
        target=url or started,
        documents=documents,
        duration_seconds=duration,
        senders=senders,
        arrivals="poisson" if poisson else "constant",
        slo_search_latency_seconds=settings.slo_search_latency_seconds,
        max_error_rate=bench.MAX_ERROR_RATE,
    )
    target: AbstractContextManager[tuple[str | list[str], str]] = (
        nullcontext((url, token or ""))
        if url is not None
        else bench.started_cluster(apis=apis)
        if topology == "scale-out"
        else bench.started_server(workers=1)
    )
    try:
        with (
            target as (base_url, bearer),
            bench.client_for(base_url, bearer, senders) as client,
            _progress() as progress,
        ):
            if documents:
                uploading = progress.add_task("Uploading corpus", total=documents)
                processing = progress.add_task("Processing corpus", total=documents)
                bench.seed_corpus(
                    client,
                    documents,
                    seed=seed,
                    on_uploaded=lambda: progress.advance(uploading),
                    on_processed=lambda done: progress.update(processing, completed=done),
                )
            for name in chosen:

                def on_rate(rate: float, requests: int, name: str = name) -> Any:
                    task = progress.add_task(f"{name} {rate:g}/s", total=requests)
                    return _advancing(progress, task)

                result.scenarios[name] = bench.climb(
                    bench.Scenario(name, client, seed=seed).send,
                    ladder,
                    duration=duration,
                    objective=bench.objective_seconds(name, settings.slo_search_latency_seconds),
                    senders=senders,
                    poisson=poisson,
                    seed=seed,
                    keep_going=keep_going,
                    on_rate=on_rate,
                )
    except (bench.BenchError, httpx.HTTPError, RuntimeError, OSError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    for name, scenario_result in result.scenarios.items():
        table = Table(title=f"{name}: latency from intended send time")
        for column in ("rate/s", "sent", "ok", "errors", "achieved/s", *HTTP_LATENCY_COLUMNS):
            table.add_column(column, justify="right")
        for r in scenario_result.rates:
            table.add_row(
                f"{r.rate:g}",
                str(r.sent),
                str(r.ok),
                str(r.errors),
                f"{r.achieved_rate:g}",
                f"{r.p50_ms:g}",
                f"{r.p95_ms:g}",
                f"{r.p99_ms:g}",
                f"{r.max_ms:g}",
            )
        console.print(table)
        objective = bench.objective_seconds(name, settings.slo_search_latency_seconds)
        console.print(
            f"highest rate within its objective (p95 <= {objective * 1000:g} ms, <= "
            f"{bench.MAX_ERROR_RATE:.0%} errors): {bench.describe_best(scenario_result)}"
        )
    console.print(", ".join(f"{k} {v}" for k, v in result.machine.items()))
    written = bench.write(result, out, stem="http" if topology == "embedded" else "http-scale-out")
    if not any(path.suffix == ".png" for path in written):
        console.print("no chart: matplotlib is missing (pip install 'spine[bench]')")
    console.print("wrote " + ", ".join(str(path) for path in written))


#: `spine bench all`'s parts in the order they run: each a `spine bench` subcommand.
BENCH_ALL_PARTS = ("ingest", "search", "http")
#: The workload `spine bench all` prices with the envelope: a mid-sized team's archive
#: (an assumption, stated as such in docs/DESIGN.md).
BENCH_ALL_WORKLOAD = (
    *("--documents-per-day", "10000", "--average-size", "3KB", "--retention-days", "365"),
    *("--replication", "3", "--search-qps", "20", "--peak-factor", "3"),
)


@bench_app.command("all")
def bench_all(
    documents: Annotated[
        str, typer.Option(help="`bench ingest --documents`: corpus sizes, comma-separated.")
    ] = "1000",
    chunks: Annotated[
        str, typer.Option(help="`bench search --chunks`: index sizes, comma-separated.")
    ] = "10000,100000",
    peers: Annotated[str, typer.Option(help="`bench search --peers`, or none.")] = (
        "chroma-embedded,chroma-http,pgvector"
    ),
    source: Annotated[
        Path, typer.Option(help="The BEIR corpus the synthetic documents are made from.")
    ] = Path("../shared/data/beir/scifact"),
    queries: Annotated[
        int, typer.Option(help="`bench search --queries`: queries per repeat.", min=1)
    ] = 100,
    http_duration: Annotated[
        float, typer.Option(help="`bench http --duration`: seconds per rate.", min=0.1)
    ] = 5,
    skip: Annotated[
        str, typer.Option(help="Parts to leave out, comma-separated: ingest, search, http.")
    ] = "",
    out: ResultsFolder = Path("bench/results"),
) -> None:
    """Ingest, search (with its peers) and HTTP benchmarks in one go, each in its own
    process so one's memory is not counted in the next; then the envelope from their
    results and a summary of the headline ratios (summary.md, summary.json)."""
    from spine.bench import summary

    skipped = {part.strip() for part in skip.split(",") if part.strip()}
    if unknown := skipped - set(BENCH_ALL_PARTS):
        fail(f"--skip takes {', '.join(BENCH_ALL_PARTS)}, not {', '.join(sorted(unknown))}")
    commands = {
        "ingest": ["--documents", documents, "--source", str(source)],
        "search": [
            *("--chunks", chunks, "--peers", peers, "--source", str(source)),
            *("--queries", str(queries)),
        ],
        "http": ["--duration", str(http_duration)],
    }
    seconds: dict[str, float] = {}
    for part in BENCH_ALL_PARTS:
        if part in skipped:
            continue
        console.rule(f"spine bench {part}")
        started = time.perf_counter()
        command = [sys.executable, "-m", "spine", "bench", part, *commands[part]]
        code = subprocess.call([*command, "--out", str(out)])  # noqa: S603 -- our own CLI
        seconds[part] = round(time.perf_counter() - started, 1)
        if code != 0:
            fail(f"spine bench {part} failed (exit {code}); what finished is in {out}")
    console.rule("spine envelope")
    envelope_json = out / "envelope.json"
    command = [sys.executable, "-m", "spine", "envelope", *BENCH_ALL_WORKLOAD]
    with envelope_json.open("w", encoding="utf-8") as written:
        code = subprocess.call(  # noqa: S603 -- our own CLI
            [*command, "--results", str(out), "--json"], stdout=written
        )
    if code != 0:
        fail(f"spine envelope failed (exit {code}) on the results in {out}")
    try:
        result = summary.summarize(out, seconds)
    except summary.SummaryError as exc:
        fail(str(exc))
    summary.print_table(result, console)
    console.print("wrote " + ", ".join(str(path) for path in summary.write(result, out)))


@bench_app.command("search")
def bench_search(
    chunks: Annotated[
        str, typer.Option(help="Index sizes in chunks, comma-separated; each a fresh store.")
    ] = "10000,100000",
    queries: Annotated[int, typer.Option(help="Queries timed per mode and repeat.", min=1)] = 200,
    repeats: Annotated[
        int, typer.Option(help="Query passes per size (the load is not redone).", min=1)
    ] = 3,
    warmup: Annotated[
        int, typer.Option(help="Untimed queries of each kind before the timed ones.", min=0)
    ] = 20,
    chunks_per_document: Annotated[
        int, typer.Option(help="Chunks of each synthetic document.", min=1)
    ] = 4,
    source: Annotated[
        Path | None,
        typer.Option(
            help="The BEIR corpus.jsonl (or its folder) whose sentences make the chunks; "
            "default ../shared/data/beir/scifact."
        ),
    ] = None,
    pool_size: Annotated[
        int | None,
        typer.Option(help="Sentences taken from the source, each embedded once (10000).", min=1),
    ] = None,
    cache_dir: Annotated[
        Path, typer.Option(help="Where the sentence vectors are cached between runs.")
    ] = Path("bench/.cache"),
    database: Annotated[
        str,
        typer.Option(
            help="sqlite (embedded), or postgresql: a private PostgreSQL 18 + pgvector "
            "started for the run."
        ),
    ] = "sqlite",
    peers: Annotated[
        str, typer.Option(help="Peers given the same chunks, comma-separated; all or none.")
    ] = "all",
    seed: Annotated[int, typer.Option(help="Seeds the chunks and the queries.")] = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for search.json, search.md and search.png.")
    ] = Path("bench/results"),
) -> None:
    """Search latency per mode at each index size, through Spine's service layer, against
    the raw index queries under it (the floor) and peers on the same chunks. Chunk vectors
    are means of real sentence embeddings: latency, not quality."""
    from spine.bench import corpus
    from spine.bench import search as bench
    from spine.observability.logging import configure_logging
    from spine.service.bootstrap import open_embedder

    try:
        sizes = tuple(sorted({int(size) for size in chunks.split(",") if size.strip()}))
    except ValueError:
        fail(f"--chunks takes whole numbers, comma-separated, not {chunks!r}")
    if not sizes or sizes[0] < 1:
        fail("--chunks must be positive")
    if database not in bench.DATABASES:
        fail(f"--database takes {' or '.join(bench.DATABASES)}, not {database!r}")
    try:
        pool = corpus.load_pool(source or corpus.DEFAULT_SOURCE, size=pool_size or corpus.POOL_SIZE)
    except corpus.SourceError as exc:
        fail(str(exc))
    try:
        names, skipped = bench.resolve_peers(peers)
    except ValueError as exc:
        fail(str(exc))
    if skipped:
        err_console.print(f"[yellow]warning:[/yellow] {escape(skipped)}")
    settings = _settings(None, log_level=None if "SPINE_LOG_LEVEL" in os.environ else "WARNING")
    configure_logging(settings)
    embedder = open_embedder(settings)
    plan = bench.Plan(
        sizes=sizes,
        queries=queries,
        repeats=repeats,
        warmup=warmup,
        chunks_per_document=chunks_per_document,
        peers=names,
        seed=seed,
    )
    workdir = Path(tempfile.mkdtemp(prefix="spine-bench-search-"))
    try:
        with _progress() as progress:

            def task(description: str, total: int) -> Callable[[int], None]:
                started = progress.add_task(description, total=total)
                return lambda done: progress.advance(started, done)

            reporter = bench.Reporter(
                task=task,
                note=lambda message: progress.console.print(escape(message), highlight=False),
                warn=lambda message: progress.console.print(
                    f"[yellow]warning:[/yellow] {escape(message)}", highlight=False
                ),
            )
            with bench.stores(database, workdir, embedder) as open_store:
                result = bench.run(
                    pool,
                    embedder,
                    open_store,
                    plan,
                    cache_dir=cache_dir,
                    database=database,
                    peers_workdir=workdir / "peers",
                    reporter=reporter,
                )
    except bench.BenchError as exc:
        fail(escape(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for size in result.sizes:
        title = f"{size.chunks:,} chunks on {result.database}: latency, k={result.k}"
        table = Table(title=title)
        for column in bench.LATENCY_HEADER:
            table.add_column(column, justify="right" if column else "left")
        for row in bench.latency_rows(size):
            table.add_row(*row)
        console.print(table)
        ratios = Table(title=f"{size.chunks:,} chunks: Spine over its floor")
        for column in bench.RATIO_HEADER:
            ratios.add_column(column, justify="right" if column in ("p50", "p95") else "left")
        for row in bench.ratio_rows(size):
            ratios.add_row(*row)
        console.print(ratios)
        store = Table(title=f"{size.chunks:,} chunks: the store")
        for column in bench.STORE_HEADER:
            store.add_column(column, justify="right")
        store.add_row(*bench.store_row(size))
        console.print(store)
        if size.peers:
            peer_table = Table(title=f"{size.chunks:,} chunks: peers on the same vectors")
            for column in bench.PEER_HEADER:
                peer_table.add_column(column, justify="left" if column == "peer" else "right")
            for row in bench.peer_rows(size):
                peer_table.add_row(*row)
            console.print(peer_table)
    console.print(f"vectors: {result.vectors}", highlight=False)
    reused = "reused" if result.sentence_vectors["reused"] else "embedded now"
    console.print(
        f"sentence vectors: {result.sentence_vectors['cache']} ({reused}); "
        f"wall time {result.wall_seconds:.0f} s",
        highlight=False,
    )
    console.print(", ".join(f"{k} {v}" for k, v in result.machine.items()))
    written = bench.write(result, out)
    if not any(path.suffix == ".png" for path in written):
        console.print("no chart: matplotlib is missing (pip install 'spine[bench]')")
    console.print("wrote " + ", ".join(str(path) for path in written))


@bench_app.command("ingest")
def bench_ingest(
    documents: Annotated[
        str, typer.Option(help="Corpus sizes in documents, comma-separated; each a fresh data dir.")
    ] = "1000",
    source: Annotated[
        Path | None,
        typer.Option(
            help="The BEIR corpus.jsonl (or its folder) whose sentences make the pages; "
            "default ../shared/data/beir/scifact."
        ),
    ] = None,
    workers: IngestWorkers = 2,
    repeats: Annotated[
        int, typer.Option(help="Ingests of each size, each fresh; median and range.", min=1)
    ] = 1,
    embed_sample: Annotated[
        int, typer.Option(help="Stored chunks the raw embedder is timed on.", min=1)
    ] = 300,
    embed_repeats: Annotated[
        int, typer.Option(help="Timed passes of the raw embedder over its sample.", min=1)
    ] = 3,
    steady_rate: Annotated[
        float | None,
        typer.Option(help="Uploads/s of the steady phase; default half the measured docs/s."),
    ] = None,
    steady_seconds: Annotated[
        float, typer.Option(help="Seconds of steady uploads; 0 skips the phase.", min=0)
    ] = 60,
    seed: Annotated[int, typer.Option(help="Seeds the pages.")] = 0,
    out: Annotated[
        Path, typer.Option(help="Folder for ingest.json, ingest.md and ingest.png.")
    ] = Path("bench/results"),
) -> None:
    """Ingest throughput end to end (documents, chunks and text bytes per second) against
    the raw embedder on the same chunks, upload-to-searchable latency at a steady rate,
    and memory and disk per chunk."""
    from spine.bench import corpus, quality
    from spine.bench import ingest as bench
    from spine.observability.logging import configure_logging
    from spine.service.bootstrap import open_embedder

    started = time.monotonic()
    try:
        sizes = [int(size) for size in documents.split(",")]
    except ValueError:
        fail(f"--documents takes whole numbers, comma-separated, not {documents!r}")
    if min(sizes) < 1:
        fail("--documents must be positive")
    if steady_rate is not None and steady_rate <= 0:
        fail("--steady-rate must be positive")
    try:
        pool = corpus.load_pool(source or corpus.DEFAULT_SOURCE)
    except corpus.SourceError as exc:
        fail(str(exc))
    settings = _settings(
        None,
        workers=workers,
        **quality.UNCACHED,
        # Each processed document logs its steps; the progress bars say enough.
        log_level=None if "SPINE_LOG_LEVEL" in os.environ else "WARNING",
    )
    try:
        bench.check_embedded(settings)
    except bench.BenchError as exc:
        fail(str(exc))
    configure_logging(settings)
    embedder = open_embedder(settings)
    tasks: dict[str, TaskID] = {}
    try:
        with _progress() as progress:

            def on_progress(task: str, done: int, total: int) -> None:
                if task not in tasks:
                    tasks[task] = progress.add_task(task, total=total)
                progress.update(tasks[task], completed=done, total=total)

            result = bench.run(
                pool,
                sizes,
                settings=settings,
                embedder=embedder,
                workers=workers,
                repeats=repeats,
                embed_sample=embed_sample,
                embed_repeats=embed_repeats,
                steady_rate=steady_rate,
                steady_seconds=steady_seconds,
                seed=seed,
                on_progress=on_progress,
            )
    except bench.BenchError as exc:
        fail(str(exc))
    for title, columns, row in (
        (
            f"ingest: {workers} workers; median (min-max) of {repeats} run(s)",
            bench.THROUGHPUT_COLUMNS,
            bench.throughput_row,
        ),
        ("memory and disk after ingest", bench.STORAGE_COLUMNS, bench.storage_row),
    ):
        table = Table(title=title)
        for column in columns:
            table.add_column(column, justify="right")
        for size in result.sizes:
            table.add_row(*row(size))
        console.print(table)
    if result.steady is not None:
        steady = result.steady
        table = Table(title="upload to searchable at a steady rate, from the intended upload")
        for column in bench.STEADY_COLUMNS:
            table.add_column(column, justify="right")
        table.add_row(*bench.steady_row(steady))
        console.print(table)
    console.print(", ".join(f"{k} {v}" for k, v in result.machine.items()))
    written = bench.write(result, out)
    if not any(path.suffix == ".png" for path in written):
        console.print("no chart: matplotlib is missing (pip install 'spine[bench]')")
    console.print("wrote " + ", ".join(str(path) for path in written))
    console.print(f"wall time {time.monotonic() - started:.0f} s")


# -- back-of-envelope ------------------------------------------------------------------


@app.command("envelope")
def envelope_command(
    documents_per_day: Annotated[float, typer.Option(help="Documents uploaded a day.", min=0)],
    average_size: Annotated[
        str, typer.Option(help="Average upload: 2KB (10^3), 4MiB (2^20) or plain bytes.")
    ],
    retention_days: Annotated[int, typer.Option(help="Days a document is kept.", min=1)],
    search_qps: Annotated[float, typer.Option(help="Average searches a second.", min=0)],
    peak_factor: Annotated[float, typer.Option(help="Peak load over average.", min=1)],
    replication: Annotated[int, typer.Option(help="Copies of each blob.", min=1)] = 1,
    response_size: Annotated[
        str, typer.Option(help="Bytes out per search (egress); an assumption.")
    ] = "10KB",
    prices: Annotated[
        Path | None,
        typer.Option(help="Prices (JSON, or .toml); default: the shipped illustrative ones."),
    ] = None,
    results: Annotated[
        Path, typer.Option(help="Benchmark results folder (or one quality-*.json).")
    ] = Path("bench/results"),
    worker_docs_per_second: Annotated[
        float | None, typer.Option(help="Override: documents/s one worker ingests.")
    ] = None,
    api_searches_per_second: Annotated[
        float | None, typer.Option(help="Override: searches/s one API process answers.")
    ] = None,
    bytes_per_document: Annotated[
        float | None, typer.Option(help="Override: database bytes per document.")
    ] = None,
    measured_workers: Annotated[
        int | None,
        typer.Option(help="Workers the quality run used (default: the file's, else 2).", min=1),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the envelope as JSON.")] = False,
) -> None:
    """Storage, upload bandwidth, processes and the biggest cost lines for a workload,
    from the per-process throughput `spine bench` measured."""
    import json

    from spine.bench import envelope as bench

    try:
        workload = bench.Workload(
            documents_per_day=documents_per_day,
            average_document_bytes=bench.parse_size(average_size),
            retention_days=retention_days,
            replication=replication,
            search_qps=search_qps,
            peak_factor=peak_factor,
            search_response_bytes=bench.parse_size(response_size),
        )
        measured = bench.measured_costs(
            results,
            workload,
            worker_documents_per_second=worker_docs_per_second,
            api_searches_per_second=api_searches_per_second,
            bytes_per_document=bytes_per_document,
            measured_workers=measured_workers,
        )
        result = bench.envelope(workload, measured, bench.load_prices(prices))
    except bench.EnvelopeError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    _print_envelope(result)


def _si_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{size:,.0f} B"
        size /= 1000
    raise AssertionError("unreachable")


def _print_envelope(result: Envelope) -> None:
    workload, measured, money = result.workload, result.measured, result.prices.currency
    inputs = Table(title="Inputs")
    for column in ("input", "value", "source"):
        inputs.add_column(column, overflow="fold")
    for name, value in (
        ("documents/day", f"{workload.documents_per_day:,g}"),
        ("average size", _si_bytes(workload.average_document_bytes)),
        ("retention", f"{workload.retention_days} days"),
        ("replication", f"{workload.replication}x blobs"),
        ("search QPS", f"{workload.search_qps:,g} (peak x{workload.peak_factor:g})"),
        ("response size", f"{_si_bytes(workload.search_response_bytes)} (assumed)"),
    ):
        inputs.add_row(name, value, "given")
    for name, measure, unit in (
        ("worker ingest", measured.worker_documents_per_second, "docs/s"),
        ("API searches", measured.api_searches_per_second, "searches/s"),
        ("DB per document", measured.bytes_per_document, "B"),
    ):
        inputs.add_row(name, f"{measure.value:,.2f} {unit}", escape(measure.source))
    console.print(inputs)

    storage = Table(title="Storage held")
    for column in ("after", "documents", "blobs", "database", "total"):
        storage.add_column(column, justify="left" if column == "after" else "right")
    for point in result.storage:
        storage.add_row(
            point.label,
            f"{point.documents:,.0f}",
            _si_bytes(point.blob_bytes),
            _si_bytes(point.database_bytes),
            _si_bytes(point.total_bytes),
        )
    console.print(storage)

    load = Table(title="Upload bandwidth and processes")
    for column in ("", "average", "peak", "per process", "processes at peak"):
        load.add_column(column, justify="left" if not column else "right")
    upload = result.upload
    load.add_row(
        "upload",
        f"{_si_bytes(upload.average_bytes_per_second)}/s = "
        f"{upload.average_mbit_per_second:,.3f} Mbit/s",
        f"{_si_bytes(upload.peak_bytes_per_second)}/s = {upload.peak_mbit_per_second:,.3f} Mbit/s",
        "",
        "",
    )
    processes = result.processes
    load.add_row(
        "workers (docs/s)",
        f"{processes.peak_documents_per_second / workload.peak_factor:,.3f}",
        f"{processes.peak_documents_per_second:,.3f}",
        f"{measured.worker_documents_per_second.value:,.2f}",
        str(processes.workers),
    )
    load.add_row(
        "API (searches/s)",
        f"{workload.search_qps:,.3f}",
        f"{processes.peak_searches_per_second:,.3f}",
        f"{measured.api_searches_per_second.value:,.2f}",
        str(processes.apis),
    )
    console.print(load)

    costs = Table(title=f"Monthly cost ({money}, prices: illustrative unless you passed --prices)")
    for column in ("line", f"{money}/month", "detail", ""):
        costs.add_column(column, justify="right" if column.endswith("/month") else "left")
    top = result.top_two
    for line in result.costs:
        costs.add_row(
            line.name, f"{line.monthly:,.2f}", line.detail, "top 2" if line.name in top else ""
        )
    console.print(costs)
    console.print(
        f"Biggest two: {' and '.join(top)}. Total {sum(c.monthly for c in result.costs):,.2f} "
        f"{money}/month.",
        highlight=False,
    )
    if result.prices.note:
        console.print(escape(result.prices.note), highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
