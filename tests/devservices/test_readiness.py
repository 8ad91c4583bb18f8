"""wait_for_http against real child processes: one that serves, one that exits, one that
never answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spine.devservices.readiness import wait_for_http
from support.server import free_port


@contextmanager
def child(*args: str, cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def test_a_server_that_answers_200_is_ready(tmp_path: Path) -> None:
    (tmp_path / "ok").write_text("ok")
    port = free_port()
    with child("-m", "http.server", str(port), "--bind", "127.0.0.1", cwd=tmp_path) as process:
        url = f"http://127.0.0.1:{port}/ok"
        assert wait_for_http(process, url, timeout=30) == "ready"


def test_a_process_that_exits_is_reported_as_exited() -> None:
    with child("-c", "raise SystemExit(3)") as process:
        url = f"http://127.0.0.1:{free_port()}/"
        assert wait_for_http(process, url, timeout=30) == "exited"


def test_a_process_that_never_answers_times_out() -> None:
    with child("-c", "import time; time.sleep(60)") as process:
        url = f"http://127.0.0.1:{free_port()}/"
        assert wait_for_http(process, url, timeout=0.5) == "timeout"
        assert process.poll() is None


def test_an_answer_other_than_200_is_not_ready(tmp_path: Path) -> None:
    port = free_port()
    with child("-m", "http.server", str(port), "--bind", "127.0.0.1", cwd=tmp_path) as process:
        missing = f"http://127.0.0.1:{port}/missing"
        assert wait_for_http(process, missing, timeout=1) == "timeout"
