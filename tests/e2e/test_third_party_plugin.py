"""A third-party plugin distribution, installed with pip, found through its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import serving
from tests.support.servers import http_json, running_sim

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gateway-pinned"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fixture distribution installed (wheel built by pip) into its own directory."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(FIXTURE),
        ],
        check=True,
        timeout=120,
    )
    return str(target)


def with_path(plugin_path: str) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [plugin_path, os.environ.get("PYTHONPATH")]))
    }


def test_plugins_command_lists_it(plugin_path: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **with_path(plugin_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "pinned\n  routing_strategies: pinned\n  routes: pinned-hello" in result.stdout


def test_a_config_uses_its_strategy_and_route(plugin_path: str, tmp_path: Path) -> None:
    with running_sim() as a, running_sim() as b:
        config = tmp_path / "gateway.yaml"
        config.write_text(f"""
models:
  - name: chat
    routing: {{strategy: pinned, params: {{backend: second}}}}
    backends:
      - {{url: "{a.url}", model: sim-model, name: first}}
      - {{url: "{b.url}", model: sim-model, name: second}}
""")
        with serving("--config", str(config), env=with_path(plugin_path)) as (_, url):
            for _ in range(3):
                status, headers, _ = http_json(
                    "POST",
                    f"{url}/v1/chat/completions",
                    {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert status == 200
                assert headers["x-gateway-backend"] == "second"
            assert http_json("GET", f"{url}/pinned/hello")[2] == {"hello": "from gateway-pinned"}
        assert "chat" not in a.stats()["requests"]
        assert b.stats()["requests"]["chat"] == 3


def test_it_can_be_disabled(plugin_path: str, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("""
plugins: {disabled: [pinned]}
models:
  - name: chat
    routing: {strategy: pinned, params: {backend: x}}
    backends: [{url: "http://127.0.0.1:9"}]
""")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **with_path(plugin_path)},
    )
    assert result.returncode == 1
    assert "models[0].routing.strategy: unknown routing strategy `pinned`" in result.stderr
