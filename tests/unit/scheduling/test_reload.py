"""A config reload and admission control: a scheduling change is reported as taking a restart,
never silently ignored."""

from __future__ import annotations

from typing import Any

from gateway.assembly import build_state
from gateway.config_loader import settings_from_mapping
from gateway.reload import apply_settings

URL = "http://127.0.0.1:9"


def group(name: str, **scheduling: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "backends": [{"url": URL, "name": f"{name}-0"}]}
    if scheduling:
        found["scheduling"] = scheduling
    return found


def test_scheduling_changes_and_new_scheduled_groups_are_reported() -> None:
    before = {"models": [group("a", max_in_flight=4), group("b")]}
    state = build_state(settings_from_mapping(before, "file.yaml"))
    after = {
        "models": [
            group("a", max_in_flight=8),
            group("b"),
            group("c", max_in_flight=2),
            group("d"),
        ]
    }
    report = apply_settings(state.catalog, settings_from_mapping(after, "file.yaml"), state.builder)
    assert report.added_models == ["c", "d"]
    assert report.needs_restart == [
        "a: scheduling changed",
        "c: new model; its scheduling section applies after a restart",
    ]
    unchanged = apply_settings(
        state.catalog, settings_from_mapping(after, "file.yaml"), state.builder
    )
    assert unchanged.needs_restart == ["a: scheduling changed"]  # still not applied
