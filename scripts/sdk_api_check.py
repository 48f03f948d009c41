"""Run openai-python's generated API tests (``tests/api_resources``) against the gateway.

Those tests send every parameter of the spec and expect a spec-shaped answer; they are written
for a mock server, so the ones that name objects that were never created (``resp_677...``,
``completion_id``) are expected to get 404 here. The gateway runs in process, in front of the
simulator, serving each model name the tests use.

Usage: python scripts/sdk_api_check.py /path/to/openai-python [pytest args...]
(a checkout of github.com/openai/openai-python; its tests are read from there, never copied
into this repository). Needs only the dev environment (``bash scripts/test.sh`` sets it up).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENDPOINT_TESTS = [
    "tests/utils.py",
    "tests/api_resources/test_responses.py",
    "tests/api_resources/responses/test_input_items.py",
    "tests/api_resources/chat/test_completions.py",
    "tests/api_resources/chat/completions/test_messages.py",
    "tests/api_resources/test_completions.py",
    "tests/api_resources/test_embeddings.py",
    "tests/api_resources/test_models.py",
]
CONFTEST = """
from __future__ import annotations

import tempfile

import pytest
from gateway_sim.app import SimConfig, create_sim_app
from openai import OpenAI

from gateway.app import create_app
from gateway.config_loader import settings_from_mapping
from gateway.server import BackgroundServer

MODELS = ["gpt-4o-mini", "gpt-3.5-turbo-instruct", "gpt-5.1", "gpt-5.4", "gpt-5.6-sol", "model",
          "text-embedding-3-small"]
pytest.register_assert_rewrite("tests.utils")
_sim = BackgroundServer(create_sim_app(SimConfig(models=["sim-model"]))).start()
_config = {
    "models": [{"name": m, "backends": [{"url": _sim.url, "model": "sim-model"}]} for m in MODELS],
    "store": {"backend": "sqlite", "options": {"path": f"{tempfile.mkdtemp()}/r.sqlite3"}},
}
_gateway = BackgroundServer(create_app(settings_from_mapping(_config, "sdk-api-check"))).start()
base_url = f"{_gateway.url}"


@pytest.fixture(scope="session")
def client(request: pytest.FixtureRequest):
    strict = getattr(request, "param", True)
    with OpenAI(base_url=f"{base_url}/v1", api_key="My API Key", max_retries=0,
                _strict_response_validation=strict) as c:
        yield c
"""


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(sys.argv[1])
    work = Path(tempfile.mkdtemp(prefix="sdk-api-check-"))
    try:
        for name in ENDPOINT_TESTS:
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            text = (source / name).read_text()
            # The generated tests point at a mock server's address: point them at ours.
            lines = [
                "from tests.conftest import base_url" if line.startswith("base_url = ") else line
                for line in text.splitlines()
            ]
            target.write_text("\n".join(lines) + "\n")
        for package in {p.parent for p in (work / n for n in ENDPOINT_TESTS)} | {work / "tests"}:
            (package / "__init__.py").touch()
        (work / "tests" / "conftest.py").write_text(CONFTEST)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-k",
            "not Async",
            "tests/api_resources",
            "-rf",
            *sys.argv[2:],
        ]
        return subprocess.run(command, cwd=work, check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
