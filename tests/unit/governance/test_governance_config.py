"""Governance configuration errors name the file and the field; nothing starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.assembly import build_state
from gateway.config_loader import ConfigError, settings_from_mapping

MODELS = [
    {"name": "big", "backends": [{"url": "http://127.0.0.1:9", "model": "m"}]},
    {"name": "small", "backends": [{"url": "http://127.0.0.1:9", "model": "m"}]},
]


def build(tmp_path: Path, governance: dict[str, Any], **extra: Any) -> None:
    config = {
        "auth": {"master_key": "sk-m"},
        "governance": {"data_dir": str(tmp_path), **governance},
        "models": MODELS,
        **extra,
    }
    build_state(settings_from_mapping(config, "g.yaml"))


@pytest.fixture(autouse=True)
def _pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", "a-pepper-long-enough-for-tests")


@pytest.mark.parametrize(
    ("governance", "field", "message"),
    [
        ({"limiter": {"backend": "nope"}}, "governance.limiter.backend", "unknown limiter `nope`"),
        ({"limiter": {"backend": "redis"}}, "governance.limiter.options", "url"),
        ({"key_store": {"backend": "nope"}}, "governance.key_store.backend", "unknown key store"),
        (
            {"usage": {"sinks": [{"backend": "jsonl"}]}},
            r"governance.usage.sinks\[0\].options",
            "path",
        ),
        (
            {"alert_sinks": [{"backend": "webhook"}]},
            r"governance.alert_sinks\[0\].options",
            "url",
        ),
        (
            {"cost_policies": {"p": {"policy": "downgrade", "options": {"chain": ["big", "x"]}}}},
            "governance.cost_policies.p.options.chain",
            "unknown model group `x`",
        ),
        (
            {"cost_policies": {"p": {"policy": "nope"}}},
            "governance.cost_policies.p.backend",
            "unknown cost policy `nope`",
        ),
        (
            {"cost_policies": {"p": {"policy": "reject", "options": {"threshold": 2}}}},
            "governance.cost_policies.p.options",
            "fraction",
        ),
    ],
)
def test_bad_governance_config_names_the_field(
    tmp_path: Path, governance: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"g\.yaml: {field}: .*{message}"):
        build(tmp_path, governance)


def test_a_model_group_naming_an_unknown_cost_policy_is_refused(tmp_path: Path) -> None:
    models = [{**MODELS[0], "cost_policy": "thrifty"}, MODELS[1]]
    with pytest.raises(ConfigError, match=r"models\[0\]\.cost_policy: unknown cost policy"):
        build(tmp_path, {}, models=models)


def test_a_short_pepper_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", "short")
    with pytest.raises(ConfigError, match="governance"):
        build(tmp_path, {})


def test_bad_budget_window_is_a_validation_error(tmp_path: Path) -> None:
    keys = [
        {"key": "sk-gw-aaaaaaaaaaaa-" + "b" * 43, "budgets": [{"usd": 1, "window": "fortnight"}]}
    ]
    with pytest.raises(ConfigError, match=r"governance\.key_store\.options"):
        build(tmp_path, {"key_store": {"backend": "config", "options": {"keys": keys}}})
