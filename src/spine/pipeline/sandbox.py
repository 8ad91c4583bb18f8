"""Text extraction in child processes: a hostile file can neither hang nor kill the worker.

``ExtractionSandbox.extract`` runs ``spine.pipeline.extract.extract`` in a child process with
an address-space limit (``RLIMIT_AS``), a CPU-time limit a little above the wall-clock timeout
(``RLIMIT_CPU``) and no core dumps (``RLIMIT_CORE`` 0). The parent enforces the wall-clock
timeout itself: at the deadline a watchdog thread kills the child with SIGKILL, which also
unblocks whatever pipe operation the calling thread is waiting in. Every failure becomes an
``ExtractionError`` with a readable reason (a timeout, running out of memory, a crash and its
signal), or a ``TransientError`` when the file is not to blame (the sandbox is shutting down,
a child could not start).

Design:

- A small pool of children, at most ``max_children`` (set it to the number of worker threads),
  each serving one call at a time, started on first use and reused across calls: starting a
  child costs 0.3-0.6 s, while a call on a running child adds ~0.25 ms to the extraction. A
  pool rather than one child behind a lock, so that a file that hangs until the timeout holds
  up only its own worker, not every worker's extraction, and PDFs extract in parallel
  (PDFium needs a lock within one process).
- A child that timed out, crashed, ran out of memory or raised something unexpected is
  discarded, and the next call starts a fresh one. A child is also retired after
  ``max_calls_per_child`` calls, so that whatever a parser leaked goes with it.
- Children are started with ``spawn``: a fresh interpreter that inherits neither the parent's
  threads (onnxruntime's pools, which make ``fork`` unsafe) nor its descriptors, and that
  behaves the same on Linux and macOS. ``forkserver`` starts children no faster unless its
  process-wide ``set_forkserver_preload`` is used, which would couple this class to every
  other user of multiprocessing in the process; it is accepted as ``start_method``.
- The request is two raw byte messages over a pipe (content type, then the file), so the
  file is never pickled. The reply is a small binary frame, not a pickle: the parent never
  unpickles what comes from a process that has just parsed hostile input.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import resource
import signal
import struct
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Final, Literal

from spine.errors import ExtractionError, PipelineError, TransientError
from spine.pipeline.extract import DEFAULT_MAX_UNCOMPRESSED_BYTES, Extracted, extract

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess

__all__ = ["ExtractFunction", "ExtractionSandbox", "StartMethod"]

#: What a sandbox runs: ``extract`` itself, or a picklable module-level stand-in (tests).
ExtractFunction = Callable[[bytes, str], Extracted]
StartMethod = Literal["spawn", "forkserver"]

_MIB: Final = 1024 * 1024

# Reply frames from the child: one tag byte, then the payload.
_READY: Final = b"R"
_OK: Final = b"O"  # struct _TITLE_LENGTH (-1: no title), title, text; UTF-8 with surrogatepass
_FAILED: Final = b"E"  # an ExtractionError's message
_NO_MEMORY: Final = b"M"
_BROKEN: Final = b"X"  # an unexpected exception: "Type: message"
_TITLE_LENGTH: Final = struct.Struct("<q")

# The child's exit status when it ran out of memory and could not even say so.
_EXIT_NO_MEMORY: Final = 99
# A child killed by one of these was stopped by a supervisor or a terminal, not by the file.
_STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_REAP_SECONDS: Final = 5.0


def _seconds(value: float) -> str:
    return f"{value:g}"


# --- the child ---------------------------------------------------------------------------------


def _set_limit(which: int, value: int) -> None:
    """Lower both the soft and the hard limit to ``value`` (never raise a hard limit)."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _renew_cpu_limit(seconds: int) -> None:
    """Allow ``seconds`` more CPU time from now: RLIMIT_CPU counts the process's whole life,
    and a child serves many calls. Only the soft limit moves (SIGXCPU when reached)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _caused_by_memory(error: BaseException) -> bool:
    """Whether a MemoryError is in the chain: extract wraps any parser exception."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _encode_extracted(extracted: Extracted) -> bytes:
    text = extracted.text.encode("utf-8", "surrogatepass")
    if extracted.title is None:
        return _OK + _TITLE_LENGTH.pack(-1) + text
    title = extracted.title.encode("utf-8", "surrogatepass")
    return b"".join((_OK, _TITLE_LENGTH.pack(len(title)), title, text))


def _run_target(target: ExtractFunction, data: bytes, content_type: str) -> tuple[bytes, bool]:
    """The reply to send, and whether this child may serve another call."""
    try:
        try:
            return _encode_extracted(target(data, content_type)), True
        except ExtractionError as exc:
            if _caused_by_memory(exc):
                return _NO_MEMORY, False
            return _FAILED + exc.message.encode("utf-8", "replace"), True
        except MemoryError:
            return _NO_MEMORY, False
        except BaseException as exc:  # a bug or a parser gone wrong: report it, then retire
            if _caused_by_memory(exc):
                return _NO_MEMORY, False
            return _BROKEN + f"{type(exc).__name__}: {exc}".encode("utf-8", "replace"), False
    except MemoryError:  # while building a reply
        return _NO_MEMORY, False


def _child_main(
    conn: Connection[Any, Any], target: ExtractFunction, memory_bytes: int, cpu_seconds: int
) -> None:
    """Serve extraction requests until the parent closes the pipe (or dies)."""
    # Ctrl+C in a terminal signals the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_AS, memory_bytes)
    conn.send_bytes(_READY)
    while True:
        try:
            content_type = conn.recv_bytes().decode("utf-8", "replace")
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        except MemoryError:
            os._exit(_EXIT_NO_MEMORY)
        _renew_cpu_limit(cpu_seconds)
        reply, reusable = _run_target(target, data, content_type)
        del data
        try:
            conn.send_bytes(reply)
        except MemoryError:
            os._exit(_EXIT_NO_MEMORY)
        except OSError:
            return
        if not reusable:
            return


# --- the parent --------------------------------------------------------------------------------


class _NotDelivered(Exception):
    """The child died before it had the whole request: the file cannot be to blame."""


class _Child:
    """One child process and the parent's end of its pipe.

    Only the thread that has checked the child out talks over the pipe, waits for its exit and
    retires it; any thread may kill it. ``_lock`` orders kills against reaping and release, so
    a signal never reaches a recycled pid.
    """

    def __init__(
        self,
        context: SpawnContext | ForkServerContext,
        target: ExtractFunction,
        memory_bytes: int,
        cpu_seconds: int,
    ) -> None:
        parent_end, child_end = context.Pipe(duplex=True)
        self.conn: Connection[Any, Any] = parent_end
        self.process: BaseProcess = context.Process(
            target=_child_main,
            args=(child_end, target, memory_bytes, cpu_seconds),
            name="spine-extract",
            daemon=True,  # multiprocessing kills it if this process exits
        )
        self.max_reply = memory_bytes  # a child cannot build a larger reply within its limit
        self.calls = 0
        self.stopping = False  # set by ExtractionSandbox.close while a call may be running
        self._lock = threading.Lock()
        self._released = False
        try:
            with _START_LOCK:
                self.process.start()
        finally:
            child_end.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def await_ready(self, timeout: float) -> None:
        """Wait until the child has imported the parsers and set its limits."""
        try:
            ready = self.conn.poll(timeout) and self.conn.recv_bytes() == _READY
        except (EOFError, OSError):
            ready = False
        if ready:
            return
        code = self.exit_code(0.5)
        self.retire()
        if code is None:
            raise TransientError(f"the extraction process did not start within {timeout:g} s")
        raise TransientError(f"the extraction process failed to start ({_describe_exit(code)})")

    def alive(self) -> bool:
        with self._lock:
            return not self._released and self.process.exitcode is None

    def kill(self) -> None:
        with self._lock:
            # exitcode polls (and reaps): a pid that was reaped is never signalled.
            if not self._released and self.process.exitcode is None:
                self.process.kill()

    def exit_code(self, timeout: float) -> int | None:
        """The exit code once the child has ended, waiting up to ``timeout``; else None."""
        deadline = time.monotonic() + timeout
        wait([self.process.sentinel], timeout)
        # The sentinel closes a moment before the child can be reaped: poll, never block.
        while True:
            with self._lock:
                code = self.process.exitcode
            if code is not None or time.monotonic() >= deadline:
                return code
            time.sleep(0.002)

    def call(
        self, data: bytes, content_type: str, timeout: float, watchdog: _Watchdog
    ) -> tuple[bytes | None, bool]:
        """Send a request and wait for the reply: ``(reply, timed_out)``; no reply when the
        child died or was killed at the deadline. Raises ``_NotDelivered``."""
        self.calls += 1
        # The deadline covers sending, extracting and receiving: whatever the parent is
        # blocked on when the child is killed returns at once (EOF or a broken pipe).
        watchdog.arm(self, time.monotonic() + timeout)
        reply: bytes | None = None
        try:
            self.conn.send_bytes(content_type.encode("utf-8", "replace"))
            self.conn.send_bytes(data)
        except OSError as exc:
            if watchdog.disarm(self):
                return None, True
            raise _NotDelivered from exc
        try:
            reply = self.conn.recv_bytes(self.max_reply)
        except (EOFError, OSError):
            reply = None
        return reply, watchdog.disarm(self)

    def retire(self) -> None:
        """End the child for good and release its resources."""
        self.conn.close()
        self.kill()
        if self.exit_code(_REAP_SECONDS) is None:
            return  # unkillable for now; multiprocessing reaps it at its next start
        with self._lock:
            self._released = True
            self.process.close()


# Process.start touches multiprocessing's module-level bookkeeping of children.
_START_LOCK = threading.Lock()


class _Watchdog:
    """One thread per sandbox that kills each child whose call has passed its deadline.

    Arming and disarming cost a lock, where a ``threading.Timer`` per call would start a thread
    (~0.25 ms, half of a warm call's overhead).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadlines: dict[_Child, float] = {}
        self._expired: set[_Child] = set()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def arm(self, child: _Child, deadline: float) -> None:
        with self._cond:
            self._deadlines[child] = deadline
            self._expired.discard(child)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="spine-extract-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def disarm(self, child: _Child) -> bool:
        """Stop watching ``child``; whether its deadline had passed (it was killed)."""
        with self._cond:
            self._deadlines.pop(child, None)
            expired = child in self._expired
            self._expired.discard(child)
            return expired

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                due = [child for child, deadline in self._deadlines.items() if deadline <= now]
                if due:
                    for child in due:
                        del self._deadlines[child]
                        self._expired.add(child)
                    self._cond.release()
                    try:
                        for child in due:
                            child.kill()
                    finally:
                        self._cond.acquire()
                    continue
                wake = min(self._deadlines.values(), default=None)
                self._cond.wait(None if wake is None else wake - now)


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {_signal_name(-code)}"
    return f"exit code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class ExtractionSandbox:
    """``extract`` in child processes with a wall-clock timeout and resource limits.

    Thread-safe: up to ``max_children`` calls run at once, each in its own child; further
    callers wait for a free child. Use one sandbox per process, created at start-up with
    ``max_children`` equal to the number of worker threads, and ``close`` it at shutdown.
    """

    def __init__(
        self,
        timeout_seconds: float,
        memory_mb: int,
        max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
        *,
        max_children: int = 1,
        target: ExtractFunction | None = None,
        start_method: StartMethod = "spawn",
        max_calls_per_child: int = 1000,
        start_timeout_seconds: float = 30.0,
    ) -> None:
        """``target`` replaces ``extract`` (it then ignores ``max_uncompressed_bytes``); it
        must be a module-level function, since the child imports it by name."""
        if timeout_seconds <= 0 or start_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive")
        if memory_mb <= 0 or max_uncompressed_bytes <= 0:
            raise ValueError("memory_mb and max_uncompressed_bytes must be positive")
        if max_children < 1 or max_calls_per_child < 1:
            raise ValueError("max_children and max_calls_per_child must be at least 1")
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.max_children = max_children
        self._target: ExtractFunction = (
            target
            if target is not None
            else partial(extract, max_uncompressed_bytes=max_uncompressed_bytes)
        )
        try:
            pickle.dumps(self._target)
        except Exception as exc:
            raise TypeError(
                f"the sandbox target must be a picklable module-level function: {exc}"
            ) from exc
        self._context: SpawnContext | ForkServerContext
        if start_method == "spawn":
            self._context = multiprocessing.get_context("spawn")
        elif start_method == "forkserver":
            self._context = multiprocessing.get_context("forkserver")
        else:  # "fork" would copy onnxruntime's threads' locks into the child
            raise ValueError(f"unsupported start method {start_method!r}")
        self._memory_bytes = memory_mb * _MIB
        self._cpu_seconds = math.ceil(timeout_seconds) + 5
        self._max_calls = max_calls_per_child
        self._start_timeout = start_timeout_seconds
        self._slots = threading.BoundedSemaphore(max_children)
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._closed = False
        self._watchdog = _Watchdog()

    def __enter__(self) -> ExtractionSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def extract(self, data: bytes, content_type: str) -> Extracted:
        """Like ``spine.pipeline.extract.extract``, in a child process.

        Raises ``ExtractionError`` for the file's own failures, the timeout, running out of
        memory and a crash of the parser; ``TransientError`` when the sandbox is closed or a
        child cannot be started.
        """
        with self._slots:
            for attempt in range(2):
                child = self._checkout()
                reusable = False
                try:
                    reply, timed_out = child.call(
                        data, content_type, self.timeout_seconds, self._watchdog
                    )
                except _NotDelivered:
                    if attempt == 0 and not child.stopping:
                        continue  # it died while idle; a fresh child gets the file
                    raise self._death_error(child, child.exit_code(_REAP_SECONDS)) from None
                else:
                    result, reusable = self._outcome(child, reply, timed_out)
                    if isinstance(result, PipelineError):
                        raise result
                    return result
                finally:
                    self._checkin(child, reusable=reusable)
        raise AssertionError("unreachable")  # pragma: no cover

    def pids(self) -> list[int]:
        """Process ids of the running children (for tests and diagnostics)."""
        with self._lock:
            children = [*self._idle, *self._busy]
        return [pid for child in children if (pid := child.pid) is not None]

    def close(self) -> None:
        """Stop every child. A call still running ends with ``TransientError`` (its job is
        retried), and later calls fail the same way. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for child in busy:
            child.stopping = True
            child.kill()  # its thread sees EOF, then retires it
        for child in idle:
            child.retire()
        self._watchdog.stop()

    # --- internals ---

    def _closed_error(self) -> TransientError:
        return TransientError("text extraction was interrupted: the service is shutting down")

    def _checkout(self) -> _Child:
        with self._lock:
            if self._closed:
                raise self._closed_error()
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    self._busy.add(child)
                    return child
                child.retire()  # died while idle (killed from outside)
        try:
            child = _Child(self._context, self._target, self._memory_bytes, self._cpu_seconds)
        except OSError as exc:  # out of processes or descriptors: the host, not the file
            raise TransientError(f"cannot start an extraction process: {exc}") from exc
        child.await_ready(self._start_timeout)
        with self._lock:
            if self._closed:
                child.retire()
                raise self._closed_error()
            self._busy.add(child)
        return child

    def _checkin(self, child: _Child, *, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(child)
            if reusable and not self._closed and child.calls < self._max_calls:
                self._idle.append(child)
                return
        child.retire()

    def _outcome(
        self, child: _Child, reply: bytes | None, timed_out: bool
    ) -> tuple[Extracted | PipelineError, bool]:
        """The call's result or error, and whether the child may serve again."""
        if reply is None:
            if child.stopping:
                return self._closed_error(), False
            if timed_out:
                return self._timeout_error(), False
            return self._death_error(child, child.exit_code(_REAP_SECONDS)), False
        tag, payload = reply[:1], reply[1:]
        if tag == _OK:
            try:
                return _decode_extracted(payload), not timed_out
            except (ValueError, struct.error):
                pass
        elif tag == _FAILED:
            return ExtractionError(payload.decode("utf-8", "replace")), not timed_out
        elif tag == _NO_MEMORY:
            return self._memory_error(), False
        elif tag == _BROKEN:
            detail = payload.decode("utf-8", "replace")
            return ExtractionError(f"the parser failed unexpectedly ({detail})"), False
        return ExtractionError("the parser process sent a malformed reply"), False

    def _timeout_error(self) -> ExtractionError:
        return ExtractionError(f"extraction took longer than {_seconds(self.timeout_seconds)} s")

    def _memory_error(self) -> ExtractionError:
        return ExtractionError(f"extraction ran out of memory (limit {self.memory_mb} MB)")

    def _death_error(self, child: _Child, code: int | None) -> PipelineError:
        if child.stopping:
            return self._closed_error()
        if code is None:  # the pipe broke but the process lives on: it broke the protocol
            child.kill()
            return ExtractionError("the parser process stopped answering")
        if code == _EXIT_NO_MEMORY:
            return self._memory_error()
        if code >= 0:
            return ExtractionError(f"the parser process exited unexpectedly (exit code {code})")
        number = -code
        name = _signal_name(number)
        if number == signal.SIGXCPU:
            return ExtractionError(
                f"extraction took longer than {_seconds(self.timeout_seconds)} s (CPU time limit)"
            )
        if number == signal.SIGKILL:
            return ExtractionError(
                "the parser was killed (signal SIGKILL), probably by the system's "
                "out-of-memory killer"
            )
        if number in _STOP_SIGNALS:
            return TransientError(f"the extraction process was stopped (signal {name})")
        return ExtractionError(f"the parser crashed (signal {name})")


def _decode_extracted(payload: bytes) -> Extracted:
    (title_length,) = _TITLE_LENGTH.unpack_from(payload)
    start = _TITLE_LENGTH.size
    if title_length < 0:
        return Extracted(text=payload[start:].decode("utf-8", "surrogatepass"), title=None)
    end = start + title_length
    if end > len(payload):
        raise ValueError("title longer than the reply")
    return Extracted(
        text=payload[end:].decode("utf-8", "surrogatepass"),
        title=payload[start:end].decode("utf-8", "surrogatepass"),
    )
