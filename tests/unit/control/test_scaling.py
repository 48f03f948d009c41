"""scale-fleet (gateway.control.scaling): the pure decision rule, then the job over the real
`file` fleet scaler and an in-memory control store (tests/support/control_store.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from gateway_control.file_scaler import FileScaler

from gateway.config_loader import settings_from_mapping
from gateway.control.base import FleetScaler, GroupLoad
from gateway.control.scaling import STATE_NAME, Direction, LastChange, decide, scale_fleet
from gateway.errors import ServiceUnavailableError
from gateway.settings import Settings
from gateway.settings_control import ScalingPolicy
from tests.support.control_store import MemoryControlStore

NOW = 1_800_000_000.0


def policy(**overrides: Any) -> ScalingPolicy:
    fields: dict[str, Any] = {
        "scaler": {"backend": "file", "options": {"path": "unused"}},
        "min_replicas": 1,
        "max_replicas": 10,
        "target_waiting": 4.0,
        "target_kv_cache": 0.8,
        "max_step": 2,
        "scale_up_cooldown_s": 60.0,
        "scale_down_cooldown_s": 300.0,
        **overrides,
    }
    settings = settings_from_mapping({"control": {"scaling": {"g": fields}}})
    return settings.control.scaling["g"]


def load(
    replicas: int,
    waiting: float = 0.0,
    kv: float = 0.0,
    running: float = 0.0,
    in_flight: float = 0.0,
) -> GroupLoad:
    return GroupLoad("g", replicas, waiting, running, kv, in_flight)


def changed(at_ago_s: float, direction: Direction, replicas: int = 2) -> LastChange:
    return LastChange(NOW - at_ago_s, direction, replicas)


# -- decide ------------------------------------------------------------------------------------


def test_scales_up_on_waiting_requests() -> None:
    # 16 waiting over 2 replicas: 8 each against a target of 4, twice the target.
    d = decide(policy(), load(2, waiting=16), 2, None, NOW)
    assert (d.group, d.current, d.desired) == ("g", 2, 4)
    assert d.reason == "waiting 2.00x target"
    assert d.inputs["ratio"] == pytest.approx(2.0)
    assert d.inputs["waiting"] == 16


def test_the_larger_ratio_wins_kv_cache_here() -> None:
    # KV cache at 0.96 against 0.8 (1.2x) beats 1 waiting per replica (0.25x).
    d = decide(policy(), load(5, waiting=5, kv=0.96), 5, None, NOW)
    assert d.desired == 6
    assert d.reason.startswith("kv cache 1.20x")


def test_requests_in_flight_at_the_gateways_count_as_queued() -> None:
    # Engines report none waiting, 2 running; the gateways hold 18: 16 queued before the
    # engines, 8 per replica.
    d = decide(policy(), load(2, running=2, in_flight=18), 2, None, NOW)
    assert d.desired == 4
    assert d.inputs["wait_ratio"] == pytest.approx(2.0)


def test_scales_down_when_idle_by_at_most_max_step() -> None:
    d = decide(policy(), load(6, kv=0.2), 6, None, NOW)
    assert d.inputs["unbounded_desired"] == 2  # ceil(6 x 0.25)
    assert d.desired == 4


def test_zero_load_goes_down_to_min_replicas() -> None:
    d = decide(policy(min_replicas=2), load(3), 3, None, NOW)
    assert d.desired == 2
    held = decide(policy(min_replicas=2), load(2), 2, None, NOW)
    assert held.desired == 2
    assert held.reason.endswith("(at the lower bound)")


def test_max_step_limits_one_decision() -> None:
    d = decide(policy(max_step=1), load(2, waiting=40), 2, None, NOW)
    assert d.inputs["unbounded_desired"] == 10
    assert d.desired == 3


def test_max_replicas_bounds_the_decision() -> None:
    d = decide(policy(max_replicas=5, max_step=4), load(4, waiting=40), 4, None, NOW)
    assert d.desired == 5
    at_max = decide(policy(max_replicas=5), load(5, waiting=40), 5, None, NOW)
    assert at_max.desired == 5
    assert at_max.reason.endswith("(at the upper bound)")


def test_replicas_outside_the_bounds_are_brought_inside_whatever_the_load() -> None:
    above = decide(policy(max_replicas=10), load(0), 13, changed(1, Direction.UP), NOW)
    assert above.desired == 11  # two at a time, no cooldown: the bounds are an order
    assert above.reason == "outside the bounds [1, 10]"
    below = decide(policy(min_replicas=2), load(0), 0, None, NOW)
    assert below.desired == 2


def test_scale_up_cooldown_after_a_scale_up() -> None:
    busy = load(2, waiting=16)
    held = decide(policy(), busy, 2, changed(30, Direction.UP), NOW)
    assert held.desired == 2
    assert held.reason == "waiting 2.00x target; scale-up cooldown: 30 s left"
    assert decide(policy(), busy, 2, changed(61, Direction.UP), NOW).desired == 4
    # Right after a scale-down, load that came back is answered at once.
    assert decide(policy(), busy, 2, changed(5, Direction.DOWN), NOW).desired == 4


def test_scale_down_cooldown_after_any_change() -> None:
    idle = load(6)
    after_up = decide(policy(), idle, 6, changed(100, Direction.UP), NOW)
    assert after_up.desired == 6
    assert "scale-down cooldown: 200 s left" in after_up.reason
    after_down = decide(policy(), idle, 6, changed(100, Direction.DOWN), NOW)
    assert after_down.desired == 6
    assert decide(policy(), idle, 6, changed(301, Direction.UP), NOW).desired == 4


@pytest.mark.parametrize("waiting", [7.2, 8.0, 8.8])  # ratios 0.9, 1.0, 1.1 over 2 replicas
def test_no_change_within_the_dead_band(waiting: float) -> None:
    d = decide(policy(), load(2, waiting=waiting), 2, None, NOW)
    assert d.desired == 2
    assert d.reason.endswith("within the dead band")


def test_just_outside_the_dead_band_changes() -> None:
    assert decide(policy(), load(5, waiting=24.4), 5, None, NOW).desired == 7  # 1.22x


def test_missing_metrics_change_nothing() -> None:
    d = decide(policy(), load(0), 3, None, NOW)
    assert (d.desired, d.reason) == (3, "no engine reported its load")
    # Even with requests at the gateways: the replicas may be starting, or unreadable.
    assert decide(policy(), load(0, in_flight=9), 3, None, NOW).desired == 3


def test_from_zero_replicas_any_request_asks_for_one() -> None:
    to_zero = policy(min_replicas=0)
    d = decide(to_zero, load(0, in_flight=3), 0, changed(1, Direction.UP), NOW)
    assert (d.desired, d.reason) == (1, "requests and no replica")
    # Engines outside the scaler's count reporting a queue: one too, not ceil(0 x ratio).
    assert decide(to_zero, load(1, waiting=1), 0, None, NOW).desired == 1
    idle = decide(to_zero, load(0), 0, None, NOW)
    assert (idle.desired, idle.reason) == (0, "no requests and no replica")


# -- scale_fleet over the file scaler ------------------------------------------------------------


def fleet(tmp_path: Path, **groups: dict[str, Any]) -> Settings:
    scaling = {
        name: {
            "scaler": {"backend": "file", "options": {"path": str(tmp_path / f"{name}.json")}},
            "max_step": 2,
            "scale_up_cooldown_s": 60,
            **fields,
        }
        for name, fields in groups.items()
    }
    return settings_from_mapping({"control": {"scaling": scaling}})


def scalers_of(settings: Settings) -> dict[str, FleetScaler]:
    return {
        group: FileScaler(**p.scaler.options, initial=2)
        for group, p in settings.control.scaling.items()
    }


def replicas_in(path: Path) -> int:
    value: int = json.loads(path.read_text())["replicas"]
    return value


def busy(group: str) -> GroupLoad:
    return GroupLoad(group, 2, 16.0, 2.0, 0.5)


@pytest.mark.anyio
async def test_scale_fleet_acts_then_waits_out_the_cooldown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fleet(tmp_path, g={})
    store = MemoryControlStore()
    scalers = scalers_of(settings)
    caplog.set_level(logging.INFO, "gateway.control.scaling")

    first = await scale_fleet(
        settings, loads={"g": busy("g")}, scalers=scalers, store=store, now=NOW
    )
    assert [(d.current, d.desired) for d in first] == [(2, 4)]
    assert replicas_in(tmp_path / "g.json") == 4
    assert store.states[STATE_NAME] == {
        "groups": {"g": {"at": NOW, "direction": "up", "replicas": 4}}
    }
    logged = [json.loads(r.getMessage()) for r in caplog.records]
    assert logged[0]["event"] == "scale-decision"
    assert logged[0]["acted"] is True
    assert logged[0]["inputs"]["waiting"] == 16.0

    # Still busy (the new replicas are not up yet) 10 s later: the cooldown holds.
    second = await scale_fleet(
        settings, loads={"g": busy("g")}, scalers=scalers, store=store, now=NOW + 10
    )
    assert [(d.current, d.desired) for d in second] == [(4, 4)]
    assert "scale-up cooldown: 50 s left" in second[0].reason
    assert replicas_in(tmp_path / "g.json") == 4


@pytest.mark.anyio
async def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    settings = fleet(tmp_path, g={})
    store = MemoryControlStore()
    decisions = await scale_fleet(
        settings,
        loads={"g": busy("g")},
        scalers=scalers_of(settings),
        store=store,
        now=NOW,
        act=False,
    )
    assert [(d.current, d.desired) for d in decisions] == [(2, 4)]
    assert not (tmp_path / "g.json").exists()
    assert STATE_NAME not in store.states


@pytest.mark.anyio
async def test_a_group_without_a_load_is_held(tmp_path: Path) -> None:
    settings = fleet(tmp_path, g={})
    decisions = await scale_fleet(
        settings, loads={}, scalers=scalers_of(settings), store=MemoryControlStore(), now=NOW
    )
    assert [(d.desired, d.reason) for d in decisions] == [(2, "no engine reported its load")]


@pytest.mark.anyio
async def test_an_unreachable_scaler_fails_after_the_other_groups_acted(tmp_path: Path) -> None:
    settings = fleet(tmp_path, bad={}, good={})
    (tmp_path / "bad.json").write_text("not json")
    store = MemoryControlStore()
    loads = {"bad": busy("bad"), "good": busy("good")}
    with pytest.raises(ServiceUnavailableError, match=r"bad\.json"):
        await scale_fleet(settings, loads=loads, scalers=scalers_of(settings), store=store, now=NOW)
    assert replicas_in(tmp_path / "good.json") == 4
    assert set(store.states[STATE_NAME]["groups"]) == {"good"}


@pytest.mark.anyio
async def test_an_unreachable_store_fails_the_job(tmp_path: Path) -> None:
    settings = fleet(tmp_path, g={})
    store = MemoryControlStore()
    store.reachable = False
    with pytest.raises(ServiceUnavailableError):
        await scale_fleet(
            settings, loads={"g": busy("g")}, scalers=scalers_of(settings), store=store, now=NOW
        )
    assert not (tmp_path / "g.json").exists()


@pytest.mark.anyio
async def test_unreadable_state_is_ignored_not_fatal(tmp_path: Path) -> None:
    settings = fleet(tmp_path, g={})
    store = MemoryControlStore()
    await store.put_state(STATE_NAME, {"groups": {"g": {"at": "yesterday"}}})
    decisions = await scale_fleet(
        settings, loads={"g": busy("g")}, scalers=scalers_of(settings), store=store, now=NOW
    )
    assert decisions[0].desired == 4


# -- the file scaler ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_file_scaler_round_trip_and_bad_options(tmp_path: Path) -> None:
    path = tmp_path / "fleet" / "g.json"
    scaler = FileScaler(str(path), initial=3)
    assert await scaler.current() == 3
    await scaler.set_desired(5)
    assert await scaler.current() == 5
    assert replicas_in(path) == 5
    assert [p.name for p in path.parent.iterdir()] == ["g.json"]  # no temporary file left
    path.write_text('{"replicas": "five"}')
    with pytest.raises(ServiceUnavailableError, match="expected"):
        await scaler.current()
    with pytest.raises(ValueError, match="path"):
        FileScaler("")
    with pytest.raises(ValueError, match="initial"):
        FileScaler(str(path), initial=-1)
