"""Open-loop HTTP load against ``spine serve``: fixed arrival rates, and every latency
measured from the moment the request was *meant* to go out.

A closed loop (send, wait, send) slows down with the server and so never sees the queue
it builds: that is coordinated omission. Here request ``i`` of a rate ``R`` is due at
``i / R`` whatever happened before it; a sender that is busy sends it late, and the
lateness counts in its latency.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import httpx

from spine.bench.machine import machine
from spine.bench.quality import write_results
from spine.bench.stats import percentile
from spine.devservices.readiness import wait_for_http
from spine.domain.auth import Role
from spine.settings import Settings

SEARCH_UNCACHED = "search-uncached"
SEARCH_CACHED = "search-cached"
UPLOAD = "upload"
#: Uploads last: each one changes the tenant's documents, which empties its search cache.
SCENARIOS = (SEARCH_UNCACHED, SEARCH_CACHED, UPLOAD)
SEARCH_SCENARIOS = (SEARCH_UNCACHED, SEARCH_CACHED)
#: Above this share of failed requests a rate is not "within the SLO", whatever its p95.
MAX_ERROR_RATE = 0.01
REQUEST_TIMEOUT_SECONDS = 30.0
#: Uploads have no latency SLO: an upload is acknowledged once its bytes and its job are
#: stored, and a second is where a person waiting on that notices.
UPLOAD_ACK_SECONDS = 1.0
TENANT = "bench-http"
#: High enough that the server's own rate limits never answer 429 to the bench.
UNLIMITED = "1000000/s burst 1000000"
#: The Redis the scale-out topology shares; each run takes a namespace of its own in it.
REDIS_URL = "redis://127.0.0.1:6379/0"

VOCABULARY = (
    "account",
    "audit",
    "balance",
    "budget",
    "cargo",
    "carrier",
    "claim",
    "client",
    "contract",
    "customer",
    "delivery",
    "deposit",
    "engine",
    "estimate",
    "export",
    "factory",
    "freight",
    "garden",
    "harbor",
    "insurance",
    "inventory",
    "invoice",
    "journal",
    "kernel",
    "ledger",
    "license",
    "machine",
    "margin",
    "market",
    "meeting",
    "network",
    "office",
    "order",
    "package",
    "parcel",
    "patent",
    "payment",
    "pension",
    "permit",
    "pipeline",
    "policy",
    "portfolio",
    "premium",
    "printer",
    "project",
    "quarter",
    "railway",
    "receipt",
    "refund",
    "region",
    "rental",
    "report",
    "revenue",
    "river",
    "salary",
    "sample",
    "schedule",
    "season",
    "sensor",
    "server",
    "shipment",
    "signal",
    "solar",
    "station",
    "storage",
    "supplier",
    "survey",
    "tariff",
    "teacher",
    "tenant",
    "theater",
    "ticket",
    "timber",
    "traffic",
    "transfer",
    "turbine",
    "vaccine",
    "valley",
    "vendor",
    "vessel",
    "village",
    "voltage",
    "warehouse",
    "weather",
    "window",
    "winter",
    "yield",
    "analyst",
    "harvest",
    "reactor",
    "glacier",
    "lantern",
    "compass",
    "orchard",
    "meadow",
    "canyon",
    "beacon",
)
CACHED_QUERY = "quarterly revenue forecast for the warehouse"


# -- the open loop ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One request, its times in seconds from the start of its rate's run."""

    index: int
    intended: float
    sent: float
    done: float
    #: None when the request raised (timeout, refused connection) instead of answering.
    status: int | None

    @property
    def latency(self) -> float:
        """From the intended send time: what a user arriving on schedule waited."""
        return self.done - self.intended

    @property
    def service(self) -> float:
        """From the actual send time: what a closed-loop benchmark would report."""
        return self.done - self.sent

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def schedule(rate: float, duration: float, *, poisson: bool = False, seed: int = 0) -> list[float]:
    """Intended send offsets: ``i / rate`` for ``rate * duration`` requests, or Poisson
    arrivals at the same mean rate (exponential gaps from a seeded RNG)."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    count = max(1, round(rate * duration))
    if not poisson:
        return [i / rate for i in range(count)]
    rng = random.Random(seed)  # noqa: S311 -- arrivals, not a secret
    offsets, at = [], 0.0
    for _ in range(count):
        offsets.append(at)
        at += rng.expovariate(rate)
    return offsets


def run_open_loop(
    send: Callable[[int], int],
    offsets: Sequence[float],
    *,
    senders: int,
    on_done: Callable[[Sample], None] | None = None,
) -> list[Sample]:
    """Call ``send(i)`` at ``offsets[i]`` or, when every sender is busy, as soon as one is
    free; ``send`` returns the HTTP status, and an exception counts as a failed request."""
    lock = threading.Lock()
    samples: list[Sample | None] = [None] * len(offsets)
    next_index = 0
    start = time.perf_counter()

    def sender() -> None:
        nonlocal next_index
        while True:
            with lock:
                index = next_index
                next_index += 1
            if index >= len(offsets):
                return
            delay = start + offsets[index] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter() - start
            try:
                status: int | None = send(index)
            except Exception:  # any failure is a failed request, with its time
                status = None
            sample = Sample(index, offsets[index], sent, time.perf_counter() - start, status)
            samples[index] = sample
            if on_done is not None:
                on_done(sample)

    threads = [
        threading.Thread(target=sender, name=f"bench-sender-{n}", daemon=True)
        for n in range(max(1, min(senders, len(offsets))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [sample for sample in samples if sample is not None]


# -- the numbers ------------------------------------------------------------------------


@dataclass(frozen=True)
class RateResult:
    rate: float
    duration_seconds: float
    sent: int
    ok: int
    errors: int
    #: Completed requests per second, over the arrival window or, when the last answer
    #: came later, up to it: below ``rate`` when the server fell behind.
    achieved_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    #: Answers by status code; "error" for requests that raised.
    statuses: dict[str, int]

    @property
    def error_rate(self) -> float:
        return self.errors / self.sent if self.sent else 0.0


def summarize(rate: float, duration: float, samples: Sequence[Sample]) -> RateResult:
    latencies = [sample.latency for sample in samples]
    ok = sum(sample.ok for sample in samples)
    span = max([duration, *(sample.done for sample in samples)])
    statuses = Counter("error" if s.status is None else str(s.status) for s in samples)
    return RateResult(
        rate=rate,
        duration_seconds=duration,
        sent=len(samples),
        ok=ok,
        errors=len(samples) - ok,
        achieved_rate=round(len(samples) / span, 2) if span > 0 else 0.0,
        p50_ms=round(percentile(latencies, 50) * 1000, 1),
        p95_ms=round(percentile(latencies, 95) * 1000, 1),
        p99_ms=round(percentile(latencies, 99) * 1000, 1),
        max_ms=round(max(latencies, default=math.nan) * 1000, 1),
        statuses=dict(sorted(statuses.items())),
    )


def within_slo(result: RateResult, slo_seconds: float, max_error_rate: float) -> bool:
    return (
        result.sent > 0
        and result.p95_ms <= slo_seconds * 1000
        and result.error_rate <= max_error_rate
    )


def describe_best(scenario: ScenarioResult) -> str:
    """The highest rate within the SLO, said to be a lower bound when it is the top of the
    ladder (the server may well take more)."""
    best = scenario.highest_rate_within_slo
    if best is None:
        return "none"
    if best == max(r.rate for r in scenario.rates):
        return f"{best:g}/s, the highest rate tried: try higher --rates"
    return f"{best:g}/s"


def highest_rate_within_slo(
    results: Sequence[RateResult], slo_seconds: float, max_error_rate: float = MAX_ERROR_RATE
) -> float | None:
    """The highest rate whose p95 latency is at most the SLO and whose error rate is at
    most ``max_error_rate``; None when no rate is."""
    passing = [r.rate for r in results if within_slo(r, slo_seconds, max_error_rate)]
    return max(passing, default=None)


def objective_seconds(scenario: str, search_slo_seconds: float) -> float:
    """The p95 a rate must keep to pass: the search SLO for searches; for uploads, which
    have no latency SLO of their own, ``UPLOAD_ACK_SECONDS``."""
    return search_slo_seconds if scenario in SEARCH_SCENARIOS else UPLOAD_ACK_SECONDS


def climb(
    send: Callable[[int], int],
    ladder: Sequence[float],
    *,
    duration: float,
    objective: float,
    senders: int,
    poisson: bool = False,
    seed: int = 0,
    keep_going: bool = False,
    on_rate: Callable[[float, int], Callable[[Sample], None] | None] | None = None,
) -> ScenarioResult:
    """Run the rates of ``ladder`` in increasing order and stop after the first that
    misses ``objective`` (p95 seconds) or the error rate, unless ``keep_going``: past the
    knee every rate only queues more, and a saturated server would spend minutes on
    rates that can only fail. ``on_rate(rate, requests)`` may return a per-request hook."""
    measured: list[RateResult] = []
    for rate in sorted(ladder):
        offsets = schedule(rate, duration, poisson=poisson, seed=seed)
        on_done = on_rate(rate, len(offsets)) if on_rate is not None else None
        samples = run_open_loop(send, offsets, senders=senders, on_done=on_done)
        measured.append(summarize(rate, duration, samples))
        if not keep_going and not within_slo(measured[-1], objective, MAX_ERROR_RATE):
            break
    return ScenarioResult(measured, highest_rate_within_slo(measured, objective))


# -- what the requests ask --------------------------------------------------------------


def document_text(rng: random.Random, label: str) -> str:
    """A few sentences from the fixed vocabulary, and a label that makes it unique."""
    sentences = [
        " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(6, 12))).capitalize() + "."
        for _ in range(rng.randint(3, 5))
    ]
    return f"Synthetic record {label}. " + " ".join(sentences)


def unique_query(n: int) -> str:
    """Query ``n``: three vocabulary words read as the digits of ``n``, so no two of the
    first ``len(VOCABULARY) ** 3`` repeat and every one misses the result cache."""
    size = len(VOCABULARY)
    return " ".join(VOCABULARY[(n // size**power) % size] for power in (2, 1, 0))


def upload(client: httpx.Client, name: str, text: str) -> httpx.Response:
    return client.post("/v1/documents", files={"file": (name, text.encode(), "text/plain")})


class Scenario:
    """``send(i)`` for one scenario; the uncached queries and the uploads never repeat
    across the rates of one run."""

    def __init__(self, name: str, client: httpx.Client, *, seed: int) -> None:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        self.name = name
        self._client = client
        self._rng = random.Random(seed)  # noqa: S311 -- test data, not a secret
        self._lock = threading.Lock()
        self._base = self._rng.randrange(len(VOCABULARY) ** 3 // 2)
        self._issued = 0
        self._run = secrets.token_hex(4)

    def _next(self) -> int:
        with self._lock:
            self._issued += 1
            return self._issued

    def send(self, _index: int) -> int:
        if self.name == SEARCH_CACHED:
            return self._client.get("/v1/search", params={"q": CACHED_QUERY}).status_code
        n = self._next()
        if self.name == SEARCH_UNCACHED:
            query = unique_query(self._base + n)
            return self._client.get("/v1/search", params={"q": query}).status_code
        with self._lock:
            text = document_text(self._rng, f"{self._run}-{n}")
        return upload(self._client, f"bench-{self._run}-{n}.txt", text).status_code


# -- the server -------------------------------------------------------------------------


class BenchError(RuntimeError):
    """The server did not start, or the corpus did not get processed."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mint_token(secret: str, settings: Settings, tenant: str = TENANT) -> str:
    from spine.service.tokens import create_token

    return create_token(
        secret,
        tenant_id=tenant,
        role=Role.ADMIN,
        subject="bench-http",
        ttl_seconds=86_400,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        now=datetime.now(UTC),
    )


@contextmanager
def started_server(*, workers: int = 1, ready_timeout: float = 120.0) -> Iterator[tuple[str, str]]:
    """``spine serve`` in a child process on a temporary data folder, with rate limits
    out of the way; yields its URL and an admin token, and stops it at the end."""
    directory = Path(tempfile.mkdtemp(prefix="spine-bench-http-"))
    secret = secrets.token_urlsafe(32)
    env = dict(os.environ) | _unlimited(os.environ) | {"SPINE_JWT_SECRET": secret}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = directory / "serve.log"
    command = ["serve", "--port", str(port), "--workers", str(workers)]
    process = _spawn([*command, "--data-dir", str(directory / "data")], env, log_path)
    try:
        _wait_ready(process, url, log_path, ready_timeout)
        yield url, mint_token(secret, Settings(jwt_secret=secret))
    finally:
        _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def started_cluster(
    *,
    apis: int = 2,
    worker_threads: int = 2,
    redis_url: str = REDIS_URL,
    ready_timeout: float = 180.0,
) -> Iterator[tuple[list[str], str]]:
    """The scale-out topology on this machine: PostgreSQL + pgvector and S3 from
    ``spine local-cluster``, the Redis running here (its own namespace), ``apis`` API
    processes and one worker process with ``worker_threads`` threads. Yields the APIs'
    URLs and an admin token; stops everything at the end."""
    from spine.devservices.cluster import start_local_cluster

    directory = Path(tempfile.mkdtemp(prefix="spine-bench-cluster-"))
    directory.chmod(0o755)  # PostgreSQL runs as its own user, who must reach its folder
    processes: list[subprocess.Popen[bytes]] = []
    try:
        cluster = start_local_cluster(directory / "stores", redis_url=redis_url)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    try:
        env = dict(os.environ) | cluster.environment() | _unlimited(os.environ)
        env["SPINE_REDIS_NAMESPACE"] = f"bench-{secrets.token_hex(4)}"
        migrate = [sys.executable, "-m", "spine", "migrate", "up"]
        done = subprocess.run(migrate, env=env, capture_output=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise BenchError(f"spine migrate up failed: {done.stderr.decode()[-2000:]}")
        urls: list[str] = []
        for index in range(apis):
            port = _free_port()
            urls.append(f"http://127.0.0.1:{port}")
            command = ["serve", "--port", str(port), "--workers", "0"]
            processes.append(_spawn(command, env, directory / f"api-{index}.log"))
        worker = ["worker", "--concurrency", str(worker_threads)]
        processes.append(_spawn(worker, env, directory / "worker.log"))
        for index, url in enumerate(urls):
            _wait_ready(processes[index], url, directory / f"api-{index}.log", ready_timeout)
        secret = env["SPINE_JWT_SECRET"]
        yield urls, mint_token(secret, Settings(jwt_secret=secret))
    finally:
        for process in processes:
            _stop(process)
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _unlimited(environ: Mapping[str, str]) -> dict[str, str]:
    """Rate limits out of the way: the bench measures capacity, not the limiter."""
    return {
        "SPINE_RATE_LIMIT_READER": UNLIMITED,
        "SPINE_RATE_LIMIT_WRITER": UNLIMITED,
        "SPINE_RATE_LIMIT_ADMIN": UNLIMITED,
        "SPINE_LOG_LEVEL": environ.get("SPINE_LOG_LEVEL", "WARNING"),
    }


def _spawn(arguments: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 -- our own interpreter, fixed arguments
            [sys.executable, "-m", "spine", *arguments],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class RoundRobinTransport(httpx.BaseTransport):
    """Sends each request to the next of several servers, as a load balancer in front of
    stateless API processes would; one connection pool per server."""

    def __init__(self, urls: Sequence[str], limits: httpx.Limits) -> None:
        if not urls:
            raise ValueError("no server to send to")
        self._targets = [httpx.URL(url) for url in urls]
        self._transports = [httpx.HTTPTransport(limits=limits) for _ in urls]
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            index = next(self._turn) % len(self._targets)
        target = self._targets[index]
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        return self._transports[index].handle_request(request)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    outcome = wait_for_http(process, f"{url}/readyz", timeout=timeout, interval=0.2)
    if outcome == "exited":
        raise BenchError(f"spine serve exited: {log.read_text()[-2000:]}")
    if outcome == "timeout":
        raise BenchError(f"spine serve not ready after {timeout:.0f} s")


def seed_corpus(
    client: httpx.Client,
    count: int,
    *,
    seed: int,
    timeout: float = 600.0,
    on_uploaded: Callable[[], None] | None = None,
    on_processed: Callable[[int], None] | None = None,
) -> None:
    """Upload ``count`` synthetic documents and wait until every job ends SUCCEEDED."""
    rng = random.Random(seed)  # noqa: S311 -- test data, not a secret
    run = secrets.token_hex(4)
    jobs: list[str] = []
    for n in range(count):
        response = upload(client, f"corpus-{run}-{n}.txt", document_text(rng, f"{run}-{n}"))
        if response.status_code != 202:
            raise BenchError(f"upload answered {response.status_code}: {response.text[:200]}")
        jobs.append(response.json()["job"]["id"])
        if on_uploaded is not None:
            on_uploaded()
    deadline = time.monotonic() + timeout
    pending = jobs
    while pending:
        if time.monotonic() > deadline:
            raise BenchError(f"{len(pending)} corpus jobs still running after {timeout:.0f} s")
        still = []
        for job_id in pending:
            state = client.get(f"/v1/jobs/{job_id}").json().get("state")
            if state == "FAILED":
                raise BenchError(f"corpus job {job_id} FAILED")
            if state != "SUCCEEDED":
                still.append(job_id)
        pending = still
        if on_processed is not None:
            on_processed(len(jobs) - len(pending))
        if pending:
            time.sleep(0.5)


def client_for(urls: str | Sequence[str], token: str, senders: int) -> httpx.Client:
    """A client of one server, or of several taken in turn."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    return httpx.Client(
        base_url=urls[0],
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
        transport=RoundRobinTransport(urls, limits),
    )


# -- the result -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioResult:
    rates: list[RateResult]
    #: The highest rate whose p95 kept the scenario's objective (the search SLO, or
    #: ``UPLOAD_ACK_SECONDS`` for uploads) with at most ``MAX_ERROR_RATE`` errors, or None.
    highest_rate_within_slo: float | None = None


@dataclass(frozen=True)
class HttpBenchResult:
    target: str
    documents: int
    duration_seconds: float
    senders: int
    arrivals: str
    slo_search_latency_seconds: float
    max_error_rate: float
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=lambda: machine("httpx"))


def markdown(result: HttpBenchResult) -> str:
    lines = [
        "# spine bench http",
        "",
        f"Target: {result.target}; {result.documents} documents; {result.duration_seconds:g} s "
        f"per rate; {result.arrivals} arrivals; {result.senders} senders. Latency is from "
        "the intended send time. Search SLO: p95 <= "
        f"{result.slo_search_latency_seconds * 1000:g} ms and <= "
        f"{result.max_error_rate:.0%} errors.",
        "",
    ]
    for name, scenario in result.scenarios.items():
        lines += [f"## {name}", ""]
        objective = objective_seconds(name, result.slo_search_latency_seconds) * 1000
        lines += [
            f"Highest rate with p95 <= {objective:g} ms: {describe_best(scenario)}. The ladder "
            "stops after the first rate that misses it.",
            "",
        ]
        lines += [
            "| rate/s | sent | ok | errors | achieved/s | p50 ms | p95 ms | p99 ms | max ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.rate:g} | {r.sent} | {r.ok} | {r.errors} | {r.achieved_rate:g} | "
            f"{r.p50_ms:g} | {r.p95_ms:g} | {r.p99_ms:g} | {r.max_ms:g} |"
            for r in scenario.rates
        ]
        lines.append("")
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in result.machine.items()), ""]
    return "\n".join(lines)


def chart(result: HttpBenchResult, path: Path) -> Path | None:
    """p50/p95/p99 against the rate, one panel per scenario; None without matplotlib."""
    if find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.scenarios)
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        rates = result.scenarios[name].rates
        xs = [r.rate for r in rates]
        for label in ("p50_ms", "p95_ms", "p99_ms"):
            axis.plot(xs, [getattr(r, label) for r in rates], marker="o", label=label[:3])
        slo_ms = objective_seconds(name, result.slo_search_latency_seconds) * 1000
        axis.axhline(slo_ms, color="grey", linestyle="--", label="objective")
        axis.set_title(name)
        axis.set_xlabel("rate (requests/s)")
        axis.set_ylabel("latency from intended send (ms)")
        axis.set_yscale("log")
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write(result: HttpBenchResult, out_dir: Path, *, stem: str = "http") -> list[Path]:
    """<stem>.json, <stem>.md and, with matplotlib, <stem>.png."""
    return write_results(result, out_dir, stem, markdown(result), lambda path: chart(result, path))
