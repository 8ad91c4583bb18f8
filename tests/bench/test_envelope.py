"""`spine envelope`: the notebook's back-of-envelope, fed by the bench results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from spine.bench import envelope as bench
from spine.cli import app

runner = CliRunner(env={"COLUMNS": "200"})

WORKLOAD = bench.Workload(
    documents_per_day=1000,
    average_document_bytes=2000,
    retention_days=60,
    replication=3,
    search_qps=10,
    peak_factor=2,
    search_response_bytes=1000,
)
MEASURED = bench.MeasuredCosts(
    worker_documents_per_second=bench.Measure(0.01, "test"),
    api_searches_per_second=bench.Measure(7, "test"),
    bytes_per_document=bench.Measure(500, "test"),
)
PRICES = bench.Prices(
    currency="USD",
    blob_storage_gb_month=0.02,
    database_storage_gb_month=0.1,
    ingress_gb=0.0,
    egress_gb=0.05,
    worker_process_hour=0.1,
    api_process_hour=0.2,
)
WORKLOAD_ARGS = [
    "envelope",
    "--documents-per-day", "10000",
    "--average-size", "3KB",
    "--retention-days", "365",
    "--replication", "3",
    "--search-qps", "20",
    "--peak-factor", "3",
]  # fmt: skip


def quality_results(folder: Path, **changes: Any) -> Path:
    """A results file shaped like bench/results/quality-scifact-test.json."""
    data: dict[str, Any] = {
        "dataset": "scifact",
        "split": "test",
        "documents": 1000,
        "chunks": 1500,
        "ingest_seconds": 50.0,
        "uploaded": 1000,
        "ranking": {"k": 100},
        "modes": {"hybrid": {"latency_ms_median": 25.0, "latency_ms_p95": 40.0}},
        "machine": {"cpus": "2"},
    }
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "quality-scifact-test.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return folder


def envelope(*args: str) -> Result:
    return runner.invoke(app, [*WORKLOAD_ARGS, *args])


@pytest.mark.parametrize(
    ("text", "size"),
    [("2KB", 2000), ("4MiB", 4 * 1024**2), ("1500", 1500), ("1.5 mb", 1_500_000), ("7B", 7)],
)
def test_sizes_take_decimal_and_binary_units_or_plain_bytes(text: str, size: int) -> None:
    assert bench.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "2XB", "-3KB", "0", "KB"])
def test_a_size_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(bench.EnvelopeError):
        bench.parse_size(text)


def test_storage_is_daily_documents_times_size_times_days_times_replication_plus_database() -> None:
    result = bench.envelope(WORKLOAD, MEASURED, PRICES)

    held = {point.label: point for point in result.storage}
    month = held["1 month"]
    assert month.documents == 30_000
    assert month.blob_bytes == 30_000 * 2000 * 3
    assert month.database_bytes == 30_000 * 500
    # Nothing older than the retention is held: a year holds 60 days.
    for label in ("1 year", "retention (60 d)"):
        assert held[label].total_bytes == 60_000 * 2000 * 3 + 60_000 * 500


def test_processes_are_the_ceiling_of_the_peak_over_one_process_throughput() -> None:
    result = bench.envelope(WORKLOAD, MEASURED, PRICES)

    assert result.processes.peak_documents_per_second == pytest.approx(1000 / 86_400 * 2)
    assert result.processes.workers == 3  # 0.0231 docs/s over 0.01
    assert result.processes.peak_searches_per_second == 20
    assert result.processes.apis == 3  # 20 searches/s over 7
    assert result.upload.average_bytes_per_second == pytest.approx(1000 * 2000 / 86_400)
    assert result.upload.peak_mbit_per_second == pytest.approx(1000 * 2000 / 86_400 * 2 * 8 / 1e6)


def test_cost_lines_come_biggest_first_and_the_top_two_are_named() -> None:
    result = bench.envelope(WORKLOAD, MEASURED, PRICES)

    monthly = {line.name: line.monthly for line in result.costs}
    assert monthly["compute: API"] == pytest.approx(3 * 730 * 0.2)
    assert monthly["compute: workers"] == pytest.approx(3 * 730 * 0.1)
    assert monthly["transfer"] == pytest.approx(10 * 86_400 * 30 * 1000 / 1e9 * 0.05)
    assert monthly["storage"] == pytest.approx(0.36 * 0.02 + 0.03 * 0.1)
    assert [line.name for line in result.costs] == [
        "compute: API",
        "compute: workers",
        "transfer",
        "storage",
    ]
    assert result.top_two == ["compute: API", "compute: workers"]


def test_measured_costs_are_read_from_the_quality_results_with_their_source(
    tmp_path: Path,
) -> None:
    measured = bench.measured_costs(quality_results(tmp_path), WORKLOAD)

    assert measured.worker_documents_per_second.value == 1000 / 50 / 2
    assert "quality-scifact-test.json" in measured.worker_documents_per_second.source
    assert "assumed" in measured.worker_documents_per_second.source
    assert measured.api_searches_per_second.value == 1000 / 25
    assert "closed loop" in measured.api_searches_per_second.source
    assert measured.bytes_per_document.value == 2 * 2000 + 1.5 * 1536
    assert measured.bytes_per_document.source.startswith("estimate")


def ingest_results(folder: Path) -> None:
    """ingest.json as `spine bench ingest` writes it, at two sizes: 1 KB pages."""
    sizes = [
        {"documents": n, "text_bytes": n * 1000, "database_bytes": 200_000 + n * 6000,
         "empty_database_bytes": 200_000, "docs_per_second_per_worker": {"median": rate}}
        for n, rate in ((100, 9.0), (1000, 4.0))
    ]  # fmt: skip
    (folder / "ingest.json").write_text(json.dumps({"sizes": sizes}))


def http_results(folder: Path, best: float | None) -> None:
    scenario = {"rates": [], "highest_rate_within_slo": best}
    data = {"target": "spine serve", "scenarios": {"search-uncached": scenario}}
    (folder / "http.json").write_text(json.dumps(data))


def test_ingest_and_http_results_take_over_from_the_quality_estimates(tmp_path: Path) -> None:
    quality_results(tmp_path)
    ingest_results(tmp_path)
    http_results(tmp_path, best=30)

    measured = bench.measured_costs(tmp_path, WORKLOAD)

    # The largest corpus, scaled from its 1000 B pages to the workload's 2000 B.
    assert measured.worker_documents_per_second.value == 4.0 * 1000 / 2000
    assert measured.worker_documents_per_second.source.startswith("ingest.json")
    assert measured.bytes_per_document.value == 6000 * 2000 / 1000
    assert measured.bytes_per_document.source.startswith("ingest.json")
    assert measured.api_searches_per_second.value == 30
    assert "http.json" in measured.api_searches_per_second.source


def test_no_http_rate_within_the_slo_falls_back_to_the_quality_estimate(
    tmp_path: Path,
) -> None:
    quality_results(tmp_path)
    ingest_results(tmp_path)
    http_results(tmp_path, best=None)

    measured = bench.measured_costs(tmp_path, WORKLOAD)

    assert measured.api_searches_per_second.value == 1000 / 25
    assert measured.worker_documents_per_second.source.startswith("ingest.json")


def test_an_ingest_file_without_its_fields_names_the_bench_to_rerun(tmp_path: Path) -> None:
    (tmp_path / "ingest.json").write_text(json.dumps({"sizes": [{"documents": 5}]}))

    with pytest.raises(bench.EnvelopeError, match=r"ingest.json lacks .*spine bench ingest"):
        bench.measured_costs(tmp_path, WORKLOAD)


def test_a_worker_count_in_the_results_file_is_used(tmp_path: Path) -> None:
    measured = bench.measured_costs(quality_results(tmp_path, workers=4), WORKLOAD)

    assert measured.worker_documents_per_second.value == 1000 / 50 / 4


def test_overrides_take_precedence_over_the_results(tmp_path: Path) -> None:
    measured = bench.measured_costs(
        quality_results(tmp_path),
        WORKLOAD,
        worker_documents_per_second=3,
        api_searches_per_second=11,
        bytes_per_document=9000,
    )

    assert measured == bench.MeasuredCosts(
        bench.Measure(3, "--worker-docs-per-second"),
        bench.Measure(11, "--api-searches-per-second"),
        bench.Measure(9000, "--bytes-per-document"),
    )


def test_without_results_the_error_names_the_bench_to_run(tmp_path: Path) -> None:
    result = envelope("--results", str(tmp_path / "none"))

    assert result.exit_code == 1
    assert "spine bench quality" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_with_every_cost_overridden_no_results_are_needed(tmp_path: Path) -> None:
    result = envelope(
        "--results", str(tmp_path / "none"),
        "--worker-docs-per-second", "2",
        "--api-searches-per-second", "7",
        "--bytes-per-document", "8000",
        "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["processes"] == {
        "peak_documents_per_second": pytest.approx(10_000 / 86_400 * 3),
        "workers": 1,
        "peak_searches_per_second": 60,
        "apis": 9,
    }


def test_json_holds_the_numbers_the_table_shows(tmp_path: Path) -> None:
    results = quality_results(tmp_path / "results")
    table = envelope("--results", str(results))
    as_json = envelope("--results", str(results), "--json")

    assert table.exit_code == 0, table.output
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert body["top_two"] == [line["name"] for line in body["costs"][:2]]
    for line in body["costs"]:
        assert f"{line['monthly']:,.2f}" in table.output
    for point in body["storage"]:
        assert f"{point['documents']:,.0f}" in table.output
    assert f"{body['processes']['workers']}" in table.output
    assert f"{body['processes']['peak_searches_per_second']:,.3f}" in table.output
    assert f"{body['upload']['peak_mbit_per_second']:,.3f} Mbit/s" in table.output
    assert "top 2" in table.output


def test_the_shipped_prices_load_and_say_they_are_illustrative() -> None:
    prices = bench.load_prices()

    assert prices.currency == "USD"
    assert "ILLUSTRATIVE" in prices.note


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "prices"),
        ('{"egress_gb": 0.1}', "missing"),
        ('{"storage_gb": 1}', "unknown keys"),
    ],
)
def test_a_bad_prices_file_gives_one_line(tmp_path: Path, text: str, complaint: str) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(text, encoding="utf-8")

    result = envelope("--results", str(quality_results(tmp_path)), "--prices", str(prices))

    assert result.exit_code == 1
    assert complaint in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_negative_price_is_refused(tmp_path: Path) -> None:
    raw = json.loads(bench.default_prices_text())
    raw["egress_gb"] = -1
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(raw), encoding="utf-8")

    with pytest.raises(bench.EnvelopeError, match="egress_gb"):
        bench.load_prices(prices)


def test_a_bad_size_on_the_command_line_gives_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [*WORKLOAD_ARGS[:4], "3 parsecs", *WORKLOAD_ARGS[5:], "--results", str(tmp_path)],
    )

    assert result.exit_code == 1
    assert "3 parsecs" in result.output
