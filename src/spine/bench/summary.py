"""The headline ratios of one `spine bench all` run, read back from the files it wrote.

Each number here is copied or divided from a field of ingest.json, search.json, http.json
or envelope.json, and names that field, so the summary can be checked against its sources
and never says more than they do.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PARTS = ("ingest", "search", "http", "envelope")


class SummaryError(ValueError):
    """A results file is missing or lacks a field the summary reads."""


@dataclass(frozen=True)
class Headline:
    what: str
    value: str
    source: str
    """The file and field the value comes from."""


@dataclass(frozen=True)
class Summary:
    headlines: list[Headline]
    seconds: dict[str, float]
    """Wall time of each part of the run."""
    machine: dict[str, str] = field(default_factory=dict)
    """Everything the parts' machine records say, merged: the versions of all measured."""


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SummaryError(f"{path}: {str(exc).splitlines()[0]}") from exc
    return data


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def ingest_headlines(data: dict[str, Any]) -> list[Headline]:
    lines = []
    for size in data["sizes"]:
        n = size["documents"]
        where = f"ingest.json sizes[documents={n}]"
        lines += [
            Headline(
                f"ingest, {n} documents: chunks/s per worker",
                f"{size['chunks_per_second_per_worker']['median']:g}",
                f"{where}.chunks_per_second_per_worker.median",
            ),
            Headline(
                f"ingest, {n} documents: Spine / raw embedder (chunks/s)",
                _ratio(size["ratio_to_embedder"]),
                f"{where}.ratio_to_embedder",
            ),
            Headline(
                f"ingest, {n} documents: stored bytes per chunk / notebook estimate",
                _ratio(size["bytes_per_chunk"] / size["estimate_bytes_per_chunk"]),
                f"{where}.bytes_per_chunk / estimate_bytes_per_chunk",
            ),
        ]
    steady = data.get("steady")
    if steady:
        lines.append(
            Headline(
                f"upload -> searchable at {steady['rate']:g} docs/s: p50 / p95 s",
                f"{steady['p50_seconds']:g} / {steady['p95_seconds']:g}",
                "ingest.json steady.p50_seconds, p95_seconds",
            )
        )
    return lines


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def search_headlines(data: dict[str, Any]) -> list[Headline]:
    lines = []
    for size in data["sizes"]:
        n = size["chunks"]
        where = f"search.json sizes[chunks={n}]"
        for mode, measured in size["modes"].items():
            lines.append(
                Headline(
                    f"search {mode}, {n} chunks: p50 / p95 / p99 ms",
                    " / ".join(_ms(measured[f"{p}_ms"]) for p in ("p50", "p95", "p99")),
                    f"{where}.modes.{mode}",
                )
            )
        ratios = size["ratios"]
        for name in ("keyword", "semantic", "hybrid"):
            lines.append(
                Headline(
                    f"search {name}, {n} chunks: Spine / raw index floor, p50 (p95)",
                    f"{_ratio(ratios[f'{name}_p50'])} ({_ratio(ratios[f'{name}_p95'])})",
                    f"{where}.ratios.{name}_p50, {name}_p95",
                )
            )
        semantic = size["modes"]["semantic"]["p50_ms"]
        exact = size["floor"]["vector"]["p50_ms"]
        for peer in size.get("peers") or []:
            name, p50 = peer["name"], peer["vector_ms"]["p50"]
            lines.append(
                Headline(
                    f"vs {name}, {n} chunks: Spine semantic / its vector p50 "
                    f"(Spine's exact index alone; its recall@10)",
                    f"{_ratio(semantic / p50)} ({_ratio(exact / p50)}; {peer['recall_at_k']:.2f})",
                    f"{where}.modes.semantic.p50_ms, floor.vector.p50_ms / "
                    f"peers[{name}].vector_ms.p50, recall_at_k",
                )
            )
    return lines


def http_headlines(data: dict[str, Any]) -> list[Headline]:
    return [
        Headline(
            f"http {name}: highest rate within its objective",
            "none"
            if scenario["highest_rate_within_slo"] is None
            else f"{scenario['highest_rate_within_slo']:g}/s",
            f"http.json scenarios.{name}.highest_rate_within_slo",
        )
        for name, scenario in data["scenarios"].items()
    ]


def envelope_headlines(data: dict[str, Any]) -> list[Headline]:
    processes = data["processes"]
    return [
        Headline(
            "envelope: worker / API processes at peak",
            f"{processes['workers']} / {processes['apis']}",
            "envelope.json processes",
        ),
        Headline(
            "envelope: monthly cost (illustrative prices)",
            f"{sum(line['monthly'] for line in data['costs']):.2f} {data['prices']['currency']}",
            "envelope.json sum of costs[].monthly",
        ),
        Headline(
            "envelope: biggest two cost lines",
            " + ".join(data["top_two"]),
            "envelope.json top_two",
        ),
    ]


READERS = {
    "ingest": ingest_headlines,
    "search": search_headlines,
    "http": http_headlines,
    "envelope": envelope_headlines,
}


def summarize(folder: Path, seconds: dict[str, float]) -> Summary:
    headlines: list[Headline] = []
    merged: dict[str, str] = {}
    for part in PARTS:
        data = _load(folder, part)
        if data is None:
            continue
        try:
            headlines += READERS[part](data)
        except (KeyError, TypeError, ZeroDivisionError) as exc:
            raise SummaryError(
                f"{folder / part}.json lacks what the summary reads ({exc!r}): rerun "
                f"`spine bench {part}`"
            ) from exc
        merged.update(data.get("machine") or {})
    return Summary(headlines, seconds, merged)


def markdown(summary: Summary) -> str:
    lines = ["# spine bench all", "", "| measurement | value | from |", "|---|---:|---|"]
    lines += [f"| {h.what} | {h.value} | {h.source} |" for h in summary.headlines]
    lines += ["", "Wall time: " + ", ".join(f"{k} {v:g} s" for k, v in summary.seconds.items())]
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in summary.machine.items()), ""]
    return "\n".join(lines)


def print_table(summary: Summary, console: Console) -> None:
    table = Table(title="spine bench all: headlines")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    for headline in summary.headlines:
        table.add_row(headline.what, headline.value)
    console.print(table)
    console.print(", ".join(f"{k} {v}" for k, v in summary.machine.items()))


def write(summary: Summary, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "summary.json", folder / "summary.md"]
    written[0].write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    written[1].write_text(markdown(summary), encoding="utf-8")
    return written
