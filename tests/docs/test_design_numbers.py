"""docs/DESIGN.md states no measured number that the committed results do not hold.

The rule, line by line (the comment at the top of DESIGN.md says the same in one line):

1. **Citing.** A line cites the files under ``bench/results/`` that its markdown links
   point to (``[bench quality](../bench/results/quality-scifact-test.json)``). A table is
   cited by its caption, the closest non-blank line above it: every row of the table cites
   the caption's files besides its own links.
2. **A cited line's numbers are in its files.** Every number on a cited line, outside
   `code spans`, link targets and placeholders, must be found in at least one of the files
   it cites. ``5,183``, ``0.7305``, ``14.5 ms``, ``95.5 %`` and ``32.9 GB`` are numbers
   (thousands separators and units are dropped); ``nDCG@10``, ``p95``, ``MiniLM-L6``,
   ``SHA-256`` are names, not numbers. A number written with d decimals matches a value
   within half a unit of its last digit (0.731 matches 0.7305, 14.5 matches 14.49, 474
   matches 474.4); ``p %`` also matches the fraction p/100, and a number with KB, MB, GB
   or TB also matches a byte count. In a JSON file every number counts: the values, and
   numbers written inside its keys and strings; in any other file, every number in its
   text. Write numbers that are not measurements in a code span (`k = 10`).
3. **An uncited line states no measurement.** A line that cites nothing must hold no
   measured-looking number (one followed by a unit: ms, s, min, h, /s, docs/s, B/s,
   KB, MB, GB, TB, KiB, MiB, GiB, %, USD; or any number on a line that names a metric:
   nDCG, MRR, Recall@, p50, p95, p99), unless the line says ``(assumption`` or
   ``(setting``: a number Spine is configured with or one the design assumes.
4. **Placeholders.** ``{{ingest: what}}`` and ``{{search: what}}`` stand for numbers that
   ``spine bench ingest`` and ``spine bench search`` have not committed yet. They must
   stand on a cited line, and a cited file may be missing only while a placeholder on a
   line citing it remains. Every ``{{`` left is a *pending* problem: the check of the
   real document ignores pending problems, and a second, strict-xfail test wants none.
5. Fenced code blocks are not checked, except ``mermaid`` diagrams, which cannot cite and
   so follow rule 3. HTML comments are not checked.

Besides, every results file the document cites must be named on some line together with
the `spine ...` command (in a code span) that produced it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "DESIGN.md"
RESULTS = ROOT / "bench" / "results"

LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`]*`")
PLACEHOLDER = re.compile(r"\{\{\s*(?:ingest|search)\s*:[^{}]+\}\}")
#: A number that is not part of a name: not after a letter, digit, ``_``, ``@`` or ``.``,
#: nor after a hyphen that follows a letter (``SHA-256``, ``MiniLM-L6``).
NUMBER = re.compile(
    r"(?<![\w@.])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d])"
)
#: Any number at all, for the results files' text.
ANY_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
UNIT = re.compile(
    r"\s?(?:docs/s|documents/s|chunks/s|searches/s|req/s|B/s|KB/s|MB/s|Mbit/s|/s|ms|s|sec"
    r"|seconds?|min|minutes?|h|hours?|KB|MB|GB|TB|KiB|MiB|GiB|TiB|USD|%)(?![A-Za-z])"
)
SCALES = {
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "TiB": 1024.0**4,
}
METRIC = re.compile(r"ndcg|mrr|recall@|\bp(?:50|95|99)\b", re.IGNORECASE)
MARKED = re.compile(r"\((?:assumption|settings?)\b", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)\s*(\w*)")
COMMAND = re.compile(r"`spine [^`]+`")

#: Problem kinds that only say a benchmark has not reported yet.
PENDING = "pending"


@dataclass(frozen=True)
class Problem:
    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"DESIGN.md:{self.line}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class DocNumber:
    text: str
    value: float
    decimals: int
    unit: str

    def matches(self, values: list[float]) -> bool:
        tolerance = 0.5 * 10.0**-self.decimals
        scale = SCALES.get(self.unit)
        for value in values:
            candidates = [value]
            if self.unit == "%":
                candidates.append(value * 100)
            if scale is not None:
                candidates.append(value / scale)
            for candidate in candidates:
                slack = 1e-9 * max(1.0, abs(candidate))
                if abs(candidate - self.value) <= tolerance + slack:
                    return True
        return False


def parse_number(text: str) -> tuple[float, int]:
    plain = text.replace(",", "")
    decimals = len(plain.split(".", 1)[1]) if "." in plain else 0
    return float(plain), decimals


def doc_numbers(text: str) -> list[DocNumber]:
    """The numbers of a line (code spans, link targets and placeholders already gone)."""
    found = []
    for match in NUMBER.finditer(text):
        value, decimals = parse_number(match.group(1))
        unit_match = UNIT.match(text, match.end())
        unit = unit_match.group(0).strip() if unit_match else ""
        found.append(DocNumber(match.group(1), value, decimals, unit))
    return found


def looks_measured(text: str) -> bool:
    numbers = doc_numbers(text)
    return any(number.unit for number in numbers) or bool(numbers and METRIC.search(text))


# -- the results files ---------------------------------------------------------------------


def _walk(value: Any) -> Iterator[float]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, str):
        yield from (parse_number(m)[0] for m in ANY_NUMBER.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(str(key))
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def file_numbers(path: Path) -> list[float]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return list(_walk(json.loads(text)))
    return [parse_number(m)[0] for m in ANY_NUMBER.findall(text)]


# -- the document --------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    number: int
    text: str
    #: Files under the results folder this line cites, its table caption's included.
    cites: tuple[Path, ...]
    in_diagram: bool = False


def cited_files(text: str, doc_dir: Path, results: Path) -> list[Path]:
    files = []
    for _label, target in LINK.findall(text):
        path = (doc_dir / target.split("#", 1)[0]).resolve()
        if path.is_relative_to(results.resolve()) and path != results.resolve():
            files.append(path)
    return files


def _without_comments(lines: list[str]) -> list[str]:
    """Each line with HTML comments blanked out (a comment may span lines)."""
    out, inside = [], False
    for raw in lines:
        kept, rest = "", raw
        while rest:
            if inside:
                end = rest.find("-->")
                if end < 0:
                    rest = ""
                else:
                    rest, inside = rest[end + 3 :], False
            else:
                start = rest.find("<!--")
                if start < 0:
                    kept, rest = kept + rest, ""
                else:
                    kept, rest, inside = kept + rest[:start], rest[start + 4 :], True
        out.append(kept)
    return out


def checked_lines(doc: str, doc_dir: Path, results: Path) -> Iterator[Line]:
    """The lines the rules apply to, each with the files it cites."""
    lines = _without_comments(doc.splitlines())
    fence: str | None = None
    diagram = False
    caption_cites: tuple[Path, ...] = ()
    previous_text = ""  # the closest non-blank line above, outside fences
    in_table = False
    for index, text in enumerate(lines, start=1):
        opened = FENCE.match(text)
        if fence is not None:
            if opened and opened.group(1) == fence:
                fence, diagram = None, False
            elif diagram:
                yield Line(index, text, (), in_diagram=True)
            continue
        if opened:
            fence, diagram = opened.group(1), opened.group(2) == "mermaid"
            in_table = False
            continue
        is_row = text.lstrip().startswith("|")
        if is_row and not in_table:
            caption_cites = tuple(cited_files(previous_text, doc_dir, results))
        in_table = is_row
        own = cited_files(text, doc_dir, results)
        cites = tuple(dict.fromkeys([*own, *(caption_cites if is_row else ())]))
        yield Line(index, text, cites)
        if text.strip():
            previous_text = text


def _shown_under(results: Path) -> Callable[[Path], str]:
    """A cited file as the doc names it: its path under the results folder."""
    root = results.resolve()
    return lambda path: path.relative_to(root).as_posix()


def check(doc: str, *, doc_dir: Path, results: Path) -> list[Problem]:
    """Every problem of ``doc`` (a DESIGN.md's text) under the rules of this module."""
    problems: list[Problem] = []
    cache: dict[Path, list[float]] = {}
    lines = list(checked_lines(doc, doc_dir, results))
    shown = _shown_under(results)
    # Files that placeholders still wait for: citing them before they exist is pending.
    awaited = {path for line in lines if PLACEHOLDER.search(line.text) for path in line.cites}
    for line in lines:
        text = line.text
        placeholders = PLACEHOLDER.findall(text)
        for _ in range(text.count("{{")):
            problems.append(Problem(line.number, PENDING, "a placeholder is still here"))
        if text.count("{{") != len(placeholders):
            problems.append(
                Problem(line.number, "malformed", "write {{ingest: what}} or {{search: what}}")
            )
        bare = PLACEHOLDER.sub(" ", text)
        bare = CODE_SPAN.sub(" ", bare)
        bare = LINK.sub(lambda m: f" {m.group(1)} ", bare)
        if not line.cites:
            if placeholders:
                problems.append(
                    Problem(line.number, "uncited", "a placeholder on a line that cites nothing")
                )
            if looks_measured(bare) and (line.in_diagram or not MARKED.search(text)):
                where = "a diagram" if line.in_diagram else "a line that cites nothing"
                problems.append(
                    Problem(line.number, "uncited", f"a measured-looking number in {where}")
                )
            continue
        values: list[float] = []
        present = []
        for path in line.cites:
            if not path.is_file():
                kind = PENDING if path in awaited else "missing"
                problems.append(
                    Problem(line.number, kind, f"cites {shown(path)}, which is missing")
                )
                continue
            if path.suffix not in (".json", ".md", ".txt", ".csv"):
                problems.append(Problem(line.number, "unreadable", f"cites {shown(path)}"))
                continue
            if path not in cache:
                cache[path] = file_numbers(path)
            values.extend(cache[path])
            present.append(shown(path))
        for number in doc_numbers(bare):
            if not number.matches(values):
                problems.append(
                    Problem(
                        line.number,
                        "unmatched",
                        f"{number.text}{' ' + number.unit if number.unit else ''} is in none "
                        f"of {', '.join(present) or 'the cited files (none exists)'}",
                    )
                )
    return problems


def commands_named(doc: str, *, doc_dir: Path, results: Path) -> list[Problem]:
    """Each cited results file is named, on some line, beside the command that made it."""
    lines = _without_comments(doc.splitlines())
    cited = {path for line in checked_lines(doc, doc_dir, results) for path in line.cites}
    shown = _shown_under(results)
    problems = []
    for path in sorted(cited):
        # The path under results/, so ingest-10k/ingest.json is not taken for ingest.json.
        if not any(shown(path) in text and COMMAND.search(text) for text in lines):
            problems.append(
                Problem(0, "no-command", f"no line names {shown(path)} with a `spine ...` command")
            )
    return problems


# -- the checker, on small documents ---------------------------------------------------------


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "bench" / "results"
    folder.mkdir(parents=True)
    (folder / "quality.json").write_text(
        json.dumps(
            {
                "documents": 5183,
                "modes": {"hybrid": {"metrics": {"ndcg@10": 0.73053, "recall@100": 0.955}}},
                "storage": {"blob_bytes": 32850000000.0},
                "statuses": {"429": 1121},
                "source": "1000 / latency_ms_median 29.39 ms",
            }
        ),
        encoding="utf-8",
    )
    (folder / "http.md").write_text("| 40 | 400 | 11.4 | 14.5 |\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    return folder


def problems_of(doc: str, results: Path) -> list[Problem]:
    return check(doc, doc_dir=results.parent.parent / "docs", results=results)


Q = "[quality](../bench/results/quality.json)"
H = "[http](../bench/results/http.md)"


def kinds(doc: str, results: Path) -> list[str]:
    return [problem.kind for problem in problems_of(doc, results)]


def test_a_right_number_passes(results: Path) -> None:
    assert kinds(f"hybrid nDCG@10 is **0.7305** ({Q})", results) == []


def test_a_wrong_number_fails(results: Path) -> None:
    problems = problems_of(f"hybrid nDCG@10 is **0.7405** ({Q})", results)
    assert [(p.line, p.kind) for p in problems] == [(1, "unmatched")]
    assert "0.7405" in problems[0].message


@pytest.mark.parametrize(
    "written",
    ["0.731", "0.73", "0.7", "5,183", "5183", "95.5 %", "95.5%", "32.9 GB", "29.4 ms", "1121"],
)
def test_numbers_match_at_the_precision_written(results: Path, written: str) -> None:
    assert kinds(f"it is {written} ({Q})", results) == []


@pytest.mark.parametrize("written", ["0.732", "5,184", "97 %", "33.0 GB", "29.3 ms", "7"])
def test_numbers_off_by_more_than_their_last_digit_fail(results: Path, written: str) -> None:
    assert kinds(f"it is {written} ({Q})", results) == ["unmatched"]


def test_names_code_spans_and_link_targets_hold_no_numbers(results: Path) -> None:
    line = f"`k = 10` MiniLM-L6 SHA-256 p95 nDCG@10 Recall@100 int8 are not numbers ({Q})"
    assert kinds(line, results) == []


def test_a_markdown_results_file_is_searched_as_text(results: Path) -> None:
    assert kinds(f"40/s with p95 14.5 ms ({H})", results) == []
    assert kinds(f"40/s with p95 15.5 ms ({H})", results) == ["unmatched"]


def test_an_uncited_measured_number_fails(results: Path) -> None:
    assert kinds("search p95 is 14.5 ms on one core", results) == ["uncited"]
    assert kinds("hybrid nDCG@10 is 0.7305", results) == ["uncited"]
    assert kinds("the bill is 60.74 USD a month", results) == ["uncited"]


def test_an_uncited_number_that_is_no_measurement_passes(results: Path) -> None:
    doc = "\n".join(
        [
            "## 3. Critical path",
            "a vector is 384 x 4 = 1536 bytes, and there are 2 pros",
            "searches answer within 250 ms (setting `SPINE_SLO_SEARCH_LATENCY_SECONDS`)",
            "an upload is 3 KB (assumption)",
        ]
    )
    assert kinds(doc, results) == []


def test_a_table_caption_cites_for_every_row(results: Path) -> None:
    doc = "\n".join(
        [
            f"Latency ({Q}):",
            "",
            "| mode | nDCG@10 | median ms |",
            "|---|---|---|",
            "| hybrid | 0.7305 | 29.39 |",
            "| keyword | 0.6912 | 26.77 |",
            "",
            "| uncited | 12 ms |",
        ]
    )
    problems = problems_of(doc, results)
    assert [(p.line, p.kind) for p in problems] == [
        (6, "unmatched"),
        (6, "unmatched"),
        (8, "uncited"),
    ]


def test_a_row_may_cite_its_own_file(results: Path) -> None:
    doc = "\n".join(["Numbers:", "", "| a | b |", "|---|---|", f"| 14.5 ms | {H} |"])
    assert kinds(doc, results) == []


def test_placeholders_are_pending_on_a_line_that_cites_the_future_file(results: Path) -> None:
    future = "[ingest](../bench/results/ingest.json)"
    problems = problems_of(f"{{{{ingest: docs/s per worker}}}} docs/s ({future})", results)
    assert {p.kind for p in problems} == {PENDING}
    assert len(problems) == 2  # the placeholder, and the file not written yet


def test_a_table_waiting_for_its_file_is_pending_from_caption_to_last_row(
    results: Path,
) -> None:
    future = "[ingest](../bench/results/ingest.json)"
    doc = "\n".join(
        [
            f"Ingest ({future}):",
            "",
            "| measure | value |",
            "|---|---|",
            "| docs/s | {{ingest: x}} |",
        ]
    )
    assert {p.kind for p in problems_of(doc, results)} == {PENDING}
    filled = doc.replace("{{ingest: x}}", "6.5")
    assert [p.kind for p in problems_of(filled, results)] == ["missing"] * 4 + ["unmatched"]


def test_a_placeholder_must_stand_on_a_cited_line(results: Path) -> None:
    assert sorted(kinds("{{search: p95 ms}} ms", results)) == [PENDING, "uncited"]


def test_a_stray_brace_pair_is_pending_and_malformed(results: Path) -> None:
    assert sorted(kinds(f"see {{{{ this ({Q})", results)) == ["malformed", PENDING]


def test_a_missing_file_without_a_placeholder_fails(results: Path) -> None:
    missing = "[gone](../bench/results/gone.json)"
    assert kinds(f"nothing measured here ({missing})", results) == ["missing"]


def test_numbers_beside_a_placeholder_are_still_checked(results: Path) -> None:
    future = "[ingest](../bench/results/ingest.json)"
    line = f"{{{{ingest: chunks/s}}}} and 9.9 ms ({future}, {Q})"
    assert sorted(kinds(line, results)) == [PENDING, PENDING, "unmatched"]


def test_diagrams_follow_the_uncited_rule_and_other_code_blocks_are_skipped(
    results: Path,
) -> None:
    doc = "\n".join(
        [
            "```mermaid",
            "API->>DB: chunk rows, 1536 B a vector",
            "API->>DB: takes 150 ms",
            "```",
            "```sh",
            "spine envelope --average-size 3KB --search-qps 20",
            "```",
        ]
    )
    assert [(p.line, p.kind) for p in problems_of(doc, results)] == [(3, "uncited")]


def test_html_comments_are_skipped(results: Path) -> None:
    doc = "<!-- 14.5 ms {{ here -->\nkept\n<!-- spans\n99 % -->"
    assert kinds(doc, results) == []


def test_each_cited_file_needs_its_command(results: Path) -> None:
    docs = results.parent.parent / "docs"
    cited = f"nDCG@10 is 0.7305 ({Q})"
    assert [p.kind for p in commands_named(cited, doc_dir=docs, results=results)] == ["no-command"]
    named = cited + "\n| quality.json | `spine bench quality --dataset DIR` |"
    assert commands_named(named, doc_dir=docs, results=results) == []


# -- the real document ---------------------------------------------------------------------


def design_problems() -> list[Problem]:
    doc = DESIGN.read_text(encoding="utf-8")
    return check(doc, doc_dir=DESIGN.parent, results=RESULTS) + commands_named(
        doc, doc_dir=DESIGN.parent, results=RESULTS
    )


def test_design_numbers_are_the_committed_results() -> None:
    problems = [p for p in design_problems() if p.kind != PENDING]
    assert not problems, "\n".join(map(str, problems))


def test_design_cites_every_result_measured_so_far() -> None:
    doc = DESIGN.read_text(encoding="utf-8")
    cited = {
        path.relative_to(RESULTS.resolve()).as_posix()
        for line in checked_lines(doc, DESIGN.parent, RESULTS)
        for path in line.cites
    }
    expected = {
        "quality-scifact-test.json",
        "quality-scifact-test-postgresql.json",
        "fusion-scifact-train.json",
        "fusion-scifact-test.json",
        "http.json",
        "envelope.json",
        "ingest.json",
        "ingest-10k/ingest.json",
        "search.json",
        "search-postgresql.json",
    }
    assert expected <= cited, f"not cited: {sorted(expected - cited)}"


def test_design_has_no_placeholders_left() -> None:
    problems = design_problems()
    assert not problems, "\n".join(map(str, problems))
