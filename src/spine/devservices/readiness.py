"""Wait for a child process's HTTP endpoint to answer 200: the start of every server the
tests and benches run (``spine serve``, ``spine embedder serve``, Chroma's server)."""

from __future__ import annotations

import subprocess
import time
from typing import Literal

import httpx

Outcome = Literal["ready", "exited", "timeout"]


def wait_for_http(
    process: subprocess.Popen[bytes], url: str, *, timeout: float, interval: float = 0.1
) -> Outcome:
    """Poll ``url`` until it answers 200 ("ready"), ``process`` exits ("exited") or
    ``timeout`` seconds pass ("timeout"); the caller words the error its own way."""
    deadline = time.monotonic() + timeout
    # One client for the whole wait: a new one a poll builds an SSL context each time
    # (~25 ms of CPU), taken from the very process that is starting up.
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return "exited"
            try:
                if client.get(url).status_code == 200:
                    return "ready"
            except httpx.TransportError:
                pass
            time.sleep(interval)
    return "exited" if process.poll() is not None else "timeout"
