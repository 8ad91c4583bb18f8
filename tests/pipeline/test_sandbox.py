"""ExtractionSandbox: hostile files and misbehaving parsers fail with a reason, never the caller.

Every fault is followed by a good document on the same sandbox: the sandbox must survive it.
Small limits keep this fast: a 2 s timeout, 512 MB of address space per child.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spine.errors import ExtractionError, TransientError
from spine.pipeline.detect import DOCX, HTML, MARKDOWN, PDF, PLAIN
from spine.pipeline.extract import Extracted, extract
from spine.pipeline.sandbox import ExtractFunction, ExtractionSandbox
from support.documents import make_docx, make_html, make_markdown, make_pdf
from support.hostile import (
    HOSTILE_FILES,
    MIB,
    TRIGGER,
    HostileFile,
    allocate_too_much_fake,
    crash_with_segfault_fake,
    exit_fake,
    hang_forever_fake,
    make_bzip2_docx,
    make_deeply_nested_html,
    make_lying_zip_bomb_docx,
    make_many_members_docx,
    make_zip_bomb_docx,
    memory_error_in_parser_fake,
    raise_unexpected_fake,
    report_limits_fake,
)

TIMEOUT = 2.0
MEMORY_MB = 512
TEXT = "Pelicans nest on the shores of the lake every spring."

GOOD: list[tuple[str, bytes]] = [
    (PDF, make_pdf(TEXT, title="Pelican Notes")),
    (DOCX, make_docx(TEXT, heading="Pelican Notes")),
    (HTML, make_html(TEXT, title="Pelican Notes")),
    (MARKDOWN, make_markdown(TEXT, title="Pelican Notes")),
    (PLAIN, TEXT.encode()),
]

SandboxFactory = Callable[..., ExtractionSandbox]


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    """``make_sandbox(target=..., **options)``: a sandbox with the test limits, closed after."""
    made: list[ExtractionSandbox] = []

    def make(target: ExtractFunction | None = None, **options: object) -> ExtractionSandbox:
        settings: dict[str, object] = {
            "timeout_seconds": TIMEOUT,
            "memory_mb": MEMORY_MB,
            "max_uncompressed_bytes": 200 * MIB,
        }
        settings.update(options)
        sandbox = ExtractionSandbox(target=target, **settings)  # type: ignore[arg-type]
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[ExtractionSandbox]:
    """One sandbox for the whole poison set: it must come through all of it."""
    with ExtractionSandbox(TIMEOUT, MEMORY_MB, 200 * MIB) as sandbox:
        yield sandbox


def assert_still_works(sandbox: ExtractionSandbox) -> None:
    extracted = sandbox.extract(make_pdf(TEXT, title="After"), PDF)
    assert TEXT in extracted.text
    assert extracted.title == "After"


def assert_reason(error: pytest.ExceptionInfo[ExtractionError], *words: str) -> None:
    assert type(error.value) is ExtractionError
    assert not error.value.transient
    for word in words:
        assert word in error.value.message, error.value.message


def wait_until_dead(pid: int) -> None:
    """Until the process is a zombie (multiprocessing reaps it: no waitpid here)."""
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(500):
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still running")


# --- good documents ----------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "data"), GOOD, ids=[kind for kind, _ in GOOD])
def test_sandbox_gives_what_extract_gives(
    shared_sandbox: ExtractionSandbox, content_type: str, data: bytes
) -> None:
    assert shared_sandbox.extract(data, content_type) == extract(data, content_type)


def test_text_round_trips_exactly(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    text = "Caf\u00e9 \U0001f426 \u4e2d\u6587 | tab\tand\nlines"
    assert sandbox.extract(text.encode(), PLAIN) == Extracted(text=text, title=None)
    page = b"<title>T\xc3\xadtulo</title><p>x</p>"
    assert sandbox.extract(page, HTML) == Extracted(text="x", title="T\u00edtulo")


def test_a_child_serves_many_calls(shared_sandbox: ExtractionSandbox) -> None:
    for content_type, data in GOOD:
        shared_sandbox.extract(data, content_type)
    pids = shared_sandbox.pids()
    for content_type, data in GOOD:
        shared_sandbox.extract(data, content_type)
    assert shared_sandbox.pids() == pids
    assert len(pids) == 1


# --- the poison set ----------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE_FILES, ids=[file.name for file in HOSTILE_FILES])
def test_hostile_file_fails_with_a_reason_and_the_sandbox_survives(
    shared_sandbox: ExtractionSandbox, hostile: HostileFile
) -> None:
    assert_still_works(shared_sandbox)
    pids = shared_sandbox.pids()
    with pytest.raises(ExtractionError) as error:
        shared_sandbox.extract(hostile.data, hostile.content_type)
    assert_reason(error, *hostile.reason_words)
    assert_still_works(shared_sandbox)
    # a file the parser refuses is an ordinary answer: the child is kept
    assert shared_sandbox.pids() == pids


def test_zip_bomb_is_refused_before_it_is_inflated() -> None:
    # in-process, without any memory limit: the guard reads the central directory only
    with pytest.raises(ExtractionError, match=r"zip bomb.*expands 1,0\d\d times, to 1,024 MB"):
        extract(make_zip_bomb_docx(), DOCX)


def test_docx_over_the_uncompressed_limit_is_refused_through_the_sandbox(
    make_sandbox: SandboxFactory,
) -> None:
    # 8 MiB at ~1000:1 is under the ratio rule's 10 MB floor: only the total limit applies
    bomb = make_zip_bomb_docx(8 * MIB)
    assert "Pelican" not in extract(bomb, DOCX).text  # fine under the default limit
    sandbox = make_sandbox(max_uncompressed_bytes=5 * MIB)
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(bomb, DOCX)
    assert_reason(error, "zip bomb", "would expand to", "limit of 5 MB")
    assert_still_works(sandbox)


def test_zip_with_too_many_members_is_refused() -> None:
    with pytest.raises(ExtractionError, match=r"\d\d,\d{3} files, more than 10,000"):
        extract(make_many_members_docx(), DOCX)


def test_zip_member_count_comes_from_the_central_directory_when_the_end_record_lies() -> None:
    data = bytearray(make_many_members_docx())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = (5).to_bytes(2, "little") * 2  # claim 5 members
    with pytest.raises(ExtractionError, match=r"\d\d,\d{3} files, more than 10,000"):
        extract(bytes(data), DOCX)


def test_zip_with_an_unusual_compression_method_is_refused() -> None:
    with pytest.raises(ExtractionError, match="compression method 12"):
        extract(make_bzip2_docx(), DOCX)


def test_lying_zip_sizes_cannot_make_the_reader_inflate_the_bomb(
    make_sandbox: SandboxFactory,
) -> None:
    data = make_lying_zip_bomb_docx()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # the directory looks harmless
        assert archive.getinfo("word/document.xml").file_size == 4096
    sandbox = make_sandbox(memory_mb=300)
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(data, DOCX)
    assert_reason(error, "damaged", "CRC")  # zipfile stopped at the declared size
    assert_still_works(sandbox)


def test_nesting_far_beyond_the_limit_is_refused_at_once() -> None:
    with pytest.raises(ExtractionError, match="levels deep"):
        extract(b"<div>" * 1_000_000 + b"x", HTML)  # unclosed, 5 MB


def test_markup_in_scripts_and_comments_does_not_count_as_nesting() -> None:
    page = b"<script>" + b"<div>" * 20_000 + b"</script><!--" + b"<div>" * 20_000 + b"--><p>ok"
    assert extract(page, HTML).text == "ok"


def test_deep_nesting_below_the_limit_still_extracts() -> None:
    assert extract(make_deeply_nested_html(9_000), HTML).text == "deep text"


# --- misbehaving parsers -----------------------------------------------------------------------


def test_hang_is_cut_off_at_the_timeout(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=hang_forever_fake)
    assert_still_works(sandbox)
    (before,) = sandbox.pids()
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(TRIGGER, PDF)
    assert_reason(error, "extraction took longer than 2 s")
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)  # killed and reaped
    assert_still_works(sandbox)
    assert sandbox.pids() != [before]


def test_segfault_is_reported_with_its_signal(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=crash_with_segfault_fake)
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(TRIGGER, PDF)
    assert_reason(error, "the parser crashed (signal SIGSEGV)")
    assert_still_works(sandbox)


def test_memory_is_limited(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=allocate_too_much_fake)
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(TRIGGER, PDF)
    assert_reason(error, "extraction ran out of memory (limit 512 MB)")
    assert_still_works(sandbox)


def test_memory_error_wrapped_by_extract_is_still_out_of_memory(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = make_sandbox(target=memory_error_in_parser_fake)
    assert_still_works(sandbox)
    (before,) = sandbox.pids()
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(TRIGGER, DOCX)
    assert_reason(error, "ran out of memory")
    assert_still_works(sandbox)
    assert sandbox.pids() != [before]  # a child that ran out of memory is not reused


def test_unexpected_exception_is_a_readable_extraction_error(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = make_sandbox(target=raise_unexpected_fake)
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(TRIGGER, PDF)
    assert_reason(error, "failed unexpectedly", "RuntimeError: parser bug")
    assert_still_works(sandbox)


def test_child_that_exits_is_reported(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=exit_fake)
    with pytest.raises(ExtractionError) as error:
        sandbox.extract(TRIGGER, PDF)
    assert_reason(error, "exited unexpectedly (exit code 3)")
    assert_still_works(sandbox)


def test_limits_are_set_in_the_child_only(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=report_limits_fake)
    address_space, core, cpu, pid = (
        int(value) for value in sandbox.extract(TRIGGER, PLAIN).text.split()
    )
    assert address_space == MEMORY_MB * MIB
    assert core == 0
    assert 0 < cpu <= 60  # a little above the 2 s timeout, plus the CPU time used so far
    assert pid != os.getpid()
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != MEMORY_MB * MIB


def test_child_killed_while_idle_is_replaced_transparently(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    assert_still_works(sandbox)
    (idle,) = sandbox.pids()
    os.kill(idle, signal.SIGKILL)
    wait_until_dead(idle)
    assert_still_works(sandbox)  # not the next file's fault
    assert sandbox.pids() != [idle]


def test_child_is_recycled_after_its_call_budget(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(max_calls_per_child=2)
    assert_still_works(sandbox)
    first = sandbox.pids()
    assert_still_works(sandbox)
    assert sandbox.pids() == []  # retired after its second call
    assert_still_works(sandbox)
    assert sandbox.pids() != first


# --- threads and lifecycle ---------------------------------------------------------------------


def test_a_hanging_file_does_not_hold_up_other_callers(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=hang_forever_fake, max_children=2)
    errors: list[BaseException] = []
    started = threading.Event()

    def poison() -> None:
        started.set()
        try:
            sandbox.extract(TRIGGER, PDF)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=poison)
    thread.start()
    started.wait()
    for _ in range(3):
        assert_still_works(sandbox)
    assert thread.is_alive()  # the poison file is still running in the other child
    thread.join(timeout=30)
    assert len(errors) == 1
    assert isinstance(errors[0], ExtractionError)
    assert "took longer" in errors[0].message


def test_concurrent_calls_share_a_bounded_pool(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(max_children=2)
    results: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for content_type, data in GOOD:
                text = sandbox.extract(data, content_type).text
                with lock:
                    results.append(text)
                    assert len(sandbox.pids()) <= 2
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(results) == 4 * len(GOOD)
    assert all("Pelicans nest" in text for text in results)
    assert 1 <= len(sandbox.pids()) <= 2


def test_close_interrupts_a_running_call_as_transient(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=hang_forever_fake, timeout_seconds=60)
    assert_still_works(sandbox)
    (child,) = sandbox.pids()
    errors: list[BaseException] = []

    def poison() -> None:
        try:
            sandbox.extract(TRIGGER, PDF)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=poison)
    thread.start()
    while thread.is_alive() and not sandbox._busy:  # the call has its child
        time.sleep(0.01)
    sandbox.close()
    thread.join(timeout=10)
    assert not thread.is_alive()  # long before the 60 s timeout
    assert len(errors) == 1
    assert type(errors[0]) is TransientError, errors[0]
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    with pytest.raises(TransientError, match="shutting down"):
        sandbox.extract(b"text", PLAIN)
    sandbox.close()  # idempotent


def test_close_stops_idle_children(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(max_children=2)
    assert_still_works(sandbox)
    (child,) = sandbox.pids()
    sandbox.close()
    assert sandbox.pids() == []
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_forkserver_start_method_works_too(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(target=crash_with_segfault_fake, start_method="forkserver")
    assert_still_works(sandbox)
    with pytest.raises(ExtractionError, match="SIGSEGV"):
        sandbox.extract(TRIGGER, PDF)
    assert_still_works(sandbox)


def test_target_must_be_importable_by_the_child() -> None:
    with pytest.raises(TypeError, match="module-level function"):
        ExtractionSandbox(
            TIMEOUT, MEMORY_MB, 200 * MIB, target=lambda data, kind: extract(data, kind)
        )


@pytest.mark.parametrize(
    "options",
    [
        {"timeout_seconds": 0},
        {"memory_mb": 0},
        {"max_children": 0},
        {"start_method": "fork"},
    ],
)
def test_invalid_options_are_refused(options: dict[str, object]) -> None:
    settings: dict[str, object] = {"timeout_seconds": TIMEOUT, "memory_mb": MEMORY_MB}
    settings.update(options)
    with pytest.raises(ValueError):  # noqa: PT011
        ExtractionSandbox(**settings)  # type: ignore[arg-type]
