"""The log set-up itself: what a traceback may carry."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from spine.observability.logging import configure_logging
from spine.settings import Settings
from support.telemetry import json_logs

SECRET = "hunter2-" + "s" * 32


def fail_with_a_secret_in_hand() -> None:
    password = SECRET  # noqa: F841 -- the local a traceback must not show
    raise RuntimeError("boom")


def test_a_json_traceback_names_frames_but_never_their_local_variables() -> None:
    with json_logs() as logs:
        try:
            fail_with_a_secret_in_hand()
        except RuntimeError:
            structlog.get_logger("spine.test").exception("test.failed")
    [event] = [e for e in logs.events() if e["event"] == "test.failed"]
    frames = event["exception"][0]["frames"]
    assert [f["name"] for f in frames][-1] == "fail_with_a_secret_in_hand"
    assert SECRET not in logs.text()
    assert all("locals" not in frame or not frame["locals"] for frame in frames)


@pytest.fixture
def console_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging(Settings(log_format="console"), stream=stream)  # type: ignore[arg-type]
    yield stream
    structlog.reset_defaults()
    root.handlers, root.level = saved[0], saved[1]


def test_a_console_traceback_never_shows_local_variables(console_logs: io.StringIO) -> None:
    try:
        fail_with_a_secret_in_hand()
    except RuntimeError:
        structlog.get_logger("spine.test").exception("test.failed")
    output = console_logs.getvalue()
    assert "fail_with_a_secret_in_hand" in output
    assert SECRET not in output
