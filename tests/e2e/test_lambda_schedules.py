"""The scheduled Lambda handlers, invoked with EventBridge's scheduled event, against moto
(Auto Scaling, CloudWatch) through ``AWS_ENDPOINT_URL``, a real redis-server as the shared store,
simulators and a gateway served for real.

- scale-fleet: a simulator under load (requests held at a gate while one sequence fits its
  batch, so ``num_requests_waiting`` rises) raises an Auto Scaling group's desired capacity one
  step at a time, holds through the scale-up cooldown, stops at the policy's upper bound, and,
  once idle, steps down to the lower bound after the scale-down cooldown; the group's own size
  limits are never passed.
- health-sweep: the published config's backends are probed from outside the data plane; the
  hints land in the shared store and the readings in CloudWatch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from gateway_aws import handlers
from gateway_control.redis_store import RedisControlStore

from gateway.config_loader import settings_from_mapping
from gateway.control.base import GroupLoad, HealthHint
from gateway.control.scaling import read_loads
from tests.support.lambda_context import lambda_context
from tests.support.moto_server import Moto, create_autoscaling_group, running_moto
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import eventually, group, http_json, running_gateway, running_sim

pytestmark = pytest.mark.slow

ASG = "chat-fleet"
COOLDOWN_S = 1.5
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def context() -> LambdaContext:
    return lambda_context()


def scheduled_event(n: int) -> dict[str, Any]:
    """EventBridge's event for a rule's ``rate(1 minute)`` schedule."""
    return {
        "version": "0",
        "id": f"5b8e0c1a-0000-4000-8000-{n:012d}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/gateway-control-schedule"],
        "detail": {},
    }


@dataclass
class Cloud:
    moto: Moto
    redis: RedisServer


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with running_redis() as redis, running_moto(monkeypatch) as moto:
        monkeypatch.setenv("REDIS_URL", redis.url)
        monkeypatch.setenv("METRIC_NAMESPACE", "Gateway/Test")
        yield Cloud(moto, redis)


def publish(cloud: Cloud, config: dict[str, Any]) -> None:
    """Publish ``config`` to the shared store, as publish-config does after validating it."""

    async def put() -> None:
        store = RedisControlStore(url=cloud.redis.url)
        try:
            await store.publish_config(json.dumps(config), "s3://configs/gateway/fleet.yaml")
        finally:
            await store.aclose()

    asyncio.run(put())


def hints(cloud: Cloud) -> list[HealthHint]:
    async def read() -> list[HealthHint]:
        store = RedisControlStore(url=cloud.redis.url)
        try:
            return await store.health()
        finally:
            await store.aclose()

    return asyncio.run(read())


def load_of(config: dict[str, Any]) -> GroupLoad:
    """The chat group's load, read as scale-fleet reads it."""
    return asyncio.run(read_loads(settings_from_mapping(config), timeout_s=2))["chat"]


def desired(cloud: Cloud) -> int:
    autoscaling: Any = cloud.moto.client("autoscaling")
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])
    capacity: int = described["AutoScalingGroups"][0]["DesiredCapacity"]
    return capacity


class Scheduler:
    """Invokes scale-fleet as EventBridge would, one tick after another."""

    def __init__(self) -> None:
        self.ticks = 0

    def tick(self) -> dict[str, Any]:
        self.ticks += 1
        out = handlers.scale_fleet(scheduled_event(self.ticks), context())
        [decision] = out["decisions"]
        assert decision["group"] == "chat"
        found: dict[str, Any] = decision
        return found

    def after_cooldown(self) -> dict[str, Any]:
        time.sleep(COOLDOWN_S + 0.1)
        return self.tick()


def test_scale_fleet_sets_the_auto_scaling_group_within_cooldowns_and_bounds(
    cloud: Cloud,
) -> None:
    # The group itself takes up to 5; the policy allows 1 to 3.
    create_autoscaling_group(cloud.moto, ASG, min_size=0, max_size=5, desired=1)
    held = 7
    with (
        running_sim(max_num_seqs=1, step_base_ms=5.0) as sim,
        running_gateway({"models": [group("chat", sim.url)]}) as gw,
    ):
        config = {
            "models": [group("chat", sim.url)],
            "control": {
                "gateway_urls": [gw.url],
                "scaling": {
                    "chat": {
                        "scaler": {
                            "backend": "aws_autoscaling",
                            "options": {"group_name": ASG},
                        },
                        "min_replicas": 1,
                        "max_replicas": 3,
                        "target_waiting": 2,
                        "max_step": 1,
                        "scale_up_cooldown_s": COOLDOWN_S,
                        "scale_down_cooldown_s": COOLDOWN_S,
                    }
                },
            },
        }
        publish(cloud, config)
        scheduler = Scheduler()
        pool = ThreadPoolExecutor(held)
        try:
            with sim.gate(after_tokens=1):
                url = f"{gw.url}/v1/chat/completions"
                answers = [pool.submit(http_json, "POST", url, CHAT) for _ in range(held)]
                sim.wait_held(1)
                assert eventually(lambda: load_of(config).waiting >= held - 1)

                first = scheduler.tick()
                # 6 waiting on the one replica the group has: 3x the target of 2.
                assert (first["current"], first["desired"]) == (1, 2)
                assert first["inputs"]["waiting"] == held - 1
                assert first["inputs"]["gateway_in_flight"] == held
                assert desired(cloud) == 2

                held_back = scheduler.tick()  # within the scale-up cooldown
                assert (held_back["current"], held_back["desired"]) == (2, 2)
                assert desired(cloud) == 2

                second = scheduler.after_cooldown()
                assert (second["current"], second["desired"]) == (2, 3)
                assert desired(cloud) == 3

                bounded = scheduler.after_cooldown()  # still loaded: the policy's bound
                assert (bounded["current"], bounded["desired"]) == (3, 3)
                assert "upper bound" in bounded["reason"]
                assert desired(cloud) == 3
            assert all(a.result(timeout=30)[0] == 200 for a in answers)
        finally:
            pool.shutdown(wait=True)

        # Idle: one replica fewer per step after the scale-down cooldown, down to the
        # policy's lower bound (the group would take 0).
        assert eventually(lambda: load_of(config).waiting + load_of(config).running == 0)
        down = scheduler.after_cooldown()
        assert (down["current"], down["desired"]) == (3, 2)
        assert scheduler.tick()["desired"] == 2  # the scale-down cooldown
        assert scheduler.after_cooldown()["desired"] == 1
        floor = scheduler.after_cooldown()
        assert (floor["current"], floor["desired"]) == (1, 1)
        assert "lower bound" in floor["reason"]
        assert desired(cloud) == 1


def test_scale_fleet_before_any_publication_decides_nothing(cloud: Cloud) -> None:
    assert handlers.scale_fleet(scheduled_event(1), context()) == {"decisions": []}


def test_health_sweep_writes_hints_to_the_store_and_readings_to_cloudwatch(
    cloud: Cloud,
) -> None:
    with running_sim() as up, running_sim() as stopped:
        gone = stopped.url
    with running_sim() as up:
        publish(cloud, {"models": [group("chat", up.url, gone)]})
        out = handlers.health_sweep(scheduled_event(1), context())
    by_backend = {h["backend"]: h for h in out["hints"]}
    assert {name: h["healthy"] for name, h in by_backend.items()} == {
        "chat-0": True,
        "chat-1": False,
    }
    assert by_backend["chat-1"]["latency_ms"] is None
    assert [(h.backend, h.healthy) for h in hints(cloud)] == [("chat-0", True), ("chat-1", False)]

    cloudwatch: Any = cloud.moto.client("cloudwatch")
    listed = cloudwatch.list_metrics(Namespace="Gateway/Test")["Metrics"]
    names = {
        (m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
        for m in listed
    }
    healthy = {n for n in names if n[0] == "BackendHealthy"}
    assert {dict(d)["backend"] for _, d in healthy} == {"chat-0", "chat-1"}
    assert {dict(d)["backend"] for n, d in names if n == "ProbeLatency"} == {"chat-0"}
