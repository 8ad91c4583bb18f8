"""deploy/: the Prometheus rules pass promtool and their own unit tests, and the rules and the
Grafana dashboard only query series that Spine exports or that the rules record.

A dashboard or an alert on a misspelt metric shows an empty panel or never fires, and
nothing else notices: these tests are what ties deploy/ to src/spine/observability.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from spine.service.bootstrap import bootstrap
from spine.settings import Settings

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "spine-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "spine-rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "spine-dashboard.json"
#: Where `make unit` unpacks Debian's prometheus package.
LOCAL_PROMTOOL = REPO / ".venv" / "prometheus" / "usr" / "bin" / "promtool"

#: Quoted strings (label values, regexes) hold no series names; durations and label names
#: never start with ``spine_`` or contain a colon, so they fall through the checks below.
_COMMENT = re.compile(r"#[^\n]*")
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_:]*")
#: A Grafana variable; the dashboard test swaps in a value to let promtool parse the query.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

#: The sample names each family type puts in the exposition. prometheus_client names a
#: counter's family without ``_total``, and no classic histogram can be queried by the
#: family name alone, so the family name is not always a queryable one.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

ROWS = {"SLOs", "RED per route", "Queue & workers", "Embedder", "Hot spots", "Caches"}


# -- helpers ----------------------------------------------------------------------------------


def series_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names (``spine_...``) and recorded series (``level:metric:op``) an expression
    reads."""
    code = _COMMENT.sub("", _STRING.sub("", expr))
    names = set(_IDENTIFIER.findall(code))
    recorded = {name for name in names if ":" in name}
    metrics = {name for name in names - recorded if name.startswith("spine_")}
    return metrics, recorded


def exposed_names(families: Iterable[Metric]) -> set[str]:
    """Every name a PromQL query can select among these families' series."""
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def load_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        rules.extend(group["rules"])
    return rules


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those folded inside a collapsed row."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    queries = [
        (f"panel {panel['id']} {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append((f"variable {variable['name']}", text))
    return queries


def all_queries() -> list[tuple[str, str]]:
    in_rules = [
        (f"rule {rule.get('record') or rule.get('alert')}", rule["expr"]) for rule in load_rules()
    ]
    return in_rules + dashboard_queries(load_dashboard())


def recorded_names() -> set[str]:
    return {rule["record"] for rule in load_rules() if "record" in rule}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )


def missing(what: str, how: str) -> NoReturn:
    """CI must not pass by skipping what it was meant to check; a developer may lack it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing on CI: {how}")
    pytest.skip(f"{what} is missing: {how}")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    if LOCAL_PROMTOOL.is_file():
        return str(LOCAL_PROMTOOL)
    on_path = shutil.which("promtool")
    if on_path is None:
        missing("promtool", f"`make {LOCAL_PROMTOOL.relative_to(REPO)}` (or `make unit`)")
    return on_path


@pytest.fixture
def spine_metric_names(tmp_path: Path) -> set[str]:
    """What a running Spine exposes: bootstrapped with a remote embedder, so the breaker's
    series exist too (nothing is sent to that address)."""
    settings = Settings(data_dir=tmp_path, embedder_url="http://127.0.0.1:9/v1/embeddings")
    services = bootstrap(settings)
    try:
        registry: CollectorRegistry = services.metrics.registry
        return exposed_names(registry.collect())
    finally:
        services.close()


# -- promtool ---------------------------------------------------------------------------------


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses PromQL only inside rules: each query becomes one to be checked."""
    queries = dashboard_queries(load_dashboard())
    rules = []
    for index, (_, expr) in enumerate(queries):
        for variable, value in _GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
        # label_values() is Grafana's, not PromQL: its first argument is the query.
        expr = re.sub(r"^label_values\((.*?)(?:,\s*\w+)?\)$", r"\1", expr.strip())
        rules.append({"record": f"dashboard:query_{index}:check", "expr": expr})
    check = tmp_path / "dashboard-queries.yml"
    check.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = run(promtool, "check", "rules", check)

    assert result.returncode == 0, "\n".join(
        [result.stdout + result.stderr, *(f"query_{i}: {w}" for i, (w, _) in enumerate(queries))]
    )


# -- the rules themselves ---------------------------------------------------------------------


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in load_rules() if "alert" in rule}
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])

    assert alerts, "no alerts in the rules file"
    assert alerts - fired == set(), "alerts never seen firing in a test"
    assert alerts - quiet == set(), "alerts never seen quiet in a test"
    assert (fired | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for rule in load_rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]


def test_every_recorded_series_read_is_recorded() -> None:
    recorded = recorded_names()
    for where, expr in all_queries():
        _, reads = series_names(expr)
        assert reads <= recorded, f"{where} reads series no rule records: {reads - recorded}"


# -- the contract with src/spine/observability ------------------------------------------------


def test_every_metric_read_is_one_spine_exports(spine_metric_names: set[str]) -> None:
    unknown: dict[str, set[str]] = {}
    for where, expr in all_queries():
        metrics, _ = series_names(expr)
        if metrics - spine_metric_names:
            unknown[where] = metrics - spine_metric_names

    assert unknown == {}, "not exported by spine.observability.metrics.Metrics: " + "; ".join(
        f"{where}: {sorted(names)}" for where, names in unknown.items()
    )


def test_the_name_check_resolves_each_family_type() -> None:
    """The check above is only as good as the names it derives from a registry."""
    from prometheus_client import Counter, Gauge, Histogram

    registry = CollectorRegistry()
    Counter("spine_things", "", ["kind"], registry=registry)
    Histogram("spine_wait_seconds", "", registry=registry)
    Gauge("spine_depth", "", registry=registry)

    names = exposed_names(registry.collect())

    for expr in (
        'sum(rate(spine_things_total{kind="a"}[5m]))',
        "histogram_quantile(0.9, sum by (le) (rate(spine_wait_seconds_bucket[5m])))",
        "rate(spine_wait_seconds_sum[5m]) / rate(spine_wait_seconds_count[5m])",
        "max(spine_depth)",
    ):
        assert series_names(expr)[0] <= names, expr
    # A counter without _total, a histogram by its bare name, or an unknown one: none exist.
    for expr in ("rate(spine_things[5m])", "spine_wait_seconds", "spine_depth_total"):
        assert not series_names(expr)[0] <= names, expr


def test_series_names_ignore_label_values_and_variables() -> None:
    metrics, recorded = series_names(
        'slo:spine_error_ratio:rate1h{slo="spine_not_a_metric"} '
        '/ on (slo) spine_x_total{route=~"$route"}[$__rate_interval]'
    )

    assert metrics == {"spine_x_total"}
    assert recorded == {"slo:spine_error_ratio:rate1h"}


# -- the dashboard ----------------------------------------------------------------------------


def test_dashboard_is_importable_and_provisionable() -> None:
    dashboard = load_dashboard()

    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"]
    # Import through the UI asks for the input; file provisioning skips __inputs, so the
    # same name must also resolve as a template variable.
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"


def test_dashboard_panels_have_unique_ids_and_the_expected_rows() -> None:
    panels = dashboard_panels(load_dashboard())
    ids = [panel["id"] for panel in panels]

    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert {panel["title"] for panel in panels if panel["type"] == "row"} == ROWS


def test_every_dashboard_target_queries_something_that_exists() -> None:
    recorded = recorded_names()
    dashboard = load_dashboard()
    for panel in dashboard_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['id']} {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            metrics, reads = series_names(target["expr"])
            assert metrics or reads, f"{panel['title']!r} {target['refId']} reads no series"
            assert reads <= recorded, f"{panel['title']!r} reads unrecorded {reads - recorded}"
