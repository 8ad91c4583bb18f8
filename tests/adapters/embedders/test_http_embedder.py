"""HttpEmbedder against the real embedder server and a scripted fake, over real sockets.

The servers run with uvicorn in a thread on a loopback port. No test sleeps for real
between retries: the embedder's ``sleep`` is a recorder and its clock a fixed time, so the
tests assert on the waits the embedder chose, not on wall time.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.adapters.embedders.breaker import CircuitBreaker
from spine.adapters.embedders.http import HttpEmbedder, embeddings_endpoint, parse_retry_after
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.embedder_server import create_embedder_app
from spine.errors import DownstreamUnavailable, PipelineError, TransientError

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
FAKE_MODEL = "fake-embedding-model"
FAKE_DIMENSION = 8

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "SQLite is a small, fast, self-contained SQL database engine.",
    "Circuit breakers stop a failing downstream from taking the caller down with it.",
    "Bonjour tout le monde",
    "x",
    "Vectors are compared by cosine similarity after L2 normalisation.",
    "A longer text. " * 40,
    "Retry-After tells the client how long to wait before the next request.",
    "",
    "Last one: order must be kept.",
]


# -- servers on loopback sockets --------------------------------------------------------


class LoopbackServer:
    """An ASGI app served by uvicorn in a thread, on a free 127.0.0.1 port."""

    def __init__(self, app: ASGIApp) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._socket.close()


class StatusRecorder:
    """ASGI middleware that records the status of every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.statuses: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.statuses.append(message["status"])
            await send(message)

        await self.app(scope, receive, recording_send)


def fake_vector(text: str) -> list[float]:
    """Deterministic, not normalised, never zero."""
    digest = hashlib.sha256(text.encode()).digest()
    return [byte - 127.5 for byte in digest[:FAKE_DIMENSION]]


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def assert_vectors(got: list[list[float]], expected: list[list[float]]) -> None:
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        assert row == pytest.approx(want, rel=1e-12, abs=1e-12)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.hypot(*a) * math.hypot(*b))


@dataclass
class Reply:
    """One scripted answer: ``status`` 200 with real vectors unless ``body`` overrides."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


class FlakyEmbeddingServerFake:
    """An OpenAI-style embeddings endpoint that plays a script of answers, then ``default``.

    It records every request's inputs. Its data list comes back in reverse order, so the
    client must put vectors back by ``index``. A text for which ``too_large`` is true makes
    any batch that holds it answer 413.
    """

    def __init__(
        self,
        *script: Reply,
        default: Reply | None = None,
        too_large: Callable[[str], bool] = lambda _text: False,
    ) -> None:
        self.script: deque[Reply] = deque(script)
        self.default = default or Reply()
        self.too_large = too_large
        self.requests: list[list[str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/embeddings")(self._embeddings)

    async def _embeddings(self, request: Request) -> Response:
        body = await request.json()
        texts: list[str] = body["input"]
        self.bodies.append(body)
        self.requests.append(texts)
        reply = self.script.popleft() if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if any(self.too_large(text) for text in texts):
            return JSONResponse({"error": "batch too large"}, status_code=413)
        if reply.status != 200 or reply.body is not None:
            content = reply.body
            if content is None:
                content = {"error": {"message": f"scripted {reply.status}"}}
            if isinstance(content, str):
                return Response(content, status_code=reply.status, headers=reply.headers)
            return JSONResponse(content, status_code=reply.status, headers=reply.headers)
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text)}
            for i, text in enumerate(texts)
        ]
        return JSONResponse(
            {"object": "list", "data": data[::-1], "model": FAKE_MODEL, "usage": {}}
        )


class Recorder:
    """Stands in for ``time.sleep``: keeps the waits, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def real_server(embedder: MiniLMOnnxEmbedder) -> Iterator[str]:
    with LoopbackServer(create_embedder_app(embedder)) as server:
        yield server.url


@pytest.fixture
def sleep() -> Recorder:
    return Recorder()


@pytest.fixture
def serve() -> Iterator[Callable[[FlakyEmbeddingServerFake], str]]:
    """Start a fake on its own port; every one is stopped at the end of the test."""
    servers: list[LoopbackServer] = []

    def start(fake: FlakyEmbeddingServerFake) -> str:
        server = LoopbackServer(fake.app).__enter__()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def fake_embedder(url: str, sleep: Recorder, **options: Any) -> HttpEmbedder:
    options.setdefault("max_retries", 4)
    return HttpEmbedder(
        url, model=FAKE_MODEL, dimension=FAKE_DIMENSION, sleep=sleep, clock=lambda: T0, **options
    )


# -- against the real server ------------------------------------------------------------


@pytest.fixture(scope="module")
def local_vectors(embedder: MiniLMOnnxEmbedder) -> list[list[float]]:
    return embedder.embed(TEXTS)


def test_vectors_match_the_local_model_in_order(
    real_server: str, embedder: MiniLMOnnxEmbedder, local_vectors: list[list[float]]
) -> None:
    remote = HttpEmbedder(
        real_server, model=embedder.model_id, dimension=embedder.dimension, batch_size=4
    )
    try:
        vectors = remote.embed(TEXTS)
    finally:
        remote.close()

    assert len(vectors) == len(TEXTS)
    for got, expected in zip(vectors, local_vectors, strict=True):
        assert len(got) == embedder.dimension
        assert cosine(got, expected) > 0.9999
        assert math.isclose(math.hypot(*got), 1.0, rel_tol=1e-9)
    assert remote.model_id == embedder.model_id
    assert remote.embed([]) == []


@pytest.mark.parametrize("suffix", ["/", "/v1", "/v1/", "/v1/embeddings"])
def test_the_url_may_name_the_endpoint_or_not(
    real_server: str, embedder: MiniLMOnnxEmbedder, suffix: str
) -> None:
    remote = HttpEmbedder(
        real_server + suffix, model=embedder.model_id, dimension=embedder.dimension
    )

    (got,) = remote.embed(["hello"])

    assert cosine(got, embedder.embed(["hello"])[0]) > 0.9999


def test_threads_share_one_embedder(real_server: str, embedder: MiniLMOnnxEmbedder) -> None:
    remote = HttpEmbedder(real_server, model=embedder.model_id, dimension=embedder.dimension)
    results: dict[int, list[list[float]]] = {}
    texts = {worker: [f"worker {worker} text {i}" for i in range(6)] for worker in range(6)}

    def work(worker: int) -> None:
        results[worker] = remote.embed(texts[worker])

    threads = [threading.Thread(target=work, args=(worker,)) for worker in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    remote.close()

    for worker, vectors in results.items():
        for got, expected in zip(vectors, embedder.embed(texts[worker]), strict=True):
            assert cosine(got, expected) > 0.9999
    assert len(results) == len(texts)


def test_a_413_splits_the_batch_in_halves(
    embedder: MiniLMOnnxEmbedder, local_vectors: list[list[float]]
) -> None:
    recorder = StatusRecorder(create_embedder_app(embedder, max_batch_size=3))
    with LoopbackServer(recorder) as server:
        remote = HttpEmbedder(
            server.url, model=embedder.model_id, dimension=embedder.dimension, batch_size=10
        )
        vectors = remote.embed(TEXTS)

    # 10 -> 413; 5 -> 413; 3, 2; 5 -> 413; 3, 2
    assert recorder.statuses == [413, 413, 200, 200, 413, 200, 200]
    for got, expected in zip(vectors, local_vectors, strict=True):
        assert cosine(got, expected) > 0.9999
    assert remote.breaker.state == "closed"
    assert remote.breaker.failure_count == 0


def test_a_missing_or_wrong_api_key_is_permanent(embedder: MiniLMOnnxEmbedder) -> None:
    app = create_embedder_app(embedder, api_key="sesame")
    with LoopbackServer(app) as server:
        keyed = HttpEmbedder(
            server.url, model=embedder.model_id, dimension=embedder.dimension, api_key="sesame"
        )
        keyless = HttpEmbedder(
            server.url, model=embedder.model_id, dimension=embedder.dimension, sleep=Recorder()
        )
        assert len(keyed.embed(["hello"])) == 1
        with pytest.raises(PipelineError, match="401") as raised:
            keyless.embed(["hello"])

    assert not raised.value.transient
    assert "Bearer" in raised.value.message


def test_a_wrong_dimension_is_permanent(real_server: str, embedder: MiniLMOnnxEmbedder) -> None:
    remote = HttpEmbedder(real_server, model=embedder.model_id, dimension=128)

    with pytest.raises(PipelineError, match="384 dimensions, expected 128") as raised:
        remote.embed(["hello"])

    assert not raised.value.transient


def test_a_model_the_server_does_not_serve_is_permanent(real_server: str) -> None:
    remote = HttpEmbedder(real_server, model="text-embedding-3-small", dimension=384)

    with pytest.raises(PipelineError, match="404") as raised:
        remote.embed(["hello"])

    assert not raised.value.transient
    assert "text-embedding-3-small" in raised.value.message


# -- fault injection with the fake ------------------------------------------------------


def test_429_with_retry_after_seconds_waits_that_long_then_succeeds(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    fake = FlakyEmbeddingServerFake(Reply(429, headers={"Retry-After": "7"}))
    remote = fake_embedder(serve(fake), sleep)

    vectors = remote.embed(["alpha", "beta", "gamma"])

    assert sleep.waits == [7.0]
    assert fake.requests == [["alpha", "beta", "gamma"]] * 2
    assert_vectors(vectors, [unit(fake_vector(t)) for t in ("alpha", "beta", "gamma")])
    assert fake.bodies[0] == {"model": FAKE_MODEL, "input": ["alpha", "beta", "gamma"]}
    assert remote.breaker.failure_count == 0


def test_503_with_an_http_date_retry_after(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    when = format_datetime(T0 + timedelta(seconds=12), usegmt=True)
    fake = FlakyEmbeddingServerFake(Reply(503, headers={"Retry-After": when}))
    remote = fake_embedder(serve(fake), sleep)

    remote.embed(["alpha"])

    assert sleep.waits == [12.0]


def test_a_long_retry_after_is_capped(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    fake = FlakyEmbeddingServerFake(
        Reply(429, headers={"Retry-After": "3600"}), Reply(429, headers={"Retry-After": "2"})
    )
    remote = fake_embedder(serve(fake), sleep, retry_after_max_seconds=30)

    remote.embed(["alpha"])

    assert sleep.waits == [30.0, 2.0]


def test_5xx_until_retries_are_exhausted_is_transient_with_jittered_backoff(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    fake = FlakyEmbeddingServerFake(default=Reply(500, body={"detail": "model crashed"}))
    remote = fake_embedder(
        serve(fake), sleep, max_retries=5, backoff_base_seconds=0.5, backoff_max_seconds=4
    )

    with pytest.raises(TransientError, match="500: model crashed") as raised:
        remote.embed(["alpha"])

    assert raised.value.transient
    assert "6 attempts" in raised.value.message
    assert len(fake.requests) == 6
    # Full jitter: the n-th wait is uniform in [0, min(max, base * 2**(n-1))].
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0]
    assert len(sleep.waits) == len(ceilings)
    for wait, ceiling in zip(sleep.waits, ceilings, strict=True):
        assert 0 <= wait <= ceiling
    assert remote.breaker.failure_count == 1


def test_a_5xx_then_success_recovers(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    fake = FlakyEmbeddingServerFake(Reply(502), Reply(504), Reply(500))
    remote = fake_embedder(serve(fake), sleep)

    assert len(remote.embed(["alpha"])) == 1

    assert len(fake.requests) == 4
    assert len(sleep.waits) == 3
    assert remote.breaker.failure_count == 0


def test_repeated_failures_open_the_breaker_then_a_probe_closes_it(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    now = [T0]
    breaker = CircuitBreaker(failure_threshold=2, reset_seconds=30, clock=lambda: now[0])
    fake = FlakyEmbeddingServerFake(default=Reply(503))
    remote = fake_embedder(serve(fake), sleep, max_retries=1, breaker=breaker)

    for _ in range(2):
        with pytest.raises(TransientError, match="503"):
            remote.embed(["alpha"])
    assert breaker.state == "open"
    assert len(fake.requests) == 4  # 2 calls x (1 try + 1 retry)

    # Open: refused at once, with the time of the next probe, and the server is not asked.
    now[0] = T0 + timedelta(seconds=10)
    with pytest.raises(DownstreamUnavailable) as raised:
        remote.embed(["alpha", "beta"])
    assert raised.value.retry_at == T0 + timedelta(seconds=30)
    assert raised.value.transient
    assert len(fake.requests) == 4

    # Reset time passed: one probe goes through; the server is back, so it closes.
    now[0] = T0 + timedelta(seconds=30)
    fake.default = Reply()
    assert breaker.state == "half-open"
    assert_vectors(
        remote.embed(["alpha", "beta"]), [unit(fake_vector("alpha")), unit(fake_vector("beta"))]
    )
    assert breaker.state == "closed"
    assert len(fake.requests) == 5


def test_a_failed_probe_opens_the_breaker_again(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    now = [T0]
    breaker = CircuitBreaker(failure_threshold=1, reset_seconds=30, clock=lambda: now[0])
    fake = FlakyEmbeddingServerFake(default=Reply(500))
    remote = fake_embedder(serve(fake), sleep, max_retries=0, breaker=breaker)
    with pytest.raises(TransientError):
        remote.embed(["alpha"])

    now[0] = T0 + timedelta(seconds=31)
    with pytest.raises(TransientError):
        remote.embed(["alpha"])  # the probe

    assert breaker.state == "open"
    assert breaker.next_probe_at == T0 + timedelta(seconds=61)
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": {"message": "input is not valid"}}, "input is not valid"),  # OpenAI
        (401, {"error": {"message": "Incorrect API key"}}, "Incorrect API key"),
        (404, {"error": "model 'nope' not found"}, "model 'nope' not found"),  # Ollama, TEI
        (422, {"type": "invalid-request", "detail": "input: bad"}, "input: bad"),  # problem
        (400, "plain text reason", "plain text reason"),
    ],
    ids=["400-openai", "401", "404-ollama", "422-problem", "400-text"],
)
def test_a_client_error_is_permanent_and_not_retried(
    serve: Callable[[FlakyEmbeddingServerFake], str],
    sleep: Recorder,
    status: int,
    body: object,
    message: str,
) -> None:
    fake = FlakyEmbeddingServerFake(default=Reply(status, body=body))
    remote = fake_embedder(serve(fake), sleep)

    with pytest.raises(PipelineError, match=str(status)) as raised:
        remote.embed(["alpha"])

    assert not raised.value.transient
    assert message in raised.value.message
    assert len(fake.requests) == 1
    assert sleep.waits == []
    assert remote.breaker.state == "closed"
    assert remote.breaker.failure_count == 0


def test_a_single_text_that_still_gets_413_is_permanent(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    fake = FlakyEmbeddingServerFake(too_large=lambda text: text == "HUGE")
    remote = fake_embedder(serve(fake), sleep)

    with pytest.raises(PipelineError, match="413") as raised:
        remote.embed(["a", "HUGE", "c", "d"])

    assert not raised.value.transient
    assert fake.requests == [["a", "HUGE", "c", "d"], ["a", "HUGE"], ["a"], ["HUGE"]]
    assert sleep.waits == []
    assert remote.breaker.failure_count == 0


def test_a_timeout_is_transient(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    fake = FlakyEmbeddingServerFake(default=Reply(delay=1.0))
    remote = fake_embedder(serve(fake), sleep, timeout_seconds=0.05, max_retries=1)

    with pytest.raises(TransientError, match="timed out") as raised:
        remote.embed(["alpha"])

    assert raised.value.transient
    assert len(sleep.waits) == 1
    assert remote.breaker.failure_count == 1


def test_a_refused_connection_is_transient(sleep: Recorder) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
        remote = fake_embedder(f"http://127.0.0.1:{port}", sleep, max_retries=2)

        with pytest.raises(TransientError, match="cannot reach"):
            remote.embed(["alpha"])

    assert len(sleep.waits) == 2


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        {"object": "list"},
        {"data": [{"index": 0, "embedding": [1.0] * FAKE_DIMENSION}]},
        {"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": [1.0]}]},
        {
            "data": [
                {"index": 0, "embedding": [1.0] * FAKE_DIMENSION},
                {"index": 0, "embedding": [1.0] * FAKE_DIMENSION},
            ]
        },
    ],
    ids=["text", "no-data", "too-few", "base64", "duplicate-index"],
)
def test_an_invalid_answer_is_permanent(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder, body: object
) -> None:
    fake = FlakyEmbeddingServerFake(default=Reply(200, body=body))
    remote = fake_embedder(serve(fake), sleep)

    with pytest.raises(PipelineError, match="invalid embedding list") as raised:
        remote.embed(["alpha", "beta"])

    assert not raised.value.transient
    assert len(fake.requests) == 1


def test_batches_are_cut_at_batch_size(
    serve: Callable[[FlakyEmbeddingServerFake], str], sleep: Recorder
) -> None:
    fake = FlakyEmbeddingServerFake()
    remote = fake_embedder(serve(fake), sleep, batch_size=2)
    texts = ["a", "b", "c", "d", "e"]

    vectors = remote.embed(texts)

    assert fake.requests == [["a", "b"], ["c", "d"], ["e"]]
    assert_vectors(vectors, [unit(fake_vector(t)) for t in texts])
    with pytest.raises(TypeError):
        remote.embed("one string")


# -- pure helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://h:8001", "http://h:8001/v1/embeddings"),
        ("http://h:8001/", "http://h:8001/v1/embeddings"),
        ("http://h:8001/v1", "http://h:8001/v1/embeddings"),
        ("http://h:8001/v1/", "http://h:8001/v1/embeddings"),
        ("https://api.openai.com/v1/embeddings", "https://api.openai.com/v1/embeddings"),
        ("http://h/ollama", "http://h/ollama/v1/embeddings"),
    ],
)
def test_embeddings_endpoint(url: str, endpoint: str) -> None:
    assert embeddings_endpoint(url) == endpoint


@pytest.mark.parametrize("url", ["ftp://h/x", "h:8001", "/v1/embeddings"])
def test_embeddings_endpoint_refuses_non_http(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        embeddings_endpoint(url)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        (format_datetime(T0 + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(T0 - timedelta(seconds=90), usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=T0) == seconds
