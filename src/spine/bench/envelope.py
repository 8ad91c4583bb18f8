"""The system-design notebook's back-of-envelope, fed by what `spine bench` measured.

A workload (documents a day, their size, retention, replication, searches a second and the
peak factor) becomes storage over time, upload bandwidth, the processes it needs and the
monthly cost lines under a price table the user edits. The per-process throughputs come
from the committed benchmark results, each with a ``source`` naming the file and field, so
a number in the answer can be traced to the run that produced it; any of them can be
overridden. No I/O here except reading the results and prices files.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

SECONDS_PER_DAY = 86_400
DAYS_PER_MONTH = 30
HOURS_PER_MONTH = 730
#: Decimal, as cloud price lists count them.
GB = 1_000_000_000
#: all-MiniLM-L6-v2: 384 float32 dimensions per chunk.
VECTOR_BYTES_PER_CHUNK = 384 * 4
#: What `spine bench quality --workers` defaults to, for results files from before it was
#: recorded.
DEFAULT_MEASURED_WORKERS = 2
QUALITY_BENCH = "spine bench quality --dataset DIR"
INGEST_BENCH = "spine bench ingest"
HTTP_BENCH = "spine bench http"
INGEST_RESULTS = "ingest.json"
HTTP_RESULTS = "http.json"

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


class EnvelopeError(ValueError):
    """An input, a results file or a prices file cannot be used; the message says why."""


def parse_size(text: str) -> int:
    """``2KB`` (10^3), ``4MiB`` (2^20) or plain bytes, as a positive whole number of bytes."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise EnvelopeError(f"size {text!r}: write bytes, or a number with KB, MB, GB, KiB, MiB")
    size = math.ceil(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise EnvelopeError(f"size {text!r} must be more than 0 bytes")
    return size


@dataclass(frozen=True)
class Workload:
    documents_per_day: float
    average_document_bytes: int
    retention_days: int
    replication: int
    search_qps: float
    peak_factor: float
    #: Egress per search: an assumption, no bench measures it yet.
    search_response_bytes: int = 10_000

    def __post_init__(self) -> None:
        if self.documents_per_day < 0 or self.search_qps < 0:
            raise EnvelopeError("documents per day and search QPS cannot be negative")
        if self.average_document_bytes <= 0:
            raise EnvelopeError("the average size must be more than 0 bytes")
        if self.search_response_bytes < 0:
            raise EnvelopeError("the search response size cannot be negative")
        if self.retention_days < 1 or self.replication < 1:
            raise EnvelopeError("retention and replication must be at least 1")
        if self.peak_factor < 1:
            raise EnvelopeError("the peak factor is peak over average: at least 1")


@dataclass(frozen=True)
class Measure:
    value: float
    #: Which results file and field it came from, an option, or "estimate: ...".
    source: str


@dataclass(frozen=True)
class MeasuredCosts:
    worker_documents_per_second: Measure
    api_searches_per_second: Measure
    #: Database bytes per document: text, chunks and vectors.
    bytes_per_document: Measure


@dataclass(frozen=True)
class Prices:
    currency: str
    blob_storage_gb_month: float
    database_storage_gb_month: float
    ingress_gb: float
    egress_gb: float
    worker_process_hour: float
    api_process_hour: float
    note: str = ""


def default_prices_text() -> str:
    return importlib.resources.files("spine.bench").joinpath("prices.json").read_text("utf-8")


def load_prices(path: Path | None = None) -> Prices:
    """The shipped illustrative prices, or ``path`` (JSON, or TOML by its suffix)."""
    where = str(path) if path else "the default prices.json"
    try:
        text = default_prices_text() if path is None else path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path and path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise EnvelopeError(f"prices {where}: {_one_line(exc)}") from exc
    if not isinstance(raw, dict):
        raise EnvelopeError(f"prices {where}: expected an object of prices")
    values = {key: value for key, value in raw.items() if not key.startswith("_")}
    names = {field.name for field in fields(Prices)}
    numbers = names - {"currency", "note"}
    if unknown := sorted(set(values) - names):
        raise EnvelopeError(f"prices {where}: unknown keys {', '.join(unknown)}")
    if missing := sorted(numbers - set(values)):
        raise EnvelopeError(f"prices {where}: missing {', '.join(missing)}")
    for name in sorted(numbers):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise EnvelopeError(f"prices {where}: {name} must be a number >= 0, not {value!r}")
    return Prices(
        currency=str(values.get("currency", "USD")),
        note=str(raw.get("_note", "")),
        **{name: float(values[name]) for name in numbers},
    )


def find_quality_results(results: Path) -> Path | None:
    """``results`` itself if a file, else its ``quality-*.json`` with the most documents
    (ties: the slowest ingest, so the estimate errs towards more workers)."""
    if results.is_file():
        return results
    candidates = []
    for path in sorted(results.glob("quality-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rate = float(data["uploaded"]) / float(data["ingest_seconds"])
            candidates.append((-int(data["documents"]), rate, path))
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue
    return min(candidates)[2] if candidates else None


def measured_costs(
    results: Path,
    workload: Workload,
    *,
    worker_documents_per_second: float | None = None,
    api_searches_per_second: float | None = None,
    bytes_per_document: float | None = None,
    measured_workers: int | None = None,
) -> MeasuredCosts:
    """Each cost from its override if given, else from the results under ``results``:
    ingest.json (a worker's ingest, database bytes per document) and http.json (the
    searches one API process answers within the SLO) where the folder has them, the
    quality results for whatever is still missing."""
    overrides = (worker_documents_per_second, api_searches_per_second, bytes_per_document)
    if any(value is not None and value <= 0 for value in overrides):
        raise EnvelopeError("an overridden throughput or size must be more than 0")
    ingest = _optional_results(results / INGEST_RESULTS) if results.is_dir() else None
    http = _optional_results(results / HTTP_RESULTS) if results.is_dir() else None
    try:
        worker = (
            Measure(worker_documents_per_second, "--worker-docs-per-second")
            if worker_documents_per_second is not None
            else _ingest_rate(ingest, workload)
            if ingest is not None
            else None
        )
        stored = (
            Measure(bytes_per_document, "--bytes-per-document")
            if bytes_per_document is not None
            else _ingest_bytes(ingest, workload)
            if ingest is not None
            else None
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError) as exc:
        raise EnvelopeError(
            f"{INGEST_RESULTS} lacks what the envelope reads ({_one_line(exc)}): rerun "
            f"`{INGEST_BENCH}`"
        ) from exc
    try:
        api = (
            Measure(api_searches_per_second, "--api-searches-per-second")
            if api_searches_per_second is not None
            else _http_rate(http)
            if http is not None
            else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError(
            f"{HTTP_RESULTS} lacks what the envelope reads ({_one_line(exc)}): rerun `{HTTP_BENCH}`"
        ) from exc
    if worker is not None and api is not None and stored is not None:
        return MeasuredCosts(worker, api, stored)
    name, data = _quality_results(results)
    try:
        return MeasuredCosts(
            worker or _worker_rate(name, data, measured_workers),
            api or _api_rate(name, data),
            stored or _bytes_estimate(name, data, workload),
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise EnvelopeError(
            f"{name} lacks what the envelope reads ({_one_line(exc)}): rerun `{QUALITY_BENCH}`"
        ) from exc


def _optional_results(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EnvelopeError(f"{path}: {_one_line(exc)}") from exc
    return data


def _quality_results(results: Path) -> tuple[str, dict[str, Any]]:
    path = find_quality_results(results)
    if path is None:
        raise EnvelopeError(
            f"no ingest, http or quality results in {results}: run `{INGEST_BENCH}` and "
            f"`{HTTP_BENCH}` (or `{QUALITY_BENCH}`), or pass --worker-docs-per-second, "
            "--api-searches-per-second and --bytes-per-document"
        )
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EnvelopeError(f"{path}: {_one_line(exc)}") from exc
    return path.name, data


def _largest(data: dict[str, Any]) -> dict[str, Any]:
    size: dict[str, Any] = max(data["sizes"], key=lambda size: int(size["documents"]))
    return size


def _ingest_rate(data: dict[str, Any], workload: Workload) -> Measure:
    """A worker's documents/s at the largest measured corpus, scaled to the workload's
    document size: processing time grows with the text (chunks to embed), not with the
    number of files."""
    size = _largest(data)
    rate = float(size["docs_per_second_per_worker"]["median"])
    measured_bytes = float(size["text_bytes"]) / int(size["documents"])
    scaled = rate * measured_bytes / workload.average_document_bytes
    if scaled <= 0:
        raise ValueError("no document was ingested")
    return Measure(
        scaled,
        f"{INGEST_RESULTS}: docs_per_second_per_worker.median {rate:g} at "
        f"{size['documents']} documents x their {measured_bytes:.0f} B / the workload's "
        f"{workload.average_document_bytes} B",
    )


def _ingest_bytes(data: dict[str, Any], workload: Workload) -> Measure:
    """Database bytes per document as measured (the empty database's left out), scaled
    to the workload's document size like the text they hold."""
    size = _largest(data)
    documents = int(size["documents"])
    grown = int(size["database_bytes"]) - int(size.get("empty_database_bytes", 0))
    measured_bytes = float(size["text_bytes"]) / documents
    per_document = grown / documents * workload.average_document_bytes / measured_bytes
    if per_document <= 0:
        raise ValueError("the database did not grow")
    return Measure(
        per_document,
        f"{INGEST_RESULTS}: (database_bytes - empty_database_bytes) / {documents} documents "
        f"= {grown / documents:.0f} B for {measured_bytes:.0f} B of text, scaled to the "
        f"workload's {workload.average_document_bytes} B",
    )


def _http_rate(data: dict[str, Any]) -> Measure | None:
    """The highest uncached search rate one API process held within the SLO; None when
    no rate did (the quality estimate stands in)."""
    scenario = data["scenarios"].get("search-uncached")
    best = None if scenario is None else scenario["highest_rate_within_slo"]
    if best is None:
        return None
    return Measure(
        float(best),
        f"{HTTP_RESULTS}: scenarios.search-uncached.highest_rate_within_slo, open loop "
        f"against {data['target']}",
    )


def _worker_rate(name: str, data: dict[str, Any], workers: int | None) -> Measure:
    if workers is not None:
        said = f"{workers} workers from --measured-workers"
    elif "workers" in data:
        workers, said = int(data["workers"]), f"{int(data['workers'])} workers from the file"
    else:
        workers = DEFAULT_MEASURED_WORKERS
        said = f"{workers} workers assumed (bench quality's default, not in the file)"
    uploaded, seconds = int(data["uploaded"]), float(data["ingest_seconds"])
    rate = uploaded / seconds / workers
    if rate <= 0:
        raise ValueError("no document was uploaded")
    return Measure(rate, f"{name}: uploaded {uploaded} / ingest_seconds {seconds:g} / {said}")


def _api_rate(name: str, data: dict[str, Any]) -> Measure:
    median = float(data["modes"]["hybrid"]["latency_ms_median"])
    return Measure(
        1000 / median,
        f"{name}: 1000 / modes.hybrid.latency_ms_median {median:g} ms; one search at a time "
        "in-process (closed loop, no HTTP), an estimate until `spine bench http` exists",
    )


def _bytes_estimate(name: str, data: dict[str, Any], workload: Workload) -> Measure:
    """No bench measures the database per document yet: the notebook's rule instead."""
    chunks = int(data["chunks"]) / int(data["documents"])
    text = 2 * workload.average_document_bytes
    return Measure(
        text + chunks * VECTOR_BYTES_PER_CHUNK,
        f"estimate: 2 x average size (document text and chunk text, 1 byte a character) "
        f"+ {chunks:.2f} chunks/document ({name}: chunks / documents) x "
        f"{VECTOR_BYTES_PER_CHUNK} B (384-dim float32)",
    )


# -- The envelope --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoragePoint:
    label: str
    days: int
    documents: float
    blob_bytes: float
    database_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.blob_bytes + self.database_bytes


@dataclass(frozen=True)
class Bandwidth:
    average_bytes_per_second: float
    peak_bytes_per_second: float

    @property
    def average_mbit_per_second(self) -> float:
        return self.average_bytes_per_second * 8 / 1e6

    @property
    def peak_mbit_per_second(self) -> float:
        return self.peak_bytes_per_second * 8 / 1e6


@dataclass(frozen=True)
class Processes:
    peak_documents_per_second: float
    workers: int
    peak_searches_per_second: float
    apis: int


@dataclass(frozen=True)
class CostLine:
    name: str
    monthly: float
    detail: str


@dataclass(frozen=True)
class Envelope:
    workload: Workload
    measured: MeasuredCosts
    prices: Prices
    storage: list[StoragePoint]
    upload: Bandwidth
    processes: Processes
    #: Biggest first; the first two are the lines to name.
    costs: list[CostLine]

    @property
    def top_two(self) -> list[str]:
        return [line.name for line in self.costs[:2]]

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": asdict(self.workload),
            "measured": asdict(self.measured),
            "prices": asdict(self.prices),
            "storage": [
                {**asdict(point), "total_bytes": point.total_bytes} for point in self.storage
            ],
            "upload": {
                **asdict(self.upload),
                "average_mbit_per_second": self.upload.average_mbit_per_second,
                "peak_mbit_per_second": self.upload.peak_mbit_per_second,
            },
            "processes": asdict(self.processes),
            "costs": [asdict(line) for line in self.costs],
            "top_two": self.top_two,
        }


def storage_at(workload: Workload, measured: MeasuredCosts, label: str, days: int) -> StoragePoint:
    """What is held after ``days``: nothing is deleted before the retention ends."""
    documents = workload.documents_per_day * min(days, workload.retention_days)
    return StoragePoint(
        label=label,
        days=days,
        documents=documents,
        blob_bytes=documents * workload.average_document_bytes * workload.replication,
        database_bytes=documents * measured.bytes_per_document.value,
    )


def envelope(workload: Workload, measured: MeasuredCosts, prices: Prices) -> Envelope:
    points = {"1 month": DAYS_PER_MONTH, "1 year": 365}
    points.setdefault(f"retention ({workload.retention_days} d)", workload.retention_days)
    storage = [storage_at(workload, measured, label, days) for label, days in points.items()]
    steady = storage_at(workload, measured, "steady", workload.retention_days)

    average_docs = workload.documents_per_day / SECONDS_PER_DAY
    average_upload = average_docs * workload.average_document_bytes
    upload = Bandwidth(average_upload, average_upload * workload.peak_factor)

    peak_docs = average_docs * workload.peak_factor
    peak_searches = workload.search_qps * workload.peak_factor
    processes = Processes(
        peak_documents_per_second=peak_docs,
        workers=math.ceil(peak_docs / measured.worker_documents_per_second.value),
        peak_searches_per_second=peak_searches,
        apis=math.ceil(peak_searches / measured.api_searches_per_second.value),
    )

    ingress_gb = workload.documents_per_day * DAYS_PER_MONTH * workload.average_document_bytes / GB
    egress_gb = (
        workload.search_qps * SECONDS_PER_DAY * DAYS_PER_MONTH * workload.search_response_bytes / GB
    )
    blob_gb, database_gb = steady.blob_bytes / GB, steady.database_bytes / GB
    costs = [
        CostLine(
            "storage",
            blob_gb * prices.blob_storage_gb_month + database_gb * prices.database_storage_gb_month,
            f"at retention: {blob_gb:,.1f} GB blobs, {database_gb:,.1f} GB database",
        ),
        CostLine(
            "compute: workers",
            processes.workers * HOURS_PER_MONTH * prices.worker_process_hour,
            f"{processes.workers} x {HOURS_PER_MONTH} h",
        ),
        CostLine(
            "compute: API",
            processes.apis * HOURS_PER_MONTH * prices.api_process_hour,
            f"{processes.apis} x {HOURS_PER_MONTH} h",
        ),
        CostLine(
            "transfer",
            ingress_gb * prices.ingress_gb + egress_gb * prices.egress_gb,
            f"{ingress_gb:,.1f} GB in, {egress_gb:,.1f} GB out a month",
        ),
    ]
    costs.sort(key=lambda line: line.monthly, reverse=True)
    return Envelope(workload, measured, prices, storage, upload, processes, costs)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
