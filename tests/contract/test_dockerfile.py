"""The Dockerfile lints clean, keeps its promises (slim, non-root, only the venv in the runtime
stage, no secrets), and its ENTRYPOINT + CMD serve from a virtual environment built the way its
builder stage builds one.

No container engine can pull a base image here, so the build is replayed: the builder stage's
COPY sources go to a fresh directory, its RUN command runs there under ``sh`` with the stage's
ENV (the venv in a temporary path instead of /opt/venv), and the runtime stage's ENTRYPOINT and
CMD, read from the file, run from that venv with a clean environment and an empty working
directory, so nothing can be imported from this checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.dockerfile import Dockerfile, Instruction, parse_dockerfile
from tests.support.processes import free_port, stop

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PEPPER", re.IGNORECASE)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


def test_hadolint_passes_at_the_strictest_threshold() -> None:
    result = subprocess.run(
        [
            "hadolint",
            "--no-color",
            "--failure-threshold",
            "info",
            "--require-label",
            "org.opencontainers.image.version:semver",
            "--require-label",
            "org.opencontainers.image.title:text",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_lint_ignore_gives_its_reason() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        match = re.search(r"hadolint\s+ignore=\S+(.*)", line)
        if match:
            assert match.group(1).strip(" #-:"), f"an ignore without a reason: {line}"


def test_runtime_stage_is_slim_non_root_and_holds_only_the_venv(dockerfile: Dockerfile) -> None:
    builder, runtime = dockerfile.stage("builder"), dockerfile.stage("runtime")
    assert dockerfile.stages[-1] is runtime  # the stage `docker build` produces
    base = dockerfile.global_args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[12]-slim(-\w+)?", base), base
    assert builder.base == runtime.base == "${PYTHON_IMAGE}"
    venv = builder.env()["VIRTUAL_ENV"]
    assert [c.text for c in runtime.all("COPY")] == [f"--from=builder {venv} {venv}"]
    user = runtime.last("USER").text
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user  # a fixed uid, not a name
    assert int(uid) >= 10000, user  # not root, nor a system account
    assert gid.isdigit(), user
    assert runtime.env()["PATH"].startswith(f"{venv}/bin:")
    assert runtime.last("ENTRYPOINT").exec_form() == ["gateway"]
    assert runtime.last("LABEL").pairs()["org.opencontainers.image.version"] == VERSION


def test_no_secret_is_built_into_the_image(dockerfile: Dockerfile) -> None:
    names = set(dockerfile.global_args)
    for stage in dockerfile.stages:
        names |= set(stage.env())
        for instruction in stage.all("ARG"):
            names |= set(instruction.pairs())
    assert not {n for n in names if SECRET_NAME.search(n)}, names
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r and r[0] != "#"]
    assert rules[0] == "*"  # a whitelist: nothing it does not list reaches the build context


def _shell_command(run: Instruction) -> str:
    """A RUN's shell command, without its BuildKit flags (``--mount=...``)."""
    words = run.text.split(" ")
    while words and words[0].startswith("--"):
        words.pop(0)
    return " ".join(words)


def _build_like_the_builder(dockerfile: Dockerfile, tmp: Path) -> Path:
    """Replay the builder stage in ``tmp``; returns the venv it made."""
    builder = dockerfile.stage("builder")
    src = tmp / "src"
    src.mkdir()
    for copy in builder.all("COPY"):
        *sources, _destination = shlex.split(copy.text)
        for name in sources:
            origin = ROOT / name
            if origin.is_dir():
                shutil.copytree(
                    origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "results")
                )
            else:
                shutil.copy2(origin, src / name)
    venv = tmp / "venv"
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    # `python` in the image is its interpreter: here, the one this venv was made from.
    (bin_dir / "python").symlink_to(os.path.realpath(sys.executable))
    arguments = {a: v for i in builder.all("ARG") for a, v in i.pairs().items()}
    env = {
        **_clean_environment(tmp),
        **arguments,
        **builder.env(),
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{bin_dir}:{os.defpath}",
    }
    for run in builder.all("RUN"):
        result = subprocess.run(
            ["sh", "-c", _shell_command(run)],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


def _clean_environment(tmp: Path) -> dict[str, str]:
    """This session's environment less whatever points Python at this checkout or its venv;
    pip's own settings (its index, cache, certificates) stay, as a build machine has its own."""
    dropped = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("GATEWAY")}
    return {**env, "HOME": os.environ.get("HOME", str(tmp))}


def _wait_for_health(proc: subprocess.Popen[str], url: str) -> None:
    for _ in range(600):  # 60 s at most
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                assert response.status == 200
                return
        except OSError:
            assert proc.poll() is None, f"the entrypoint exited: {stop(proc)}"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)  # paces the polling, and returns at once if it exits
    raise AssertionError(f"/healthz never answered: {stop(proc)}")


def _with_loopback_port(command: list[str], port: int) -> list[str]:
    """CMD with the values of --host and --port replaced: a loopback address, a free port."""
    out = list(command)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        out[out.index(flag) + 1] = value
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)  # one fresh `pip install .`: about a minute with pip's cache warm
def test_entrypoint_serves_from_a_venv_built_as_the_builder_builds_it(
    dockerfile: Dockerfile, tmp_path: Path
) -> None:
    venv = _build_like_the_builder(dockerfile, tmp_path)
    runtime = dockerfile.stage("runtime")
    image_venv = dockerfile.stage("builder").env()["VIRTUAL_ENV"]
    path = runtime.env()["PATH"].replace(image_venv, str(venv)).replace("$PATH", os.defpath)
    workdir = tmp_path / "workdir"  # the image's WORKDIR: empty, the code lives in the venv
    workdir.mkdir()
    master_key = "sk-image-test-master"
    env = {
        **_clean_environment(tmp_path),
        **runtime.env(),
        "VIRTUAL_ENV": str(venv),
        "PATH": path,
        "GATEWAY_MASTER_KEY": master_key,
    }
    entrypoint = runtime.last("ENTRYPOINT").exec_form()
    command = runtime.last("CMD").exec_form()
    assert command[0] == "serve"
    assert command[command.index("--port") + 1] == "8080"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert shutil.which(entrypoint[0], path=path) == str(venv / "bin" / entrypoint[0])

    port = free_port()
    proc = subprocess.Popen(
        [*entrypoint, *_with_loopback_port(command, port)],
        cwd=workdir,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(proc, url)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/v1/models", timeout=5)
        refused.value.close()
        assert refused.value.code == 401
        request = urllib.request.Request(
            f"{url}/v1/models", headers={"Authorization": f"Bearer {master_key}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            models = json.loads(response.read())
        assert [m["id"] for m in models["data"]] == ["sim-chat"]  # the embedded default
    finally:
        output = stop(proc)
    assert f"gateway {VERSION} on http://127.0.0.1:{port}" in output, output

    for args in (["node", "--help"], ["control", "--help"]):
        result = subprocess.run(
            [*entrypoint, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert f"usage: gateway {args[0]}" in result.stdout
    gpus = subprocess.run(
        [*entrypoint, "node", "--backend", "fake", "--gpus", "2", "--once", "--json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gpus.returncode == 0, gpus.stderr
    assert "NVIDIA H100 80GB HBM3" in gpus.stdout
