"""``spine slo``: the SLO report read from the database file, as a table or as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from spine.cli import SPARK_LEVELS, app, sparkline
from spine.observability.metrics import Metrics
from spine.service.bootstrap import open_database
from spine.service.slo import SloRecorder
from spine.settings import Settings

# Wide enough that Rich wraps no column of the table.
runner = CliRunner(env={"COLUMNS": "300"})


def spine(*args: str) -> Result:
    return runner.invoke(app, list(args))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Two hours of availability events (all good, then 1 in 10 bad) written by a recorder
    the way a server flushes them: the CLI runs with no server."""
    folder = tmp_path / "data"
    folder.mkdir()
    settings = Settings(data_dir=folder)
    recorder = SloRecorder(settings, Metrics())
    now = datetime.now(UTC)
    for _ in range(100):
        recorder.record("availability", True, now - timedelta(hours=2))
    for i in range(10):
        recorder.record("availability", i > 0, now - timedelta(minutes=2))
    db = open_database(settings.resolved_database_url())
    try:
        assert recorder.flush(db, now=now)
    finally:
        db.close()
    return folder


def test_slo_prints_a_table_of_the_three_slos_with_a_sparkline(data_dir: Path) -> None:
    result = spine("slo", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    rows = {
        name: line
        for line in result.stdout.splitlines()
        for name in ("availability", "search_latency", "freshness")
        if f"│ {name} " in line
    }
    assert set(rows) == {"availability", "search_latency", "freshness"}
    availability = rows["availability"]
    assert "1 bad / 110" in availability
    assert "99.90%" in availability  # the objective
    assert "exhausted" in availability  # 1 bad where 0.11 were allowed
    # The hour with errors is the highest bar, the quiet hour two before it the lowest.
    assert "█" in availability
    assert "▁" in availability
    assert "1 bad" not in rows["freshness"]


def test_slo_json_is_the_report(data_dir: Path) -> None:
    result = spine("slo", "--data-dir", str(data_dir), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["window_days"] == 28
    slos = {s["name"]: s for s in report["slos"]}
    assert list(slos) == ["availability", "search_latency", "freshness"]
    assert (slos["availability"]["good"], slos["availability"]["total"]) == (109, 110)
    assert slos["availability"]["burn_rates"]["5m"] == pytest.approx(100.0)
    assert slos["search_latency"]["total"] == 0
    datetime.fromisoformat(report["generated_at"])


def test_slo_of_an_empty_database_shows_untouched_budgets(tmp_path: Path) -> None:
    result = spine("slo", "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("100.0%") == 3


def test_sparkline_scales_to_the_peak_and_leaves_gaps_for_hours_without_events() -> None:
    assert sparkline([0.0, None, 0.5, 1.0]) == f"{SPARK_LEVELS[0]} {SPARK_LEVELS[4]}█"
    assert sparkline([0.0, 0.0]) == "▁▁"
    assert sparkline([None, None]) == "  "


def test_sparkline_bars_are_full_at_the_allowed_error_ratio_unless_an_hour_is_worse() -> None:
    assert sparkline([0.005, 0.01], full=0.01) == f"{SPARK_LEVELS[4]}█"
    assert sparkline([0.005, 0.02], full=0.01) == f"{SPARK_LEVELS[2]}█"
