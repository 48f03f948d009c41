"""Admission control (gateway.scheduling.admission) on real model groups of fake backends, with
a tiny FIFO scheduler of the test's own (the real schedulers are plugins, tested apart)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from gateway_schedulers.priority import PriorityScheduler
from prometheus_client import CollectorRegistry

from gateway.assembly import CatalogBuilder
from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.errors import RateLimitError, UpstreamUnavailableError
from gateway.identity import Principal
from gateway.plugins import Registries, collect_registries
from gateway.providers.base import ProviderContext
from gateway.routing.backends import ModelCatalog, ModelGroup
from gateway.routing.base import EngineMetrics
from gateway.scheduling.admission import Admission, Admissions, GroupAdmission
from gateway.scheduling.base import AdmissionTicket
from gateway.scheduling.metrics import SchedulingMetrics
from gateway.scheduling.saturation import ENGINE_READING_MAX_AGE_S
from gateway.testing import plugin_manager

pytestmark = pytest.mark.anyio
ALICE = Principal(key_id="k-alice", tenant="alice")


class Fifo:
    """First come, first served; records what the core tells it."""

    def __init__(self) -> None:
        self.queue: deque[AdmissionTicket] = deque()
        self.started_ids: list[str] = []
        self.finished_log: list[tuple[str, int, int]] = []
        self.served: dict[str, float] = {}

    def push(self, ticket: AdmissionTicket) -> None:
        self.queue.append(ticket)

    def pop(self, *, urgent: bool = False) -> AdmissionTicket | None:
        if urgent:  # nobody is urgent to this one
            return None
        return self.queue.popleft() if self.queue else None

    def remove(self, ticket: AdmissionTicket) -> bool:
        if ticket not in self.queue:
            return False
        self.queue.remove(ticket)
        return True

    def __len__(self) -> int:
        return len(self.queue)

    def started(self, ticket: AdmissionTicket) -> None:
        self.started_ids.append(ticket.request_id)

    def finished(self, ticket: AdmissionTicket, input_tokens: int, output_tokens: int) -> None:
        self.finished_log.append((ticket.request_id, input_tokens, output_tokens))
        key = ticket.share_key
        self.served[key] = self.served.get(key, 0.0) + input_tokens + 2 * output_tokens

    def depths(self) -> Mapping[int, int]:
        return dict(Counter(t.priority for t in self.queue))

    def service(self) -> Mapping[str, float]:
        return dict(self.served)


@functools.cache
def builtin_registries() -> Registries:
    return collect_registries(plugin_manager(builtins=True))


def catalog(*groups: dict[str, Any]) -> ModelCatalog:
    settings = settings_from_mapping({"models": list(groups)}, "test")
    return CatalogBuilder(builtin_registries(), ProviderContext()).catalog(settings)


def group_config(name: str = "chat", backends: int = 2, **scheduling: Any) -> dict[str, Any]:
    members = [{"provider": "fake", "name": f"{name}-{i}"} for i in range(backends)]
    return {"name": name, "backends": members, "scheduling": scheduling}


def admission_for(
    backends: int = 2, metrics: SchedulingMetrics | None = None, **scheduling: Any
) -> tuple[GroupAdmission, Fifo]:
    (group,) = catalog(group_config(backends=backends, **scheduling)).groups
    assert group.settings.scheduling is not None
    fifo = Fifo()
    return GroupAdmission(group, group.settings.scheduling, fifo, metrics), fifo


def ticket(request_id: str, deadline_s: float = 10.0, **extra: Any) -> AdmissionTicket:
    now = time.monotonic()
    fields: dict[str, Any] = {"input_tokens": 10, "output_tokens": 5, **extra}
    return AdmissionTicket(
        request_id=request_id,
        model="chat",
        principal=ALICE,
        deadline=now + deadline_s,
        enqueued_at=now,
        **fields,
    )


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run (a bounded number of turns) until ``condition`` holds."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def waiting(gate: GroupAdmission, *request_ids: str) -> list[asyncio.Task[Admission]]:
    """Start one admit per id, in order, each queued before the next starts."""
    tasks = []
    for request_id in request_ids:
        tasks.append(asyncio.ensure_future(gate.admit(ticket(request_id))))
        await queued(gate, gate.waiting + 1)
    return tasks


async def queued(gate: GroupAdmission, count: int) -> None:
    await until(lambda: gate.waiting == count)


def full_engine(waiting: float = 8.0, kv: float = 0.5, age_s: float = 0.0) -> EngineMetrics:
    return EngineMetrics(waiting, 4.0, kv, time.monotonic() - age_s)


def drain_all(group: ModelGroup) -> None:
    for backend in group.backends:
        backend.draining = True


async def test_an_unsaturated_group_admits_at_once_and_release_is_idempotent() -> None:
    gate, fifo = admission_for(max_in_flight=4)
    first = await gate.admit(ticket("r1"))
    second = await gate.admit(ticket("r2"))
    assert gate.admitted == 2
    # Uncontended: the scheduler is not told (nothing to order, no service counted).
    assert fifo.started_ids == []
    assert gate.waiting == 0
    first.release()
    first.release(100, 100)  # only the first release counts
    second.release(7, 3)
    assert gate.admitted == 0
    assert first.released
    assert fifo.finished_log == []


async def test_waiters_are_admitted_in_order_as_earlier_requests_release() -> None:
    gate, fifo = admission_for(max_in_flight=1)  # two backends: two at once
    holders = [await gate.admit(ticket("h1")), await gate.admit(ticket("h2"))]
    assert gate.saturated()
    tasks = await waiting(gate, "w1", "w2", "w3")
    assert not any(t.done() for t in tasks)
    assert gate.admitted == 2

    holders[0].release()
    await until(lambda: tasks[0].done())
    assert not tasks[1].done()
    assert fifo.started_ids == ["w1"]
    holders[1].release()
    tasks[0].result().release()
    await until(lambda: tasks[2].done())
    assert fifo.started_ids == ["w1", "w2", "w3"]
    assert [f[0] for f in fifo.finished_log] == ["w1"]  # the queued ones, as they end
    assert gate.admitted == 2
    assert gate.waiting == 0
    for task in tasks[1:]:
        task.result().release()
    assert gate.admitted == 0


async def test_a_newcomer_does_not_pass_a_waiter_when_capacity_frees_unannounced() -> None:
    gate, fifo = admission_for(max_engine_waiting=4)
    for backend in gate.group.backends:
        backend.engine = full_engine()
    (early,) = await waiting(gate, "early")
    for backend in gate.group.backends:  # room, but nobody pokes
        backend.engine = full_engine(waiting=0)
    late = await gate.admit(ticket("late"))  # queued behind `early`, which goes first
    assert fifo.started_ids == ["early", "late"]
    await until(early.done)
    early.result().release()
    late.release()
    assert gate.admitted == 0


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    gate, _ = admission_for(backends=1, max_in_flight=1, max_queue=1)
    holder = await gate.admit(ticket("h"))
    (queued,) = await waiting(gate, "w")
    with pytest.raises(RateLimitError) as refused:
        await gate.admit(ticket("x"))
    assert refused.value.status == 429
    assert refused.value.code == "queue_full"
    assert int(refused.value.headers["retry-after"]) >= 1
    assert "`chat`" in refused.value.message
    assert gate.waiting == 1
    holder.release()
    (await queued).release()


async def test_no_queue_at_all_refuses_whenever_the_group_is_saturated() -> None:
    gate, _ = admission_for(backends=1, max_in_flight=1, max_queue=0)
    holder = await gate.admit(ticket("h"))
    with pytest.raises(RateLimitError, match="full"):
        await gate.admit(ticket("x"))
    holder.release()


async def test_the_deadline_gives_429_queue_timeout_and_the_waiter_leaves() -> None:
    gate, fifo = admission_for(backends=1, max_in_flight=1)
    holder = await gate.admit(ticket("h"))
    with pytest.raises(RateLimitError) as timed_out:
        await gate.admit(ticket("late", deadline_s=0.02))
    assert timed_out.value.status == 429
    assert timed_out.value.code == "queue_timeout"
    assert int(timed_out.value.headers["retry-after"]) >= 1
    assert "`chat`" in timed_out.value.message
    assert gate.waiting == 0
    assert len(fifo) == 0
    assert gate.admitted == 1  # only the holder
    holder.release()
    assert gate.admitted == 0
    assert fifo.started_ids == []  # the holder came in uncontended


async def test_a_ticket_past_its_deadline_times_out_without_waiting() -> None:
    gate, _ = admission_for(backends=1, max_in_flight=1)
    holder = await gate.admit(ticket("h"))
    with pytest.raises(RateLimitError, match="capacity"):
        await gate.admit(ticket("late", deadline_s=-1.0))
    assert gate.waiting == 0
    holder.release()


async def test_a_cancelled_waiter_leaves_the_queue_at_once() -> None:
    gate, fifo = admission_for(backends=1, max_in_flight=1)
    holder = await gate.admit(ticket("h"))
    leaver, stayer = await waiting(gate, "leaver", "stayer")
    leaver.cancel()
    await until(leaver.done)
    assert leaver.cancelled()
    assert gate.waiting == 1
    assert [t.request_id for t in fifo.queue] == ["stayer"]
    holder.release()
    await until(stayer.done)
    assert fifo.started_ids == ["stayer"]
    stayer.result().release()
    assert gate.admitted == 0


async def test_a_cancellation_racing_an_admission_leaks_no_slot() -> None:
    gate, fifo = admission_for(backends=1, max_in_flight=1)
    holder = await gate.admit(ticket("h"))
    (racer,) = await waiting(gate, "racer")
    holder.release()  # admits `racer` (its future resolves)...
    assert gate.admitted == 1
    racer.cancel()  # ...before its task runs again: its client left
    await until(racer.done)
    assert racer.cancelled()
    assert gate.admitted == 0
    assert ("racer", 0, 0) in fifo.finished_log  # released, having used nothing
    again = await gate.admit(ticket("next"))  # the slot is free
    again.release()


async def test_fresh_engine_readings_saturate_and_a_poke_releases_waiters() -> None:
    gate, fifo = admission_for(max_engine_waiting=4)
    a, b = gate.group.backends
    a.engine = full_engine()
    b.engine = full_engine()
    assert gate.saturated()
    tasks = await waiting(gate, "w1", "w2")
    await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)
    b.engine = full_engine(waiting=0)  # fresh metrics arrive: room on b
    gate.poke()
    await until(lambda: all(t.done() for t in tasks))  # no cap on admissions: both go
    assert fifo.started_ids == ["w1", "w2"]
    for task in tasks:
        task.result().release()


async def test_stale_or_missing_engine_readings_do_not_saturate() -> None:
    gate, _ = admission_for(max_engine_waiting=4, max_kv_cache=0.9)
    a, b = gate.group.backends
    assert not gate.saturated()  # no readings at all: the engine signal is ignored
    a.engine = full_engine()
    assert not gate.saturated()  # b has no reading: it counts as having room
    b.engine = full_engine(age_s=ENGINE_READING_MAX_AGE_S + 1)
    assert not gate.saturated()  # b's reading is stale
    b.engine = full_engine(waiting=0, kv=0.95)  # fresh, KV cache past its threshold
    assert gate.saturated()
    b.engine = full_engine(waiting=0, kv=0.5)
    assert not gate.saturated()
    b.draining = True  # the only routable backend left is full
    assert gate.saturated()


async def test_with_no_routable_backend_the_deadline_gives_503() -> None:
    gate, _ = admission_for()  # no caps: only an outage saturates
    assert not gate.saturated()
    drain_all(gate.group)
    assert gate.saturated()
    with pytest.raises(UpstreamUnavailableError) as outage:
        await gate.admit(ticket("r", deadline_s=0.02))
    assert outage.value.status == 503
    assert outage.value.code == "queue_timeout"
    assert int(outage.value.headers["retry-after"]) >= 1
    assert "`chat`" in outage.value.message
    gate.group.backends = []
    assert gate.saturated()


async def test_a_backend_coming_back_and_a_poke_admit_the_waiters() -> None:
    gate, _ = admission_for()
    drain_all(gate.group)
    (task,) = await waiting(gate, "r")
    gate.group.backends[0].draining = False
    gate.poke()
    await until(task.done)
    task.result().release()
    assert gate.admitted == 0


async def test_the_snapshot_shows_capacity_waiters_and_service() -> None:
    gate, _ = admission_for(max_in_flight=1, max_queue=50)
    done = await gate.admit(ticket("done"))
    done.release(100, 10)
    holders = [await gate.admit(ticket("h1")), await gate.admit(ticket("h2"))]
    tasks = await waiting(gate, "w1")
    tasks.append(asyncio.ensure_future(gate.admit(ticket("w2", priority=3))))
    await queued(gate, 2)
    snap = gate.snapshot()
    assert snap["scheduler"] == "fifo"
    assert snap["admitted"] == 2
    assert snap["capacity"] == 2
    assert snap["saturated"] is True
    assert snap["queued"] == 2
    assert snap["max_queue"] == 50
    assert snap["waiting"] == {"0": 1, "3": 1}
    assert [t["request_id"] for t in snap["tickets"]] == ["w1", "w2"]
    first = snap["tickets"][0]
    assert first["share_key"] == "tenant:alice"
    assert first["priority"] == 0
    assert first["waited_s"] >= 0
    assert 0 < first["time_left_s"] <= 10
    assert snap["service"] == {}  # `done` came in uncontended: not counted
    for task in tasks:
        task.cancel()
    for holder in holders:
        holder.release()
    uncapped, _ = admission_for()
    assert uncapped.snapshot()["capacity"] is None


async def test_the_metrics_count_admissions_waits_timeouts_refusals_and_service() -> None:
    registry = CollectorRegistry()
    gate, fifo = admission_for(
        backends=1, metrics=SchedulingMetrics(registry), max_in_flight=1, max_queue=1
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"model": "chat", **labels})

    holder = await gate.admit(ticket("h"))
    (queued,) = await waiting(gate, "w")
    assert value("gateway_queue_depth", band="0") == 1
    with pytest.raises(RateLimitError):
        await gate.admit(ticket("refused"))
    holder.release(10, 10)
    admitted = await queued
    assert value("gateway_queue_depth", band="0") == 0
    with pytest.raises(RateLimitError):
        await gate.admit(ticket("late", deadline_s=0.01))
    admitted.release(1, 1)

    assert value("gateway_queue_admitted_total", how="direct") == 1
    assert value("gateway_queue_admitted_total", how="queued") == 1
    assert value("gateway_queue_refused_total") == 1
    assert value("gateway_queue_timeouts_total") == 1
    assert value("gateway_queue_wait_seconds_count") == 1
    # Only the queued request's service is counted (1 + 2 x 1); the holder came uncontended.
    assert value("gateway_scheduler_service_tokens", tenant="tenant:alice") == 3
    assert fifo.service() == {"tenant:alice": 3}


def fifo_registry(factory: Callable[..., Any] = Fifo) -> Registries:
    registries = Registries()
    registries.schedulers.add("test", "fifo", factory)
    return registries


async def test_admissions_are_built_for_the_groups_with_a_scheduling_section() -> None:
    cat = catalog(
        {"name": "plain", "backends": [{"provider": "fake", "name": "p"}]},
        group_config("chat", backends=1, max_in_flight=1),
    )
    admissions = Admissions.build(cat, fifo_registry().schedulers, "test")
    gate = admissions.get("chat")
    assert isinstance(gate, GroupAdmission)
    assert isinstance(gate.scheduler, Fifo)
    assert admissions.get("plain") is None
    holder = await gate.admit(ticket("h"))
    (task,) = await waiting(gate, "w")
    assert set(admissions.snapshot()) == {"chat"}
    assert admissions.snapshot()["chat"]["queued"] == 1
    admissions.poke_all()  # still saturated: nothing moves
    assert not task.done()
    holder.release()
    (await task).release()


def test_admissions_name_the_config_field_of_a_bad_scheduler() -> None:
    cat = catalog({"name": "a", "backends": [{"provider": "fake"}]}, group_config("chat"))
    with pytest.raises(ConfigError) as unknown:
        Admissions.build(cat, Registries().schedulers, "test")
    assert unknown.value.field == "models[1].scheduling.scheduler.backend"
    with pytest.raises(ConfigError) as wrong:
        Admissions.build(cat, fifo_registry(lambda: object()).schedulers, "test")
    assert wrong.value.field == "models[1].scheduling.scheduler.backend"
    assert "not a Scheduler" in wrong.value.problem
    bad = catalog(group_config("chat", scheduler={"backend": "fifo", "options": {"nope": 1}}))
    with pytest.raises(ConfigError) as options:
        Admissions.build(bad, fifo_registry().schedulers, "test")
    assert options.value.field == "models[0].scheduling.scheduler.options"


def priority_gate(**scheduling: Any) -> GroupAdmission:
    """One backend's group ordered by the real ``priority`` scheduler."""
    (group,) = catalog(group_config(backends=1, **scheduling)).groups
    assert group.settings.scheduling is not None
    return GroupAdmission(group, group.settings.scheduling, PriorityScheduler())


async def test_the_headroom_admits_an_urgent_request_at_once_and_holds_the_others_back() -> None:
    gate = priority_gate(max_in_flight=3, headroom=1)
    low = [await gate.admit(ticket("l1")), await gate.admit(ticket("l2"))]
    assert gate.saturated()  # for all but the urgent: 3 - 1 slots
    (waiter,) = await waiting(gate, "l3")
    urgent = await asyncio.wait_for(gate.admit(ticket("u1", priority=1)), 1)
    assert gate.admitted == 3
    assert not waiter.done()
    with_band_2 = asyncio.ensure_future(gate.admit(ticket("u2", priority=2)))
    await queued(gate, 2)  # the headroom is taken: an urgent one waits too
    low[0].release()  # a slot of the headroom frees: the urgent waiter takes it, not l3
    await until(lambda: with_band_2.done())
    assert not waiter.done()
    urgent.release()
    low[1].release()  # now below max_in_flight - headroom: l3 goes
    await until(lambda: waiter.done())
    assert gate.snapshot()["headroom"] == 1
    for task in (waiter, with_band_2):
        task.result().release()
    assert gate.admitted == 0


async def test_a_scheduler_without_urgency_leaves_the_headroom_unused() -> None:
    gate, fifo = admission_for(backends=1, max_in_flight=2, headroom=1)
    holder = await gate.admit(ticket("h"))
    (task,) = await waiting(gate, "w")
    gate.poke()
    assert not task.done()
    holder.release()
    (await task).release()
    # with a headroom, the scheduler is told of direct admissions too
    assert fifo.started_ids == ["h", "w"]
    assert [entry[0] for entry in fifo.finished_log] == ["h", "w"]


@pytest.mark.parametrize("scheduling", [{"headroom": 1}, {"headroom": 2, "max_in_flight": 2}])
def test_a_headroom_needs_a_larger_max_in_flight(scheduling: dict[str, Any]) -> None:
    cat = catalog(group_config("chat", **scheduling))
    with pytest.raises(ConfigError) as error:
        Admissions.build(cat, fifo_registry().schedulers, "gateway.yaml")
    assert error.value.field == "models[0].scheduling.headroom"
    assert "max_in_flight" in error.value.problem


async def test_a_waiter_that_left_as_it_was_popped_is_uncounted() -> None:
    gate, fifo = admission_for(backends=1, max_in_flight=1)
    holder = await gate.admit(ticket("h"))
    (task,) = await waiting(gate, "gone")
    task.cancel()  # its future is cancelled now; its handler runs on a later turn
    holder.release()  # ... and the pump pops it before that
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ("gone", 0, 0) in fifo.finished_log  # what the pop counted is uncounted
    assert gate.admitted == 0
    assert gate.waiting == 0


class _NoUrgency(Fifo):
    def pop(self) -> AdmissionTicket | None:  # type: ignore[override]  # an older plugin's
        return self.queue.popleft() if self.queue else None


def test_a_headroom_needs_a_scheduler_that_knows_urgency() -> None:
    cat = catalog(group_config("chat", max_in_flight=4, headroom=1))
    with pytest.raises(ConfigError) as error:
        Admissions.build(cat, fifo_registry(_NoUrgency).schedulers, "gateway.yaml")
    assert error.value.field == "models[0].scheduling.headroom"
    assert "pop(urgent" in error.value.problem
    assert Admissions.build(
        catalog(group_config("chat", max_in_flight=4)), fifo_registry(_NoUrgency).schedulers, "g"
    ).get("chat")
