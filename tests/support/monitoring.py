"""Reading infra/'s dashboards and rules for the monitoring contract tests: every PromQL
expression (Grafana's variables substituted), the series each selects, and the checks that
panels have queries and alerts have promtool test cases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from tests.support.exporters import Exported

# Grafana's built-in interval variables, as a query would see them.
_GRAFANA_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)
MADE_BY_PROMETHEUS = frozenset({"up"})
"""Series Prometheus writes itself for every target (not an exporter's)."""
ADDED_BY_PROMETHEUS = frozenset({"job", "instance"})
"""Labels Prometheus adds to every scraped series."""


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a file, and where it is (for the failure message)."""

    where: str
    expr: str
    in_rules: bool = False


@dataclass(frozen=True)
class Selector:
    """A series selector of a query: the metric name and the label names it matches on."""

    name: str
    labels: frozenset[str]


def grafana_to_promql(expr: str) -> str:
    """``expr`` as Prometheus would receive it: interval variables become durations, and other
    template variables inside label values become ``.*`` (one outside a string is left as is,
    so that the parse fails and says where)."""

    def interval(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return _GRAFANA_INTERVALS.get(name, match.group(0))

    expr = _VARIABLE.sub(interval, expr)
    return _STRING.sub(lambda m: _VARIABLE.sub(".*", m.group(0)), expr)


def selectors(expr: str) -> list[Selector]:
    """The series selectors of ``expr``.

    Raises:
        ValueError: ``expr`` does not parse.
    """
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            name = node.name or next(
                (m.value for m in matchers if m.name == "__name__" and m.op.name == "Equal"), ""
            )
            labels = frozenset(m.name for m in matchers if m.name != "__name__")
            found.append(Selector(name, labels))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def dashboard_queries(path: Path) -> Iterator[Query]:
    """Every expression of a dashboard: panel targets and query variables."""
    board = json.loads(path.read_text())
    for panel in panels(board):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield Query(f"{path.name}: panel {panel.get('title')!r}", target["expr"])
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query.get("query", "") if isinstance(query, dict) else query
            inner = _LABEL_VALUES.match(text)
            yield Query(f"{path.name}: variable {variable['name']!r}", inner[1] if inner else text)


def rule_queries(path: Path) -> Iterator[Query]:
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            yield Query(f"{path.name}: {name}", rule["expr"], in_rules=True)


def recorded(rule_files: list[Path]) -> set[str]:
    """The series recording rules write."""
    return {
        rule["record"]
        for path in rule_files
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def unknown_series(
    queries: list[Query], exported: Exported, recorded: Collection[str] = ()
) -> list[str]:
    """What is wrong with ``queries``: an expression that does not parse, a metric no exporter
    writes (series of ``recorded`` allowed in rules), a label its samples never carry (checked
    where samples were seen)."""
    problems = []
    for query in queries:
        try:
            found = selectors(grafana_to_promql(query.expr))
        except ValueError as exc:
            problems.append(f"{query.where}: does not parse ({exc}): {query.expr}")
            continue
        for selector in found:
            name = selector.name
            if name in MADE_BY_PROMETHEUS or (query.in_rules and name in recorded):
                continue
            if name not in exported.names:
                problems.append(f"{query.where}: no exporter writes `{name}`")
                continue
            seen = exported.labels.get(name)
            extra = selector.labels - ADDED_BY_PROMETHEUS - seen if seen is not None else set()
            if extra:
                problems.append(f"{query.where}: `{name}` has no label {sorted(extra)}")
    return problems


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panels_without_queries(board: dict[str, Any]) -> list[str]:
    """Panels (rows and text panels aside) with no target that has an expression."""
    return [
        str(panel.get("title"))
        for panel in panels(board)
        if panel.get("type") not in ("row", "text")
        and not any(t.get("expr", "").strip() for t in panel.get("targets", []))
    ]


def alerts_without_cases(rule_files: list[Path], test_files: list[Path]) -> list[str]:
    """Alerts lacking a promtool case where they fire, or one where they stay silent."""
    firing: set[str] = set()
    silent: set[str] = set()
    for path in test_files:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    missing = []
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                name = rule["alert"]
                if name not in firing:
                    missing.append(f"{name}: no case where it fires")
                if name not in silent:
                    missing.append(f"{name}: no case where it stays silent")
    return missing
