"""The follower applies published versions to a real catalog, reports what it cannot apply
live, and keeps the last good version when a version fails (a real directory store)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from gateway_control.directory_store import DirectoryControlStore
from prometheus_client import CollectorRegistry

from gateway.assembly import build_state
from gateway.config_loader import settings_from_mapping
from gateway.control.follow import ConfigFollower

pytestmark = pytest.mark.anyio
URL = "http://127.0.0.1:9"  # never called: the follower builds backends, it sends nothing


def group(name: str) -> dict[str, object]:
    return {"name": name, "backends": [{"url": URL, "model": "m", "name": f"{name}-0"}]}


async def test_versions_are_applied_once_and_what_needs_a_restart_is_reported(
    tmp_path: Path,
) -> None:
    state = build_state(settings_from_mapping({"models": [group("a")]}, "file.yaml"))
    store = DirectoryControlStore(str(tmp_path))
    registry = CollectorRegistry()
    follower = ConfigFollower(
        store, state.catalog, state.builder, state.settings, registry, poll_interval_s=0.1
    )
    assert not await follower.sync()  # nothing published yet

    text = yaml.safe_dump({"models": [group("b")], "server": {"port": 9999}})
    await store.publish_config(text, "v1.yaml")
    assert await follower.sync()
    assert [g.name for g in state.catalog.groups] == ["a", "b"]  # a removal takes a restart
    applied = follower.applied
    assert applied is not None
    assert applied.version == 1
    assert applied.source == "v1.yaml"
    assert applied.needs_restart == [
        "a: model removed from the file",
        "server: differs from this replica's config; only models change live",
    ]
    assert not await follower.sync()  # the same version is applied once
    assert registry.get_sample_value("gateway_config_version") == 1

    await store.publish_config("models: [{name: c, backends: [{url: nope}]}]\n", "bad.yaml")
    assert not await follower.sync()
    assert [g.name for g in state.catalog.groups] == ["a", "b"]
    assert follower.applied is applied
    assert follower.rejected is not None
    assert follower.rejected.version == 2
    assert "config version 2 (bad.yaml): models[0].backends[0].url" in follower.rejected.error
    assert registry.get_sample_value("gateway_config_apply_failures_total") == 1
    assert not await follower.sync()  # a refused version is not retried at every poll
    assert registry.get_sample_value("gateway_config_apply_failures_total") == 1
