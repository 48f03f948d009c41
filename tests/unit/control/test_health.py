"""health-sweep (gateway.control.health) against real servers on loopback: simulators, a port
nobody listens on, a server that never answers; and the replicas' side (gateway.control.hints):
hints applied to a live catalog, a hinted-down backend tried last but never excluded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from gateway.assembly import CatalogBuilder
from gateway.clock import ManualClock
from gateway.config_loader import settings_from_mapping
from gateway.control.base import HealthHint, MetricPoint
from gateway.control.health import NAMESPACE, health_sweep
from gateway.control.hints import apply_health_hints, follow_health_hints
from gateway.control.parts import plugin_registries
from gateway.errors import ServiceUnavailableError
from gateway.providers.base import ProviderContext
from gateway.routing.backends import ModelCatalog
from gateway.settings import Settings
from tests.support.control_store import MemoryControlStore
from tests.support.processes import free_port
from tests.support.servers import Sim, running_sim

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0


class RecordingPublisher:
    """A metric publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, list[MetricPoint]]] = []

    async def put(self, namespace: str, points: Sequence[MetricPoint]) -> None:
        self.puts.append((namespace, list(points)))

    async def aclose(self) -> None:
        return None


class BrokenPublisher:
    async def put(self, namespace: str, points: Sequence[MetricPoint]) -> None:
        raise ConnectionError("metrics service down")

    async def aclose(self) -> None:
        return None


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers: a probe of it can only time out."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def sim() -> Iterator[Sim]:
    with running_sim() as s:
        yield s


def config(*groups: tuple[str, list[dict[str, str]]]) -> Settings:
    models = [
        {"name": name, "backends": [{"model": "sim-model", **b} for b in backends]}
        for name, backends in groups
    ]
    return settings_from_mapping({"models": models})


async def test_sweep_sees_each_backend_as_it_is(sim: Sim) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    with running_sim() as sick:
        sick.set_faults(health_status=503)
        async with silent_server() as silent:
            settings = config(
                (
                    "chat",
                    [
                        {"name": "up", "url": sim.url},
                        {"name": "sick", "url": sick.url},
                        {"name": "refused", "url": nobody},
                        {"name": "silent", "url": silent},
                    ],
                ),
                # No health-check capability: probed with GET /health.
                (
                    "cloud",
                    [
                        {"name": "plain", "provider": "openai", "url": sim.url, "api_key": "k"},
                        {"name": "gone", "provider": "openai", "url": nobody, "api_key": "k"},
                    ],
                ),
            )
            store = MemoryControlStore()
            publisher = RecordingPublisher()
            hints = await health_sweep(
                settings, store=store, publishers=[publisher], timeout_s=0.5, now=NOW
            )
    by_name = {h.backend: h for h in hints}
    assert [h.backend for h in hints] == ["up", "sick", "refused", "silent", "plain", "gone"]
    assert {n for n, h in by_name.items() if h.healthy} == {"up", "plain"}
    assert all(h.checked_at == NOW for h in hints)
    assert by_name["up"].latency_ms is not None
    assert by_name["up"].error is None
    assert by_name["sick"].error == "its health check failed"
    assert by_name["silent"].error == "no answer within 0.5 s"
    assert by_name["refused"].latency_ms is None
    assert by_name["plain"].group == "cloud"
    assert str(by_name["gone"].error).startswith("ClientConnectorError")
    assert store.hints == hints

    [(namespace, points)] = publisher.puts
    assert namespace == NAMESPACE
    healthy = {p.dimensions["backend"]: p.value for p in points if p.name == "BackendHealthy"}
    assert healthy == {
        "up": 1.0,
        "sick": 0.0,
        "refused": 0.0,
        "silent": 0.0,
        "plain": 1.0,
        "gone": 0.0,
    }
    latency = {p.dimensions["backend"] for p in points if p.name == "ProbeLatency"}
    assert latency == {"up", "plain"}
    assert all(p.dimensions["group"] == "chat" for p in points if p.dimensions["backend"] == "up")


async def test_a_backend_without_url_or_health_check_gets_no_hint(sim: Sim) -> None:
    settings = config(
        ("chat", [{"name": "up", "url": sim.url}]),
        ("cloud", [{"name": "openai-default", "provider": "openai", "api_key": "k"}]),
    )
    hints = await health_sweep(
        settings, store=MemoryControlStore(), publishers=[], timeout_s=1, now=NOW
    )
    assert [h.backend for h in hints] == ["up"]


async def test_a_failing_publisher_does_not_fail_the_sweep(sim: Sim) -> None:
    settings = config(("chat", [{"name": "up", "url": sim.url}]))
    store = MemoryControlStore()
    publisher = RecordingPublisher()
    hints = await health_sweep(
        settings, store=store, publishers=[BrokenPublisher(), publisher], timeout_s=1, now=NOW
    )
    assert store.hints == hints
    assert len(publisher.puts) == 1


async def test_an_unreachable_store_fails_the_sweep(sim: Sim) -> None:
    settings = config(("chat", [{"name": "up", "url": sim.url}]))
    store = MemoryControlStore()
    store.reachable = False
    publisher = RecordingPublisher()
    with pytest.raises(ServiceUnavailableError):
        await health_sweep(settings, store=store, publishers=[publisher], timeout_s=1, now=NOW)
    assert publisher.puts == []


# -- the replicas' side -----------------------------------------------------------------------


def catalog_of(*names: str) -> ModelCatalog:
    """A live catalog of one group ``chat`` over backends nobody calls (routing only)."""
    settings = config(("chat", [{"name": n, "url": "http://127.0.0.1:9"} for n in names]))
    return CatalogBuilder(plugin_registries(settings), ProviderContext()).catalog(settings)


def hint(backend: str, healthy: bool, age_s: float = 0.0) -> HealthHint:
    return HealthHint("chat", backend, healthy, 1.0 if healthy else None, NOW - age_s)


def hinted(catalog: ModelCatalog) -> list[str]:
    return [b.name for g in catalog.groups for b in g.backends if b.health.hinted_down]


def test_hints_apply_to_the_backends_they_name_while_fresh() -> None:
    catalog = catalog_of("a", "b", "c")
    hints = [
        hint("a", False),
        hint("b", True),
        hint("c", False, age_s=200),  # older than max_age_s: ignored
        hint("elsewhere", False),
        HealthHint("other-group", "b", False, None, NOW),
    ]
    assert apply_health_hints(catalog, hints, NOW, max_age_s=180) == ["a"]
    assert hinted(catalog) == ["a"]
    assert apply_health_hints(catalog, [], NOW, max_age_s=180) == []
    assert hinted(catalog) == []


def test_a_hinted_down_backend_is_tried_last_never_excluded() -> None:
    catalog = catalog_of("a", "b", "c")
    group = catalog.groups[0]
    a, b, c = group.backends
    apply_health_hints(catalog, [hint("a", False)], NOW, max_age_s=180)
    assert group.candidates() == [b, c]
    assert group.candidates(exclude=[b, c]) == [a]  # what dispatch asks once b and c failed
    b.health.healthy = False  # the replica's own probes: b is down
    c.health.trip(30)  # and c's breaker is open
    assert group.candidates() == [a]
    apply_health_hints(catalog, [hint(n, False) for n in "abc"], NOW, max_age_s=180)
    b.health.healthy = True
    assert group.candidates() == [a, b]


async def test_follow_health_hints_reads_the_store_and_keeps_hints_when_it_is_down() -> None:
    catalog = catalog_of("a", "b")
    store = MemoryControlStore()
    store.hints = [hint("a", False), hint("b", True)]
    clock = ManualClock(start=NOW)

    async def reads_applied() -> None:
        # The hints of one read are applied before the next read starts.
        for _ in range(2):
            store.health_read.clear()
            await asyncio.wait_for(store.health_read.wait(), 5)

    task = asyncio.create_task(
        follow_health_hints(store, catalog, interval_s=0.01, max_age_s=60, clock=clock)
    )
    try:
        await reads_applied()
        assert hinted(catalog) == ["a"]
        store.reachable = False
        await reads_applied()
        assert hinted(catalog) == ["a"]  # the last hints read stay...
        clock.advance(61)
        await reads_applied()
        assert hinted(catalog) == []  # ...until they age out
        store.reachable = True
        store.hints = [hint("b", False, age_s=-61)]
        await reads_applied()
        assert hinted(catalog) == ["b"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert store.health_reads >= 8
