"""A real Prometheus (Debian's ``prometheus``, beside promtool) scraping a real gateway, its
simulator and a node agent with infra/prometheus's jobs and rules: every target is up under its
job name, every rule evaluates without error, and every dashboard query runs without error.

promql-parser (tests/contract/test_monitoring.py) checks syntax and names; only an evaluation
finds what depends on the data, such as a division matching many series to many.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.exporters import Fleet, running_exporters
from tests.support.monitoring import dashboard_queries, grafana_to_promql
from tests.support.processes import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
DASHBOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of an API answer; raises AssertionError with Prometheus's error."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
                return json.loads(resp.read())["data"]
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{path} {params}: {err.read().decode()}") from None

    def ready(self) -> bool:
        """Whether it serves queries (``/-/ready`` answers 503 while it starts)."""
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=10) as resp:
            return bool(resp.status == 200)

    def wait(self, what: str, ready: Any, timeout_s: float = 30.0) -> None:
        """Poll until ``ready()`` holds (bounded); fails naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if ready():
                    return
            except OSError:
                pass  # not listening, or not ready, yet
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: never {what}")
            time.sleep(0.2)


def config_for(fleet: Fleet) -> dict[str, Any]:
    """infra/prometheus/prometheus.yml with the fleet's targets instead of file discovery, a
    1 s scrape and evaluation interval, and the rule files by absolute path."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {"gateway": fleet.gateway, "vllm": fleet.simulator, "gpu-node": fleet.node_agent}
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in sorted((PROMETHEUS / "rules").glob("*.yml"))]
    for job in config["scrape_configs"]:
        job.pop("file_sd_configs")
        job.pop("scrape_interval", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]].split("//", 1)[1]]}]
    return config


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (scripts/test.sh installs Debian's prometheus)")
    with running_exporters(tmp_path) as fleet:
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config_for(fleet)))
        port = free_port()
        with (tmp_path / "prometheus.log").open("w") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            server = Prometheus(f"http://127.0.0.1:{port}")
            server.wait("ready", server.ready)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_prometheus_scrapes_the_fleet_evaluates_the_rules_and_runs_the_dashboards(
    prometheus: Prometheus,
) -> None:
    def targets() -> dict[str, str]:
        active = prometheus.api("targets")["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    prometheus.wait("scraped every target", lambda: set(targets().values()) == {"up"})
    assert targets() == {"gateway": "up", "vllm": "up", "gpu-node": "up"}

    def rules() -> list[dict[str, Any]]:
        return [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]

    never = "0001-01-01T00:00:00Z"  # a rule's lastEvaluation before its first
    prometheus.wait(
        "evaluated every rule",
        lambda: len(rules()) == 27 and all(r["lastEvaluation"] != never for r in rules()),
    )
    failing = [(r["name"], r.get("lastError")) for r in rules() if r["health"] != "ok"]
    assert failing == []
    # Data flowed end to end: the gateway's requests, the engine's tokens, the GPUs, and a
    # recorded rate (once two scrapes of the counters are in).
    for expr in (
        "sum(gateway_requests_total)",
        "sum(vllm:generation_tokens_total)",
        "count(DCGM_FI_DEV_GPU_TEMP)",
        "model:gateway_requests:rate5m",
    ):
        prometheus.wait(
            f"answered {expr}", lambda e=expr: prometheus.api("query", query=e)["result"]
        )

    queries = [q for path in DASHBOARDS for q in dashboard_queries(path)]
    assert len(queries) > 100
    for query in queries:
        prometheus.api("query", query=grafana_to_promql(query.expr))  # raises on an error
    # What an evaluation error looks like (the parse is fine; the data makes it fail).
    with pytest.raises(AssertionError, match=r"many-to-many|duplicate series"):
        prometheus.api("query", query="gateway_requests_total / on () gateway_requests_total")
