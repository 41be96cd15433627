"""The monitoring files (deploy/monitoring): alert rules, their PrometheusRule, the Grafana
dashboard.

- every expression of the dashboard and of the rules parses as PromQL (promql-parser) and
  names only metrics the service exports, collected from a real ``Metrics()`` registry (plus
  the planned speed-to-lead histogram);
- every alert has a promtool unit test that fires it and one that keeps it quiet (the tests
  themselves run in ``make alerts`` and below, when promtool is installed);
- the PrometheusRule holds exactly the groups of the plain rules file.

``python -m tests.deploy.test_monitoring`` prints the PrometheusRule (``make monitoring-files``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = ROOT / "tests" / "deploy" / "alerts_test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

PLANNED = {"intake_speed_to_lead_seconds": "histogram"}
"""Metrics the rules and dashboard use before the service exports them: the speed-to-lead
histogram (receipt → Close task created, label ``source``)."""

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}

# Grafana's variables, as a query would carry them once Grafana filled them in.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "6h",
    "$namespace": ".*",
    "$source": ".*",
}


def exported_series() -> set[str]:
    """The sample names a ``Metrics()`` registry exports, and those of the planned metrics."""
    families = {family.name: family.type for family in Metrics().registry.collect()}
    families.update(PLANNED)
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}


def selectors(node: Any) -> Iterator[str]:
    """The metric names an expression's vector selectors name."""
    if isinstance(node, promql_parser.VectorSelector):
        assert node.name, f"a selector without a metric name: {node}"
        yield node.name
        return
    for attribute in ("expr", "lhs", "rhs", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield from selectors(child)
    for argument in getattr(node, "args", None) or []:
        yield from selectors(argument)


def metrics_of(expr: str) -> set[str]:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return set(selectors(promql_parser.parse(expr)))


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule that carries the plain rules file's groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "lead-intake"},
        "spec": {"groups": yaml.safe_load(RULES.read_text())["groups"]},
    }


# --- tests -----------------------------------------------------------------------------------


def test_selector_walk_finds_every_metric() -> None:
    """The walk below is not blind: it finds metrics nested in functions, aggregations,
    binary operations, subqueries and offsets."""
    expr = (
        "histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) / on() group_left"
        " max_over_time(b[10m:1m] offset 5m) or -c{x='y'} and absent(d)"
    )
    assert metrics_of(expr) == {"a_bucket", "b", "c", "d"}
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(a[5m])")


def test_exported_series_come_from_the_registry() -> None:
    series = exported_series()
    assert {"intake_http_requests_total", "intake_stream_length"} <= series
    assert "intake_close_request_duration_seconds_bucket" in series
    assert "intake_no_such_metric" not in series


def test_dashboard_panels_parse_and_name_only_exported_metrics() -> None:
    exported = exported_series()
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used: set[str] = set()
    for title, expr in exprs:
        names = metrics_of(expr)
        assert names, f"{title}: {expr} names no metric"
        unknown = names - exported
        assert not unknown, f"panel {title!r} uses metrics the service does not export: {unknown}"
        used |= names
    # What an operator looks for: intake, states, queue, Close, pauses, speed, dead letters.
    for wanted in (
        "intake_http_requests_total",
        "intake_submissions_total",
        "intake_stream_length",
        "intake_stream_oldest_entry_age_seconds",
        "intake_close_requests_total",
        "intake_delivery_paused",
        "intake_speed_to_lead_seconds_bucket",
        "intake_dead_letters",
    ):
        assert wanted in used, f"the dashboard shows nothing of {wanted}"


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "Lead Intake"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "source"} <= variables
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_alert_rules_name_only_exported_metrics() -> None:
    exported = exported_series()
    for rule in rules():
        unknown = metrics_of(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']} uses unknown metrics {unknown}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_every_alert_has_a_firing_and_a_quiet_test() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules()}
    assert alerts - firing == set(), f"never fired by a test: {alerts - firing}"
    assert alerts - quiet == set(), f"never kept quiet by a test: {alerts - quiet}"
    assert (firing | quiet) <= alerts, "a test names an alert that does not exist"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_checks_and_tests_the_rules() -> None:
    for command in (
        ["promtool", "check", "rules", str(RULES)],
        ["promtool", "test", "rules", str(RULE_TESTS)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_prometheusrule_carries_the_rules_file() -> None:
    shipped = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert shipped == prometheus_rule(), (
        "deploy/monitoring/prometheusrule.yaml differs from alerts.yaml: make monitoring-files"
    )


def test_the_dashboard_configmap_carries_the_file() -> None:
    spec = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    [generator] = spec["configMapGenerator"]
    assert generator["files"] == [DASHBOARD.name]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    assert re.fullmatch(r"[a-z0-9-]+", generator["name"])


if __name__ == "__main__":
    sys.stdout.write(
        "# Generated from alerts.yaml by `make monitoring-files`: edit alerts.yaml, not this.\n"
    )
    yaml.safe_dump(prometheus_rule(), sys.stdout, sort_keys=False, width=100)
