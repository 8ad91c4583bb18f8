"""Real ``spine`` processes for tests that kill them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from spine.devservices.readiness import wait_for_http

SPINE = [sys.executable, "-m", "spine"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_env(data_dir: Path, secret: str, **settings: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SPINE_DATA_DIR": str(data_dir),
            "SPINE_JWT_SECRET": secret,
            "SPINE_JOB_LEASE_SECONDS": "2",
            "SPINE_JOB_POLL_SECONDS": "0.1",
            "SPINE_RETRY_BASE_SECONDS": "0.2",
            "SPINE_SHUTDOWN_GRACE_SECONDS": "5",
        }
    )
    env.update({f"SPINE_{key.upper()}": value for key, value in settings.items()})
    return env


class SpineProcess:
    """``spine serve`` or ``spine worker`` in a child process, with its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [*SPINE, *args], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    @classmethod
    def serve(
        cls, data_dir: Path, env: dict[str, str], *, workers: int
    ) -> tuple[SpineProcess, str]:
        port = free_port()
        process = cls(
            ["serve", "--port", str(port), "--workers", str(workers), "--data-dir", str(data_dir)],
            env,
            data_dir.parent / f"serve-{port}.log",
        )
        url = f"http://127.0.0.1:{port}"
        process.wait_ready(url)
        return process, url

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        outcome = wait_for_http(self.proc, f"{url}/readyz", timeout=timeout)
        if outcome != "ready":
            raise AssertionError(f"spine {outcome}: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()
