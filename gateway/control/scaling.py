"""scale-fleet: desired replicas per model group, by target tracking on the fleet's load.

:func:`read_loads` reads the load: each backend's engine through its provider's
``EngineMetricsSource`` capability (vLLM's ``num_requests_waiting`` and
``kv_cache_usage_perc``: the ``vllm`` plugin knows the names), and the requests each gateway
replica of ``control.gateway_urls`` has in flight per group (its ``/metrics``). :func:`decide`
is pure: a load, the replicas asked for now and the last change in, a :class:`Decision` out.
:func:`scale_fleet` runs it for every group of ``control.scaling`` and acts through the
group's :class:`~gateway.control.base.FleetScaler`, keeping the last change of each group (the
cooldowns' clock) in the shared store as the job's state.

The rule (``docs/control-plane.md (scale-fleet)``):

- queued per replica = max(engines' waiting, gateway in-flight - engines' running) / replicas
  reporting: the gateway's figure counts requests queued before the engines too;
- ratio = the larger of queued per replica / ``target_waiting`` and mean KV-cache use /
  ``target_kv_cache``; no change while it is within :data:`DEAD_BAND`;
- desired = ceil(current x ratio), clamped to [min, max], at most ``max_step`` from current;
- a scale-up waits ``scale_up_cooldown_s`` after the last scale-up (one right after a
  scale-down is allowed: the load came back); a scale-down waits ``scale_down_cooldown_s``
  after the last change either way (what was just added is not taken away);
- a group whose replicas are outside [min, max] is brought inside (``max_step`` at a time,
  no cooldown: the bounds are the operator's order), whatever its load;
- at zero replicas (``min_replicas`` 0), any request (queued, running, or in flight at the
  gateways) asks for one;
- no reading (no engine reported): no change.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.assembly import CatalogBuilder
from gateway.control.base import ControlStore, FleetScaler, GroupLoad
from gateway.control.parts import plugin_registries
from gateway.errors import ServiceUnavailableError
from gateway.plugins import Registries
from gateway.providers.base import EngineMetricsSource, ProviderContext
from gateway.routing.base import EngineMetrics
from gateway.settings import Settings
from gateway.settings_control import ScalingPolicy

log = logging.getLogger("gateway.control.scaling")

STATE_NAME = "scale-fleet"
"""The job's state in the shared store: ``{"groups": {group: LastChange.to_json()}}``."""

DEAD_BAND = (0.9, 1.1)
"""Ratios of load to target within which nothing changes (no flapping around the target)."""

IN_FLIGHT_METRIC = "gateway_requests_in_flight"
"""The gateway's gauge of requests being served, by ``model`` (the group): see
``gateway.telemetry.metrics.GatewayMetrics.in_flight``."""


class Direction(enum.StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class LastChange:
    """A group's last change of desired replicas (what the cooldowns count from).

    Attributes:
        at: Unix time of the change.
        direction: up or down.
        replicas: the replicas asked for.
    """

    at: float
    direction: Direction
    replicas: int

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "direction": self.direction.value, "replicas": self.replicas}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LastChange:
        """Raises ``KeyError``/``ValueError``/``TypeError`` for a state not written by
        :meth:`to_json`."""
        return cls(float(data["at"]), Direction(data["direction"]), int(data["replicas"]))


@dataclass(frozen=True, slots=True)
class Decision:
    """What scale-fleet decided for one group.

    Attributes:
        group: the model group.
        current: the replicas asked for before.
        desired: the replicas to ask for (``current`` when nothing changes).
        reason: why, in words (``waiting 3.00x target``, ``scale-up cooldown: 20 s left``).
        inputs: the figures it was decided on (the load, the ratios, the bounds, the last
            change): logged with it.
    """

    group: str
    current: int
    desired: int
    reason: str
    inputs: Mapping[str, Any]

    @property
    def changed(self) -> bool:
        return self.desired != self.current

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "current": self.current,
            "desired": self.desired,
            "reason": self.reason,
            "inputs": dict(self.inputs),
        }


def _step(current: int, target: int, max_step: int) -> int:
    return current + max(-max_step, min(max_step, target - current))


def decide(
    policy: ScalingPolicy,
    load: GroupLoad,
    current: int,
    state: LastChange | None,
    now: float,
) -> Decision:
    """Desired replicas for ``load.group`` (the rule is in the module docstring).

    Args:
        policy: the group's target-tracking policy.
        load: its load now (``replicas`` 0: no engine reported).
        current: the replicas its scaler asks for now.
        state: its last change, if any.
        now: Unix time (compared with ``state.at``).
    """
    lo, hi = policy.min_replicas, max(policy.max_replicas, policy.min_replicas)
    inputs: dict[str, Any] = {
        "replicas_reporting": load.replicas,
        "waiting": load.waiting,
        "running": load.running,
        "kv_cache_usage": load.kv_cache_usage,
        "gateway_in_flight": load.gateway_in_flight,
        "min_replicas": lo,
        "max_replicas": hi,
        "last_change": state.to_json() if state else None,
    }

    def result(desired: int, reason: str) -> Decision:
        return Decision(load.group, current, desired, reason, inputs)

    if not lo <= current <= hi:
        return result(
            _step(current, min(max(current, lo), hi), policy.max_step),
            f"outside the bounds [{lo}, {hi}]",
        )
    if current == 0:  # min_replicas is 0: wake on any request, whatever the targets
        if load.waiting or load.running or load.gateway_in_flight:
            return result(1, "requests and no replica")
        return result(0, "no requests and no replica")
    if load.replicas == 0:
        return result(current, "no engine reported its load")
    queued = max(load.waiting, load.gateway_in_flight - load.running)
    wait_ratio = queued / load.replicas / policy.target_waiting
    kv_ratio = load.kv_cache_usage / policy.target_kv_cache
    ratio = max(wait_ratio, kv_ratio)
    inputs.update(wait_ratio=wait_ratio, kv_ratio=kv_ratio, ratio=ratio)
    what = "waiting" if wait_ratio >= kv_ratio else "kv cache"
    if DEAD_BAND[0] <= ratio <= DEAD_BAND[1]:
        return result(current, f"{what} {ratio:.2f}x target: within the dead band")
    # Rounded first so that 4 x 1.25 is 5, not 6 from a floating-point 5.000000001.
    wanted = math.ceil(round(current * ratio, 6))
    target = min(max(wanted, lo), hi)
    inputs["unbounded_desired"] = wanted
    desired = _step(current, target, policy.max_step)
    reason = f"{what} {ratio:.2f}x target"
    if desired == current:
        bound = " (at the upper bound)" if wanted > hi else " (at the lower bound)"
        return result(current, reason + (bound if wanted != current else ""))
    if desired > current:
        if state and state.direction is Direction.UP:
            left = state.at + policy.scale_up_cooldown_s - now
            if left > 0:
                return result(current, f"{reason}; scale-up cooldown: {left:.0f} s left")
    elif state:
        left = state.at + policy.scale_down_cooldown_s - now
        if left > 0:
            return result(current, f"{reason}; scale-down cooldown: {left:.0f} s left")
    return result(desired, reason)


async def _engine_reading(source: EngineMetricsSource, timeout_s: float) -> EngineMetrics | None:
    try:
        async with asyncio.timeout(timeout_s):
            return await source.engine_metrics()
    except Exception as exc:  # noqa: BLE001 - a backend that cannot be read gives no reading
        log.debug("engine metrics not read: %s: %s", type(exc).__name__, exc)
        return None


async def _gateway_in_flight(
    http: aiohttp.ClientSession, url: str, timeout_s: float
) -> dict[str, float]:
    """Requests in flight per group on the gateway replica at ``url`` ({} when unreadable)."""
    try:
        async with asyncio.timeout(timeout_s), http.get(f"{url.rstrip('/')}/metrics") as resp:
            if resp.status != 200:
                raise aiohttp.ClientError(f"GET /metrics answered {resp.status}")
            text = await resp.text()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        log.warning("gateway %s: in-flight figures not read: %s", url, exc or "timed out")
        return {}
    found: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        if family.name == IN_FLIGHT_METRIC:
            for sample in family.samples:
                found[sample.labels.get("model", "")] += sample.value
    return found


async def read_loads(
    settings: Settings, *, timeout_s: float, registries: Registries | None = None
) -> dict[str, GroupLoad]:
    """The load of every group of ``control.scaling``, read concurrently, each source within
    ``timeout_s``.

    A backend whose provider is not an ``EngineMetricsSource``, or that could not be read,
    reports nothing (``replicas`` counts those that did); a gateway replica that could not be
    read adds nothing to ``gateway_in_flight``.

    Raises:
        ConfigError: the settings name an unknown provider, or options it rejects.
    """
    scaled = settings.control.scaling
    context = ProviderContext()
    builder = CatalogBuilder(registries or plugin_registries(settings), context)
    groups = [
        builder.group(gs, gi, settings.source)
        for gi, gs in enumerate(settings.models)
        if gs.name in scaled
    ]
    sources = [
        (g.name, b.provider)
        for g in groups
        for b in g.backends
        if isinstance(b.provider, EngineMetricsSource)
    ]
    await context.start()
    try:
        engines, gateways = await asyncio.gather(
            asyncio.gather(*(_engine_reading(source, timeout_s) for _, source in sources)),
            asyncio.gather(
                *(
                    _gateway_in_flight(context.http, url, timeout_s)
                    for url in settings.control.gateway_urls
                )
            ),
        )
    finally:
        await context.close()
    readings: dict[str, list[EngineMetrics]] = defaultdict(list)
    for (group, _), reading in zip(sources, engines, strict=True):
        if reading is not None:
            readings[group].append(reading)
    loads = {}
    for group in scaled:
        got = readings[group]
        loads[group] = GroupLoad(
            group=group,
            replicas=len(got),
            waiting=sum(r.waiting for r in got),
            running=sum(r.running for r in got),
            kv_cache_usage=sum(r.kv_cache_usage for r in got) / len(got) if got else 0.0,
            gateway_in_flight=sum(g.get(group, 0.0) for g in gateways),
        )
    return loads


def _last_changes(state: Mapping[str, Any]) -> dict[str, LastChange]:
    changes: dict[str, LastChange] = {}
    groups = state.get("groups")
    for group, data in (groups if isinstance(groups, Mapping) else {}).items():
        try:
            changes[group] = LastChange.from_json(data)
        except (KeyError, ValueError, TypeError):
            log.warning("scale-fleet: unreadable state of group %s ignored: %r", group, data)
    return changes


async def scale_fleet(
    settings: Settings,
    *,
    loads: Mapping[str, GroupLoad],
    scalers: Mapping[str, FleetScaler],
    store: ControlStore,
    now: float,
    act: bool = True,
) -> list[Decision]:
    """Decide each ``control.scaling`` group's replicas and ask its scaler for them.

    Every decision is logged as one JSON line with its inputs. The groups' last changes (the
    cooldowns) are read from and written to the store's ``scale-fleet`` state.

    Args:
        loads: the groups' loads (:func:`read_loads`); a group without one has no reading.
        scalers: each group's scaler (``gateway.control.parts.build_fleet_scalers``).
        now: Unix time.
        act: False for a dry run: decide and log, but change nothing (scalers and state).

    Returns:
        The decisions, in ``control.scaling`` order (the groups whose scaler could be read).

    Raises:
        ServiceUnavailableError: the store, or a group's scaler, cannot be reached (the other
            groups are decided and acted on first, and the state of those is kept).
    """
    changes = _last_changes(await store.get_state(STATE_NAME))
    decisions: list[Decision] = []
    failed: ServiceUnavailableError | None = None
    for group, policy in settings.control.scaling.items():
        load = loads.get(group) or GroupLoad(group, 0, 0.0, 0.0, 0.0)
        scaler = scalers[group]
        try:
            current = await scaler.current()
            decision = decide(policy, load, current, changes.get(group), now)
            if decision.changed and act:
                await scaler.set_desired(decision.desired)
                direction = Direction.UP if decision.desired > current else Direction.DOWN
                changes[group] = LastChange(now, direction, decision.desired)
        except ServiceUnavailableError as exc:
            log.error("scale-fleet: group %s: its scaler cannot be reached: %s", group, exc)
            failed = failed or exc
            continue
        line = {"event": "scale-decision", "acted": act and decision.changed}
        log.info("%s", json.dumps({**line, **decision.to_json()}, sort_keys=True))
        decisions.append(decision)
    if act and any(d.changed for d in decisions):
        kept = {g: c.to_json() for g, c in changes.items() if g in settings.control.scaling}
        await store.put_state(STATE_NAME, {"groups": kept})
    if failed is not None:
        raise failed
    return decisions
