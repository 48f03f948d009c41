"""infra/kubernetes renders with kustomize (offline) in every overlay; the built-in kinds validate
against Kubernetes' own schemas (kubernetes-validate, strict: unknown fields fail); and the
manifests keep what the issue asks of them: probes on the gateway's real routes, non-root and
read-only pods, a grace period longer than the gateway's shutdown, several replicas, secrets
only by reference, the Dockerfile's image, and configs the gateway's own loader accepts.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from gateway import cli
from gateway.config_loader import load_settings
from gateway.settings import ServerSettings, Settings
from gateway.settings_node import NodeSettings
from tests.support.dockerfile import parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "infra" / "kubernetes"
RULES = ROOT / "infra" / "prometheus" / "rules"
OVERLAYS = [
    "base",
    "overlays/redis",
    "overlays/node-agent",
    "overlays/prometheus-operator",
    "overlays/dev",
    "overlays/fleet",
]
# The oldest Kubernetes the manifests claim (the preStop `sleep` action is on by default from
# 1.30) and the newest kubernetes-validate knows.
VERSIONS = ["1.30", kubernetes_validate.latest_version()]
# The Prometheus operator's kinds: CRDs, which kubernetes-validate has no schema for.
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PEPPER|REDIS_URL")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
# What a pod's environment would hold where a stand-in must look the part.
STAND_INS = {"REDIS_URL": "redis://redis:6379/0", "POD_IP": "10.0.0.7"}

Doc = dict[str, Any]


def _render(overlay: str) -> list[Doc]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {overlay: _render(overlay) for overlay in OVERLAYS}


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _containers(doc: Doc) -> Iterator[Doc]:
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in WORKLOADS]


def _config_map_file(docs: list[Doc], pod: Doc, mount_path: str, file: str) -> str:
    """The text of ``file`` in the ConfigMap ``pod`` mounts at ``mount_path``."""
    spec = pod["spec"]["template"]["spec"]
    (mount,) = [
        m for c in spec["containers"] for m in c["volumeMounts"] if m["mountPath"] == mount_path
    ]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    config_map = _one(docs, "ConfigMap", volume["configMap"]["name"])
    text: str = config_map["data"][file]
    return text


def _environment(container: Doc) -> dict[str, str]:
    """The container's environment: its values, and stand-ins for what it takes from Secrets
    and the pod's fields."""
    return {
        e["name"]: e.get("value", STAND_INS.get(e["name"], f"stand-in-{e['name'].lower()}-value"))
        for e in container["env"]
    }


def _write(docs: list[Doc], pod: Doc, mount_path: str, file: str, directory: Path) -> Path:
    """The mounted config file, written to ``directory`` for the loader (its name kept, so
    errors name it)."""
    out = directory / file
    out.write_text(_config_map_file(docs, pod, mount_path, file))
    return out


def test_the_overlay_list_is_complete() -> None:
    found = {
        str(p.parent.relative_to(KUBERNETES))
        for p in KUBERNETES.rglob("kustomization.yaml")
        if yaml.safe_load(p.read_text())["kind"] == "Kustomization"
    }
    assert found == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    assert _one(docs, "Deployment", "gateway")
    for doc in docs:
        assert doc["metadata"]["name"], doc
        if doc["kind"] in CRD_KINDS:
            # no offline schema for a CRD: its identity and a spec, at least
            assert doc["apiVersion"] == CRD_KINDS[doc["kind"]]
            assert doc["spec"], doc["metadata"]["name"]
            continue
        for version in VERSIONS:
            # raises on an invalid object, and on a kind it has no schema for
            kubernetes_validate.validate(doc, version, strict=True)


def test_validation_rejects_an_unknown_field(rendered: dict[str, list[Doc]]) -> None:
    deployment = copy.deepcopy(_one(rendered["base"], "Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_bounded(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for workload in _workloads(rendered[overlay]):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in _containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_deployment(
    rendered: dict[str, list[Doc]], overlay: str, tmp_path: Path
) -> None:
    docs = rendered[overlay]
    deployment = _one(docs, "Deployment", "gateway")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = _write(docs, deployment, "/etc/gateway", "gateway.yaml", tmp_path)
    assert {"name": "GATEWAY_CONFIG", "value": "/etc/gateway/gateway.yaml"} in container["env"]
    settings = load_settings(path, env=_environment(container))
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert port == settings.server.port
    probes = {
        kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    assert deployment["spec"]["replicas"] >= 2
    hpa = _one(docs, "HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert 2 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])

    # On SIGTERM uvicorn lets requests and streams finish for shutdown_grace_s, then the
    # app's shutdown drains its off-path writes for as long again (gateway/assembly.py's
    # Background(drain_s=...)); the preStop sleep comes before both.
    grace = max(settings.server.shutdown_grace_s, ServerSettings().shutdown_grace_s)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + 2 * grace

    image = parse_dockerfile(ROOT / "Dockerfile")
    user = image.stage("runtime").last("USER").text.split(":")
    assert [pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]] == [
        int(part) for part in user
    ]
    # every path the process writes is a volume: the image's WORKDIR (data_dir) and /tmp
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    workdir = image.stage("runtime").last("WORKDIR").text
    assert {workdir, "/tmp"} <= mounts
    assert Path(settings.governance.data_dir).is_relative_to(workdir)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pdb_and_hpa_select_the_gateway(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    pods = {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in _workloads(docs)
    }
    ports = {
        w["metadata"]["name"]: {p["name"] for c in _containers(w) for p in c.get("ports", [])}
        for w in _workloads(docs)
    }

    def selected(selector: dict[str, str]) -> list[str]:
        return [name for name, labels in pods.items() if selector.items() <= labels.items()]

    for service in (d for d in docs if d["kind"] == "Service"):
        (target,) = selected(service["spec"]["selector"])  # exactly one workload behind it
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports[target], service["metadata"]["name"]
    pdb = _one(docs, "PodDisruptionBudget", "gateway")
    assert selected(pdb["spec"]["selector"]["matchLabels"]) == ["gateway"]
    agents = any(d["kind"] == "DaemonSet" for d in docs)
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        watched = [
            s
            for s in docs
            if s["kind"] == "Service" and selector.items() <= s["metadata"]["labels"].items()
        ]
        # the node agents' monitor finds their Service only where they run too
        if monitor["metadata"]["name"] == "gateway" or agents:
            assert watched, monitor["metadata"]["name"]
        for service in watched:
            names = {p["name"] for p in service["spec"]["ports"]}
            assert {e["port"] for e in monitor["spec"]["endpoints"]} <= names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_only_referenced(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"]  # made by the operator, never here
    for workload in _workloads(docs):
        for container in _containers(workload):
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, env
                    assert set(env["valueFrom"]) == {"secretKeyRef"}, env
    for config_map in (d for d in docs if d["kind"] == "ConfigMap"):
        for text in config_map["data"].values():
            for key, value in _secret_fields(yaml.safe_load(text)):
                assert VARIABLE.fullmatch(value), f"{key}: {value} is not ${{VAR}}"


def _secret_fields(node: Any) -> Iterator[tuple[str, str]]:
    """Every (key, value) of the config that holds a secret: keys and Redis URLs."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"api_key", "master_key"} or (
                key == "url" and isinstance(value, str) and value.startswith("redis")
            ):
                yield key, value  # a literal redis:// URL fails: it may hold a password
            else:
                yield from _secret_fields(value)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_fields(item)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configs_name_only_variables_their_pods_set(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    for workload in _workloads(docs):
        spec = workload["spec"]["template"]["spec"]
        mounted = {
            v["name"]: v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v
        }
        for container in _containers(workload):
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in mounted:
                    continue
                config_map = _one(docs, "ConfigMap", mounted[mount["name"]])
                for text in config_map["data"].values():
                    needed = {m.group(1) for m in VARIABLE.finditer(text) if not m.group(2)}
                    assert needed <= set(_environment(container)), config_map["metadata"]["name"]


def test_images_are_the_dockerfiles_tags(rendered: dict[str, list[Doc]]) -> None:
    header = (ROOT / "Dockerfile").read_text()
    tags = set(re.findall(r"docker build -t (\S+)", header))
    version = parse_dockerfile(ROOT / "Dockerfile").stage("runtime").last("LABEL").pairs()
    assert tags == {
        f"gateway:{version['org.opencontainers.image.version']}",
        f"gateway:{version['org.opencontainers.image.version']}-vllm",
    }
    seen = set()
    for docs in rendered.values():
        for workload in _workloads(docs):
            for container in _containers(workload):
                if not container["image"].startswith("redis:"):
                    seen.add(container["image"])
    assert seen == tags  # the -vllm one on the node agents


def _gateway_check(
    path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """``gateway check PATH`` (the loader, then every provider, strategy and store built without
    starting) in this process, in the pod's environment; returns what it printed."""
    for name in [n for n in os.environ if n.startswith("GATEWAY")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status = cli.main(["check", str(path)])
    out: str = capsys.readouterr().out
    assert status == 0, out
    return out


@pytest.mark.parametrize("overlay", ["base", "overlays/dev"])
def test_the_gateway_config_passes_gateway_check(
    rendered: dict[str, list[Doc]],
    overlay: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = rendered[overlay]
    deployment = _one(docs, "Deployment", "gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    path = _write(docs, deployment, "/etc/gateway", "gateway.yaml", tmp_path)
    out = _gateway_check(path, _environment(container), monkeypatch, capsys)
    assert re.search(r": OK \([1-9]\d* model groups", out), out
    settings = load_settings(path, env=_environment(container))
    _assert_fleet_state_is_shared(settings)


def _assert_fleet_state_is_shared(settings: Settings) -> None:
    """Nothing a fleet must share stays on one replica: Redis for all of it."""
    governance = settings.governance
    assert governance.key_store.backend == governance.limiter.backend == "redis"
    assert [s.backend for s in governance.usage.sinks or []] == ["redis"]
    assert settings.store.backend == "redis"
    assert [t.backend for t in settings.cache.tiers] == ["memory", "redis"]
    assert settings.control.store is not None
    assert settings.control.store.backend == "redis"
    assert settings.auth.master_key


def test_the_node_agent(
    rendered: dict[str, list[Doc]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = rendered["overlays/node-agent"]
    agent = _one(docs, "DaemonSet", "gateway-node")
    pod = agent["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert "hostPID" not in pod
    assert "hostNetwork" not in pod
    assert container["args"][0] == "node"
    config_path = container["args"][container["args"].index("--config") + 1]
    path = _write(docs, agent, str(Path(config_path).parent), Path(config_path).name, tmp_path)
    env = _environment(container)
    _gateway_check(path, env, monkeypatch, capsys)
    node = load_settings(path, env=env).node
    assert node is not None
    assert node.host == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == node.port
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    # every engine drains and stops (concurrently) before the agent exits
    default = NodeSettings()
    longest = max(node.drain_s + node.stop_timeout_s, default.drain_s + default.stop_timeout_s)
    assert pod["terminationGracePeriodSeconds"] > longest


def test_prometheus_rules_are_the_rule_files(rendered: dict[str, list[Doc]]) -> None:
    if not RULES.is_dir():
        pytest.skip("infra/prometheus/rules is not in this checkout")
    docs = rendered["overlays/prometheus-operator"]
    expected = {
        f"gateway-rules-{p.stem}": yaml.safe_load(p.read_text())["groups"]
        for p in sorted(RULES.glob("*.yml"))
    }
    found = {
        d["metadata"]["name"]: d["spec"]["groups"] for d in docs if d["kind"] == "PrometheusRule"
    }
    assert found == expected, "run: python scripts/sync-prometheus-rules.py"
