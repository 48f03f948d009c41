"""The `gateway` command as an operator runs it: real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import GATEWAY, free_port, serving
from tests.support.servers import Sim, http_json, running_sim

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, sim: Sim, extra: str = "") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
models:
  - name: chat
    backends:
      - url: {sim.url}
        model: sim-model
{extra}""")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEWAY, *args], capture_output=True, text=True, timeout=60)


def test_check_accepts_a_valid_file(tmp_path: Path, sim: Sim) -> None:
    result = run("check", str(write_config(tmp_path, sim)))
    assert result.returncode == 0, result.stderr
    assert "OK (1 model groups, 1 backends)" in result.stdout


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("server:\n  port: high\n", "server.port"),
        ("server:\n  prot: 1\n", "server.prot"),
        ("    routing:\n      strategy: fastest\n", "models[0].routing.strategy"),
    ],
)
def test_check_names_the_file_and_field(tmp_path: Path, sim: Sim, extra: str, field: str) -> None:
    path = write_config(tmp_path, sim, extra)
    result = run("check", str(path))
    assert result.returncode == 1
    assert f"{path}: {field}:" in result.stderr


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path, sim: Sim) -> None:
    result = run(
        "serve",
        "--config",
        str(write_config(tmp_path, sim)),
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
    )
    assert result.returncode == 2
    assert "--allow-unauthenticated" in result.stderr


NO_BACKENDS = {
    "GATEWAY_VLLM_URLS": "",
    "GATEWAY_CONFIG": "",
    "OPENAI_API_KEY": "",
    "ANTHROPIC_API_KEY": "",
}


def test_default_config_serves_simulators(tmp_path: Path) -> None:
    env = NO_BACKENDS
    with serving(env=env) as (proc, url):
        status, _, models = http_json("GET", f"{url}/v1/models")
        assert status == 200
        assert [m["id"] for m in models["data"]] == ["sim-chat"]
        with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            reply = client.chat.completions.create(
                model="sim-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
        assert reply.choices[0].message.content
        proc.terminate()
        banner = proc.communicate(timeout=20)[0]
    assert "started 2 simulator replicas" in banner
    assert "docs/configuration.md" in banner


def test_environment_backends_are_discovered(sim: Sim) -> None:
    with serving(env={**NO_BACKENDS, "GATEWAY_VLLM_URLS": sim.url}) as (_, url):
        assert [m["id"] for m in http_json("GET", f"{url}/v1/models")[2]["data"]] == ["sim-model"]


def test_cloud_keys_in_the_environment_add_their_models() -> None:
    with running_sim(models=["claude-sim"]) as claude, running_sim(models=["gpt-sim"]) as gpt:
        env = {
            **NO_BACKENDS,
            "ANTHROPIC_API_KEY": "sk-ant",
            "ANTHROPIC_BASE_URL": claude.url,
            "OPENAI_API_KEY": "sk-oai",
            "OPENAI_BASE_URL": f"{gpt.url}/v1",
            "GATEWAY_OPENAI_MODELS": "gpt-sim",
        }
        with (
            serving(env=env) as (_, url),
            openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        ):
            assert sorted(m.id for m in client.models.list()) == ["claude-sim", "gpt-sim"]
            for model in ("claude-sim", "gpt-sim"):
                reply = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3
                )
                assert reply.choices[0].message.content
        assert claude.stats()["recent"][-1]["path"] == "/v1/messages"
        assert gpt.stats()["recent"][-1]["path"] == "/v1/chat/completions"


def test_sigterm_lets_an_inflight_stream_finish(tmp_path: Path) -> None:
    with (
        running_sim(step_base_ms=40) as sim,
        serving("--config", str(write_config(tmp_path, sim))) as (proc, url),
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
    ):
        stream = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "a long story"}],
            max_tokens=30,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [next(iter(stream))]
        proc.send_signal(signal.SIGTERM)
        chunks.extend(stream)
        assert chunks[-1].usage is not None
        content = [c for c in chunks if c.choices and c.choices[0].delta.content]
        assert chunks[-1].usage.completion_tokens == len(content) > 1
        # uvicorn re-raises SIGTERM once the graceful shutdown is done (the Unix convention).
        assert proc.wait(20) in (0, -signal.SIGTERM)
        assert sim.stats()["completed"] == 1


def test_workers_report_totals_across_processes(tmp_path: Path, sim: Sim) -> None:
    config = write_config(tmp_path, sim)
    with serving("--config", str(config), "--workers", "2") as (_, url):
        for _ in range(20):
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{url}/v1/chat/completions",
                    method="POST",
                    data=b'{"model":"chat","messages":[{"role":"user","content":"x"}]}',
                    headers={"content-type": "application/json", "connection": "close"},
                ),
                timeout=30,
            ) as resp:
                assert resp.status == 200
        # Six fresh connections: scrapes land on both workers, and each must report all 20.
        for _ in range(6):
            with urllib.request.urlopen(
                urllib.request.Request(f"{url}/metrics", headers={"connection": "close"}),
                timeout=30,
            ) as resp:
                text = resp.read().decode()
            total = sum(
                s.value
                for f in text_string_to_metric_families(text)
                if f.name == "gateway_requests"
                for s in f.samples
                if s.name == "gateway_requests_total"
            )
            assert total == 20
    assert sim.stats()["requests"]["chat"] == 20
