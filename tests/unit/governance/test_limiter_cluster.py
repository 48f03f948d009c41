"""The ``redis`` limiter on a real 3-shard Redis Cluster (loopback): demands whose tags live on
every shard, all or nothing within each, settlements batched per tag."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from gateway_limits.redis_limiter import RedisLimiter
from redis.cluster import RedisCluster
from redis.crc import key_slot

from gateway.governance.limiter import Rule
from tests.support.redis_server import RedisClusterServers, running_redis_cluster
from tests.unit.governance.limiter_support import Recorder, demand

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with running_redis_cluster() as servers:
        yield servers


@pytest.fixture
async def limiter(cluster: RedisClusterServers) -> AsyncIterator[RedisLimiter]:
    lim = RedisLimiter(url=cluster.url, cluster=True, prefix="c", events=Recorder().events)
    yield lim
    await lim.aclose()


def tags_on_every_shard(cluster: RedisClusterServers) -> dict[int, str]:
    """A tag per node (by port) whose keys hash to that node's slots."""
    client = RedisCluster.from_url(cluster.url)
    found: dict[int, str] = {}
    for i in range(1000):
        tag = f"t:{i}"
        node = client.nodes_manager.get_node_from_slot(key_slot(f"{{{tag}}}".encode()))
        found.setdefault(int(node.port), tag)
        if len(found) == len(cluster.nodes):
            break
    client.close()
    assert len(found) == 3
    return found


async def test_every_shard_all_or_nothing_and_batched(
    cluster: RedisClusterServers, limiter: RedisLimiter
) -> None:
    tags = tags_on_every_shard(cluster)
    rpm = Rule("tenant:x", "requests", 2)
    tpm = Rule("tenant:x", "tokens", 100)
    budget = Rule("tenant:x", "budget", 1000, "day", (0.1,))
    rules = (rpm, tpm, budget)
    held = []
    for tag in tags.values():
        first = await limiter.reserve(demand(rules, tag=tag, tokens=60, cost=200))
        assert first.reservation is not None
        held.append(first.reservation)
        refused = await limiter.reserve(demand(rules, tag=tag, tokens=60, cost=200))
        assert refused.denied == tpm
        # nothing was taken: the second request and the budget are still there
        assert [s.remaining for s in await limiter.states(rules, tag)] == [1, 40, 800]
    for reservation in held:
        limiter.settle(reservation, 10, 150)
    flushes = limiter.calls["flush"]
    assert await limiter.flush(force=True)
    assert limiter.calls["flush"] - flushes == 3  # one call per tag
    for tag in tags.values():
        assert [s.remaining for s in await limiter.states(rules, tag)] == [1, 90, 850]
    for port in tags:  # the keys really are spread over the three shards
        node = redis.Redis(host="127.0.0.1", port=port)
        assert node.dbsize() > 0
        node.close()
    assert limiter.budget_used("tenant:x") == pytest.approx(0.15)
