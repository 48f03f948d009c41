"""infra/prometheus and infra/grafana against the real exporters and promtool.

- ``promtool check config`` / ``check rules`` / ``test rules`` pass, and every alert has a
  promtool case where it fires and one where it stays silent;
- every PromQL expression of the dashboards and rules parses (Grafana's variables substituted)
  and selects only series that the gateway, the simulator or the node agent really export, read
  from their ``/metrics`` while they run (tests/support/exporters.py), with label names their
  samples carry;
- every dashboard panel has a query, on the ``${datasource}`` variable, with
  ``$__rate_interval`` (or ``$__range``) windows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.exporters import Exported, exported_by_all
from tests.support.monitoring import (
    Query,
    alerts_without_cases,
    dashboard_queries,
    grafana_to_promql,
    panels,
    panels_without_queries,
    recorded,
    rule_queries,
    unknown_series,
)

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (scripts/test.sh installs Debian's prometheus)")
    return subprocess.run(
        [binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    found = exported_by_all(tmp_path_factory.mktemp("exporters"))
    everything = Exported()
    for part in found.values():
        everything = everything.merged(part)
    # Each exporter really answered (a fixture that scraped nothing would let everything pass).
    assert "gateway_requests_total" in found["gateway"].labels
    assert "vllm:kv_cache_usage_perc" in found["simulator"].labels
    assert "DCGM_FI_DEV_GPU_TEMP" in found["node agent"].labels
    return everything


def test_the_layout_is_complete() -> None:
    assert [p.name for p in RULES] == ["gateway.yml", "gpu.yml", "vllm.yml"]
    assert [p.name for p in RULE_TESTS] == ["gateway.test.yml", "gpu.test.yml", "vllm.test.yml"]
    assert [p.name for p in DASHBOARDS] == ["gateway.json", "gpu.json", "vllm.json"]


def test_promtool_checks_the_config_and_the_rules() -> None:
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert f"SUCCESS: {len(RULES)} rule files found" in config.stdout
    rules = promtool("check", "rules", *(str(p) for p in RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_alerts_fire_and_stay_silent_as_their_promtool_tests_say() -> None:
    result = promtool("test", "rules", *(str(p) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_silent(
    tmp_path: Path,
) -> None:
    assert alerts_without_cases(RULES, RULE_TESTS) == []
    # The check itself: an alert with no case, and one that is only ever seen firing.
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [{"alert": "A", "expr": "1"}, {"alert": "B", "expr": "1"}],
                    }
                ]
            }
        )
    )
    cases = tmp_path / "cases.yml"
    case = {"eval_time": "1m", "alertname": "B", "exp_alerts": [{"exp_labels": {}}]}
    cases.write_text(yaml.safe_dump({"tests": [{"alert_rule_test": [case]}]}))
    assert alerts_without_cases([rules], [cases]) == [
        "A: no case where it fires",
        "A: no case where it stays silent",
        "B: no case where it stays silent",
    ]


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_hint() -> None:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
                    assert set(rule["annotations"]) == {"summary", "description", "runbook"}


def test_the_scrape_jobs_are_those_the_rules_and_dashboards_name() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"gateway", "vllm", "gpu-node"}
    target_down = next(q for p in RULES for q in rule_queries(p) if "GatewayTargetDown" in q.where)
    assert 'job=~"gateway|vllm|gpu-node"' in target_down.expr
    for job in jobs:
        target_file = PROMETHEUS / "targets" / f"{job}.json"
        assert json.loads(target_file.read_text())[0]["targets"], job


def test_every_expression_parses_and_selects_only_exported_series(exported: Exported) -> None:
    queries = [q for p in DASHBOARDS for q in dashboard_queries(p)]
    queries += [q for p in RULES for q in rule_queries(p)]
    assert len(queries) > 100
    assert unknown_series(queries, exported, recorded(RULES)) == []


def test_the_series_check_finds_what_is_wrong(exported: Exported) -> None:
    """The check itself fails on a misspelt metric, a label no sample has, a parse error, a
    recorded series outside the rules, and a variable outside a label value."""
    bad = [
        Query("a", "rate(gateway_request_total[$__rate_interval])"),
        Query("b", 'sum(gateway_requests_total{model_name="x"})'),
        Query("c", "sum(rate(gateway_requests_total[5m])"),
        Query("d", "model:gateway_requests:rate5m"),
        Query("e", "sum by ($label) (gateway_requests_total)"),
    ]
    problems = unknown_series(bad, exported, recorded(RULES))
    assert [p.split(":", 1)[0] for p in problems] == ["a", "b", "c", "d", "e"], problems
    assert "no exporter writes `gateway_request_total`" in problems[0]
    assert "has no label ['model_name']" in problems[1]


def test_grafana_variables_are_substituted_as_prometheus_would_see_them() -> None:
    expr = 'sum(rate(x_total{model=~"$model",i=~"${instance}"}[$__rate_interval])) / $__range'
    assert grafana_to_promql(expr) == 'sum(rate(x_total{model=~".*",i=~".*"}[5m])) / 1h'


def test_every_panel_has_a_query() -> None:
    for path in DASHBOARDS:
        assert panels_without_queries(json.loads(path.read_text())) == [], path.name
    board: dict[str, Any] = {
        "panels": [
            {"type": "row", "title": "r", "panels": [{"type": "stat", "title": "hidden"}]},
            {"type": "timeseries", "title": "empty", "targets": [{"expr": " "}]},
            {"type": "timeseries", "title": "ok", "targets": [{"expr": "up"}]},
        ]
    }
    assert panels_without_queries(board) == ["hidden", "empty"]


def test_dashboards_read_the_datasource_variable_and_rate_interval_windows() -> None:
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["schemaVersion"] >= 39
        uids.add(board["uid"])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [panel["id"] for panel in panels(board)]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == DATASOURCE, (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, (path.name, panel["title"])
                windows = re.findall(r"\[([^\]]+)\]", target["expr"])
                assert set(windows) <= {"$__rate_interval", "$__range"}, (path.name, windows)
    assert len(uids) == len(DASHBOARDS)


def test_panels_fit_the_grid_without_overlapping() -> None:
    for path in DASHBOARDS:
        taken: dict[tuple[int, int], int] = {}
        for panel in panels(json.loads(path.read_text())):
            grid, own = panel["gridPos"], panel["id"]
            assert grid["x"] + grid["w"] <= 24, (path.name, panel["title"])
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert taken.setdefault((x, y), own) == own, (path.name, panel["title"])


def test_provisioning_loads_the_dashboards_and_a_prometheus_datasource() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert [s["type"] for s in sources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/gateway.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
