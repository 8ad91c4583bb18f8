"""An ``Embedder`` that calls an OpenAI-compatible ``POST /v1/embeddings`` endpoint.

It works with ``spine embedder serve``, text-embeddings-inference, Ollama and OpenAI: the
request is ``{"model": ..., "input": [texts]}`` and the answer's ``data[i].embedding`` are
put back in the order of ``data[i].index``.

Failure handling, from the inside out:

- **One request** has a timeout. Timeouts, connection errors, 408, 429 and 5xx are
  retryable; 413 splits the batch in halves (a single text that still gets 413 is a
  permanent error); any other 4xx (or a 3xx, or an answer that is not an embedding list
  of the expected dimension) is a permanent :class:`~spine.errors.PipelineError` that
  carries the server's message.
- **Retries**: up to ``max_retries`` more attempts, waiting by exponential backoff with full
  jitter (tenacity's ``wait_random_exponential``: uniform in ``[0, min(max, base * 2**n)]``),
  or, on 429 and 503, what the ``Retry-After`` header says (seconds or an HTTP date), capped
  at ``retry_after_max_seconds``. A request that still fails raises
  :class:`~spine.errors.TransientError`.
- **The breaker**: each request-with-retries is one call through the circuit breaker, so
  each one that ends in a transient error is one breaker failure. While the breaker is
  open, ``embed`` raises :class:`DownstreamUnavailable` at once, with ``retry_at``.
  Permanent errors and 413s do not count: the server answered.

Vectors are L2-normalised, as the local MiniLM's are, so the index's cosine distance means
the same thing whichever embedder made a vector.

Safe to share between threads: ``httpx.Client`` is, the breaker is, and each call builds
its own retry state.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import httpx
import numpy as np
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from spine import __version__
from spine.adapters.embedders.breaker import CircuitBreaker, utc_now
from spine.errors import DownstreamUnavailable, PipelineError, TransientError

if TYPE_CHECKING:
    from spine.ports import Embedder

__all__ = ["DownstreamUnavailable", "HttpEmbedder", "embeddings_endpoint", "parse_retry_after"]

log = structlog.get_logger("spine.embedder.http")

RETRYABLE_STATUSES: Final = frozenset({408, 429}) | frozenset(range(500, 600))
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
_MESSAGE_CHARS: Final = 500


class _Retryable(TransientError):
    """One attempt failed in a way that another attempt may fix."""

    def __init__(self, message: str, *, wait_hint: float | None = None) -> None:
        super().__init__(message)
        self.wait_hint = wait_hint


class _BatchTooLarge(PipelineError):
    """413: the caller splits the batch. Permanent, so the breaker does not count it."""


def embeddings_endpoint(url: str) -> str:
    """``http://host:8001``, ``.../v1`` and ``.../v1/embeddings`` all mean the endpoint."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"embedder URL must be http(s)://host[:port][/path], got {url!r}")
    path = parsed.path.rstrip("/")
    if not path.endswith("/embeddings"):
        path += "/embeddings" if path.endswith("/v1") else "/v1/embeddings"
    return str(parsed.copy_with(path=path))


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), or None."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def server_message(response: httpx.Response) -> str:
    """The error text of problem+json, OpenAI, TEI or Ollama bodies, else the raw text."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        message = message or body.get("detail") or body.get("title") or body.get("message")
    if isinstance(message, str) and message:
        return message[:_MESSAGE_CHARS]
    return (response.text.strip() or response.reason_phrase)[:_MESSAGE_CHARS]


class HttpEmbedder:
    """The ``Embedder`` port over HTTP, with timeouts, retries and a circuit breaker."""

    model_id: str
    dimension: int

    def __init__(
        self,
        url: str,
        *,
        model: str,
        dimension: int,
        api_key: str | None = None,
        batch_size: int = 32,
        timeout_seconds: float = 30.0,
        max_retries: int = 4,
        breaker: CircuitBreaker | None = None,
        client: httpx.Client | None = None,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 10.0,
        retry_after_max_seconds: float = 30.0,
        normalize: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be at least 1, got {dimension}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.model_id = model
        self.dimension = dimension
        self.endpoint: Final = embeddings_endpoint(url)
        self.batch_size: Final = batch_size
        self.max_retries: Final = max_retries
        self.retry_after_max_seconds: Final = retry_after_max_seconds
        self.normalize: Final = normalize
        self.breaker: Final = breaker or CircuitBreaker(name=f"embedder {self.endpoint}")
        self._timeout: Final = httpx.Timeout(timeout_seconds)
        self._owns_client: Final = client is None
        self._client: Final = client or httpx.Client(timeout=self._timeout)
        self._headers: Final = {"User-Agent": f"spine/{__version__}"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._backoff: Final = wait_random_exponential(
            multiplier=backoff_base_seconds, max=backoff_max_seconds
        )
        self._sleep: Final = sleep
        self._clock: Final = clock

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order. Raises ``DownstreamUnavailable`` while open."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        items = list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(items), self.batch_size):
            vectors.extend(self._embed_splitting(items[start : start + self.batch_size]))
        return vectors

    # -- one batch ----------------------------------------------------------------------

    def _embed_splitting(self, batch: list[str]) -> list[list[float]]:
        try:
            with self.breaker.guard():
                return self._request_with_retries(batch)
        except _BatchTooLarge as exc:
            if len(batch) == 1:
                raise PipelineError(
                    f"{self.endpoint} refused one text of {len(batch[0])} characters as too "
                    f"large (413): {exc.message}"
                ) from exc
            half = (len(batch) + 1) // 2
            log.info("embedder.split", size=len(batch), into=[half, len(batch) - half])
            return self._embed_splitting(batch[:half]) + self._embed_splitting(batch[half:])

    def _request_with_retries(self, batch: list[str]) -> list[list[float]]:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._request, batch)
        except _Retryable as exc:
            raise TransientError(
                f"{exc.message} (gave up after {self.max_retries + 1} attempts)"
            ) from exc

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(exc, _Retryable) and exc.wait_hint is not None:
            return min(exc.wait_hint, self.retry_after_max_seconds)
        return self._backoff(state)

    def _log_retry(self, state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        wait = state.next_action.sleep if state.next_action is not None else None
        log.warning(
            "embedder.retry",
            endpoint=self.endpoint,
            attempt=state.attempt_number,
            wait_seconds=wait,
            error=str(exc),
        )

    def _request(self, batch: list[str]) -> list[list[float]]:
        """One POST. Raises _Retryable, _BatchTooLarge or PipelineError on failure."""
        try:
            response = self._client.post(
                self.endpoint,
                json={"model": self.model_id, "input": batch},
                headers=self._headers,
                timeout=self._timeout,
            )
        except httpx.TimeoutException as exc:
            raise _Retryable(
                f"{self.endpoint} timed out ({type(exc).__name__}, limit {self._timeout.read}s)"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise PipelineError(f"{self.endpoint}: {exc}") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach {self.endpoint} ({type(exc).__name__}: {exc})") from exc
        status = response.status_code
        if status == 413:
            raise _BatchTooLarge(server_message(response))
        if status in RETRYABLE_STATUSES:
            hint = None
            if status in RETRY_AFTER_STATUSES:
                hint = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
            raise _Retryable(
                f"{self.endpoint} answered {status}: {server_message(response)}", wait_hint=hint
            )
        if not response.is_success:
            raise PipelineError(f"{self.endpoint} answered {status}: {server_message(response)}")
        return self._parse(response, len(batch))

    def _parse(self, response: httpx.Response, expected: int) -> list[list[float]]:
        def bad(why: str) -> PipelineError:
            return PipelineError(f"{self.endpoint} answered an invalid embedding list: {why}")

        try:
            body: Any = response.json()
        except ValueError as exc:
            raise bad("not JSON") from exc
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise bad("no 'data' list")
        if len(data) != expected:
            raise bad(f"{len(data)} embeddings for {expected} inputs")
        ordered: list[list[float] | None] = [None] * expected
        for position, item in enumerate(data):
            if not isinstance(item, dict):
                raise bad(f"data[{position}] is not an object")
            index = item.get("index", position)
            if type(index) is not int or not 0 <= index < expected or ordered[index] is not None:
                raise bad(f"data[{position}].index is {index!r}")
            vector = item.get("embedding")
            if not isinstance(vector, list) or not all(
                type(x) is float or type(x) is int for x in vector
            ):
                raise bad(f"data[{position}].embedding is not a list of numbers")
            if len(vector) != self.dimension:
                raise PipelineError(
                    f"{self.endpoint} returned {len(vector)} dimensions, expected "
                    f"{self.dimension}: is model {self.model_id!r} the one configured?"
                )
            ordered[index] = vector
        matrix = np.array(ordered, dtype=np.float64)
        if not np.isfinite(matrix).all():
            raise bad("non-finite numbers")
        if self.normalize:
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
        result: list[list[float]] = matrix.tolist()
        return result


if TYPE_CHECKING:
    _conforms: type[Embedder] = HttpEmbedder
