"""`spine bench http`: an open loop that does not hide queueing, its numbers, and one real
run against `spine serve`."""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from spine.bench import http as bench
from spine.bench.stats import percentile
from spine.cli import app

SERVICE_SECONDS = 0.05


class SlowServerFault(HTTPServer):
    """A server that answers one request at a time, each after 50 ms: a queue in a box."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(SERVICE_SECONDS)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), self.Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def slow_server() -> Iterator[SlowServerFault]:
    server = SlowServerFault()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def quarter_medians(values: list[float]) -> tuple[float, float]:
    quarter = len(values) // 4
    return statistics.median(values[:quarter]), statistics.median(values[-quarter:])


def test_latency_from_intended_send_time_shows_the_queue_a_closed_loop_hides(
    slow_server: SlowServerFault,
) -> None:
    offsets = bench.schedule(40, 2)
    assert offsets == [i / 40 for i in range(80)]

    with httpx.Client(base_url=slow_server.url, timeout=30) as client:
        samples = bench.run_open_loop(lambda _i: client.get("/").status_code, offsets, senders=1)

    assert [s.index for s in samples] == list(range(80))
    assert [s.intended for s in samples] == offsets
    assert all(s.ok for s in samples)
    # One sender and 50 ms a request cannot keep 40/s: each request waits behind the ones
    # before it, and that wait is in the latency measured from the intended send time...
    first, last = quarter_medians([s.latency for s in samples])
    assert last > 3 * first
    # ...whereas measured from the actual send each request looks as fast as the first.
    service_first, service_last = quarter_medians([s.service for s in samples])
    assert service_last < last / 3
    assert service_last < 3 * max(service_first, SERVICE_SECONDS)


def test_an_exception_counts_as_an_error_with_its_latency() -> None:
    def send(index: int) -> int:
        if index == 1:
            raise httpx.ConnectError("refused")
        return 500 if index == 2 else 200

    samples = bench.run_open_loop(send, [0.0, 0.0, 0.0], senders=2)
    result = bench.summarize(3, 1, samples)

    assert (result.sent, result.ok, result.errors) == (3, 1, 2)
    assert result.statuses == {"200": 1, "500": 1, "error": 1}
    assert all(s.latency >= 0 for s in samples)


def test_poisson_schedule_is_seeded_and_keeps_the_mean_rate() -> None:
    arrivals = bench.schedule(50, 20, poisson=True, seed=7)

    assert arrivals == bench.schedule(50, 20, poisson=True, seed=7)
    assert len(arrivals) == 1000
    assert arrivals == sorted(arrivals)
    assert 15 < arrivals[-1] < 25


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100

    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 100) == 100
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def sample(index: int, latency: float, status: int | None = 200) -> bench.Sample:
    intended = index * 0.1
    return bench.Sample(index, intended, intended, intended + latency, status)


def test_summary_reports_latency_in_ms_from_the_intended_time() -> None:
    samples = [sample(i, (i + 1) / 100) for i in range(100)]  # 10 ms .. 1000 ms

    result = bench.summarize(10, 10, samples)

    assert (result.sent, result.ok, result.errors) == (100, 100, 0)
    assert result.p50_ms == pytest.approx(505.0)
    assert result.p95_ms == pytest.approx(950.5)
    assert result.p99_ms == pytest.approx(990.1)
    assert result.max_ms == pytest.approx(1000.0)
    assert result.achieved_rate == pytest.approx(100 / (9.9 + 1.0), abs=0.01)


def rate_result(rate: float, p95_ms: float, errors: int = 0) -> bench.RateResult:
    return bench.RateResult(
        rate=rate,
        duration_seconds=10,
        sent=1000,
        ok=1000 - errors,
        errors=errors,
        achieved_rate=rate,
        p50_ms=p95_ms / 2,
        p95_ms=p95_ms,
        p99_ms=p95_ms * 2,
        max_ms=p95_ms * 3,
        statuses={"200": 1000 - errors},
    )


def test_highest_rate_within_slo_needs_both_the_p95_and_the_error_rate() -> None:
    results = [
        rate_result(5, 40),
        rate_result(10, 250),  # exactly at the SLO: within
        rate_result(20, 120, errors=11),  # fast but 1.1% errors
        rate_result(40, 900),
    ]

    assert bench.highest_rate_within_slo(results, 0.25) == 10
    assert bench.highest_rate_within_slo(results, 0.25, max_error_rate=0.02) == 20
    assert bench.highest_rate_within_slo(results[3:], 0.25) is None
    assert bench.highest_rate_within_slo([], 0.25) is None


def test_a_best_rate_at_the_top_of_the_ladder_is_reported_as_a_lower_bound() -> None:
    ladder = [rate_result(5, 40), rate_result(10, 90)]

    assert bench.describe_best(bench.ScenarioResult(ladder, 10)).startswith("10/s, the highest")
    assert bench.describe_best(bench.ScenarioResult(ladder, 5)) == "5/s"
    assert bench.describe_best(bench.ScenarioResult(ladder, None)) == "none"


def test_uncached_queries_never_repeat() -> None:
    size = len(bench.VOCABULARY)
    queries = [bench.unique_query(n) for n in range(size * size + 5)]

    assert len(set(queries)) == len(queries)
    assert len(set(bench.VOCABULARY)) == size


@pytest.mark.slow
def test_cli_run_against_a_real_server_writes_the_results(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "http",
            "--documents",
            "20",
            "--rates",
            "2,4",
            "--duration",
            "2",
            "--scenarios",
            "search-cached",
            "--out",
            str(tmp_path),
        ],
    )

    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "http.json").read_text())
    assert written.keys() >= {
        "target",
        "documents",
        "duration_seconds",
        "slo_search_latency_seconds",
        "scenarios",
        "machine",
    }
    cached = written["scenarios"]["search-cached"]
    assert [r["rate"] for r in cached["rates"]] == [2, 4]
    assert cached["rates"][0].keys() >= {"sent", "ok", "errors", "p50_ms", "p95_ms", "p99_ms"}
    assert sum(r["sent"] for r in cached["rates"]) == 12
    assert "highest_rate_within_slo" in cached
    assert "| rate/s |" in (tmp_path / "http.md").read_text()


def test_the_ladder_stops_after_the_first_rate_that_misses_its_objective(
    slow_server: SlowServerFault,
) -> None:
    """One request at a time, 50 ms each: 5/s keeps up, 40/s queues past the objective,
    and 80/s is never sent."""
    with httpx.Client(base_url=slow_server.url) as client:

        def send(_index: int) -> int:
            return client.get("/").status_code

        stopped = bench.climb(send, [80, 5, 40], duration=1, objective=0.2, senders=8)
        every = bench.climb(
            send, [5, 40, 80], duration=1, objective=0.2, senders=8, keep_going=True
        )

    assert [r.rate for r in stopped.rates] == [5, 40]
    assert stopped.highest_rate_within_slo == 5
    assert [r.rate for r in every.rates] == [5, 40, 80]
    assert every.highest_rate_within_slo == 5


def test_uploads_are_held_to_the_acknowledgement_objective_not_the_search_slo() -> None:
    assert bench.objective_seconds(bench.SEARCH_UNCACHED, 0.25) == 0.25
    assert bench.objective_seconds(bench.UPLOAD, 0.25) == bench.UPLOAD_ACK_SECONDS


class PortEchoServer(HTTPServer):
    """Answers each request with its own port: which server got it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = str(self.server.server_address[1]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), self.Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_a_client_of_several_servers_takes_them_in_turn() -> None:
    """What the scale-out topology's load goes through: no API process gets it all."""
    servers = [PortEchoServer(), PortEchoServer()]
    try:
        with bench.client_for([s.url for s in servers], "token", senders=2) as client:
            answered = [client.get("/", params={"n": n}).text for n in range(6)]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()

    assert answered == [str(s.server_address[1]) for s in servers] * 3
