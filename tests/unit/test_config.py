"""Config loading: interpolation, and errors that name the file, the field and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config_loader import ConfigError, load_settings
from gateway.settings import Settings

VALID = """
server: {port: 9000, max_body_bytes: 1024}
auth: {api_keys: ["${KEY}"]}
models:
  - name: llama
    aliases: [llama-8b]
    routing: {strategy: round_robin}
    timeouts: {connect: 2, first_byte: 30}
    backends:
      - {url: "http://10.0.0.1:8000", model: meta/llama, api_key: "${VLLM_KEY:-none}"}
      - {url: "http://10.0.0.2:8000", model: meta/llama, weight: 2}
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[Settings, str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return load_settings(path, env=env or {}), str(path)


def test_valid_file_with_interpolation(tmp_path: Path) -> None:
    settings, path = load(tmp_path, VALID, {"KEY": "sk-123"})
    assert settings.source == path
    assert settings.auth.api_keys == ["sk-123"]
    group = settings.models[0]
    assert group.backends[0].api_key == "none"
    assert group.backends[1].weight == 2
    assert group.timeouts.connect == 2
    assert group.timeouts.total == 600
    assert settings.server.port == 9000


def test_escaped_dollar_is_literal(tmp_path: Path) -> None:
    text = VALID.replace('["${KEY}"]', '["$${KEY}"]')
    settings, _ = load(tmp_path, text)
    assert settings.auth.api_keys == ["${KEY}"]


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (("port: 9000", "port: nine"), "server.port", "Expected `int`"),
        (("port: 9000", "port: 70000"), "server.port", "<= 65535"),
        (("max_body_bytes", "max_body_byte"), "server.max_body_byte", "unknown field"),
        (("weight: 2", "weight: -1"), "models[0].backends[1].weight", ">= 0"),
        (
            ('url: "http://10.0.0.2:8000"', 'url: "10.0.0.2:8000"'),
            "models[0].backends[1].url",
            "expected an http:// or https:// URL",
        ),
        (("name: llama\n", "nom: llama\n"), "models[0].nom", "unknown field"),
        (("aliases: [llama-8b]", "aliases: [llama]"), "models[0].aliases[0]", "already used"),
        (('["${KEY}"]', '["${MISSING}"]'), "auth.api_keys[0]", "MISSING is not set"),
        (
            ("aliases: [llama-8b]", "aliases: [llama-8b]\n    fallbacks: [nope]"),
            "models[0].fallbacks[0]",
            "expected the name of another model group",
        ),
        (
            (
                "routing: {strategy: round_robin}",
                "routing: {strategy: round_robin}\n    retry: {attempts: 0}",
            ),
            "models[0].retry.attempts",
            ">= 1",
        ),
    ],
)
def test_errors_name_file_field_and_expectation(
    tmp_path: Path, edit: tuple[str, str], field: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, VALID.replace(*edit), {"KEY": "k"})
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'gateway.yaml'}: {field}: ")
    assert problem in message


def test_missing_required_backends(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.backends: required field is missing"):
        load(tmp_path, "models: [{name: x}]")


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML: line 1"):
        load(tmp_path, "models: [")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load(tmp_path, "- a\n- b\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path / "absent.yaml")
