"""The built-in schedulers: ``fifo``, ``priority`` and ``fair_share`` (virtual token counters)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable

import gateway_schedulers
import pytest
from gateway_schedulers.fair_share import FairShareScheduler
from gateway_schedulers.fifo import FifoScheduler
from gateway_schedulers.priority import PriorityScheduler

from gateway.identity import Principal
from gateway.plugins import collect_registries, make_plugin_manager
from gateway.scheduling.base import AdmissionTicket, Scheduler

FACTORIES: list[Callable[[], Scheduler]] = [FifoScheduler, PriorityScheduler, FairShareScheduler]
_ids = itertools.count()


def ticket(
    tenant: str,
    *,
    priority: int = 0,
    weight: float = 1.0,
    input_tokens: int = 100,
    output_tokens: int = 50,
) -> AdmissionTicket:
    return AdmissionTicket(
        request_id=f"req-{next(_ids)}",
        model="m",
        principal=Principal(key_id=f"key-{tenant}", tenant=tenant),
        priority=priority,
        weight=weight,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def drain(scheduler: Scheduler) -> list[AdmissionTicket]:
    out = []
    while (next_one := scheduler.pop()) is not None:
        out.append(next_one)
    return out


def serve_one(scheduler: Scheduler, used: float = 1.0) -> AdmissionTicket:
    """A server of capacity one: admit the next waiter and finish it, having used ``used`` of
    its estimated output."""
    chosen = scheduler.pop()
    assert chosen is not None
    scheduler.started(chosen)
    scheduler.finished(chosen, chosen.input_tokens, int(chosen.output_tokens * used))
    return chosen


def cost(t: AdmissionTicket, used: float = 1.0) -> float:
    return (t.input_tokens + 2 * int(t.output_tokens * used)) / t.weight


def waiting_keys(tickets: Iterable[AdmissionTicket], served: set[AdmissionTicket]) -> set[str]:
    return {t.share_key for t in tickets if t not in served}


# --- all three ---------------------------------------------------------------------------


def test_the_plugin_registers_the_three_by_name() -> None:
    pm = make_plugin_manager(entry_points=False, extra=[("schedulers", gateway_schedulers)])
    registries = collect_registries(pm)
    assert registries.schedulers.names() == ["fair_share", "fifo", "priority"]
    assert registries.schedulers.get("fair_share") is FairShareScheduler
    for name in registries.schedulers:
        factory = registries.schedulers.get(name)
        assert factory is not None
        assert isinstance(factory(), Scheduler)
        with pytest.raises(TypeError):
            factory(quantum=3)


@pytest.mark.parametrize("factory", FACTORIES)
def test_remove_of_a_middle_waiter_keeps_len_and_depths_exact(
    factory: Callable[[], Scheduler],
) -> None:
    scheduler = factory()
    first, middle, last = ticket("a"), ticket("a"), ticket("a")
    high = ticket("b", priority=2)
    for t in (first, middle, last, high):
        scheduler.push(t)
    assert len(scheduler) == 4
    assert scheduler.depths() == {0: 3, 2: 1}

    assert scheduler.remove(middle) is True
    assert scheduler.remove(middle) is False
    assert len(scheduler) == 3
    assert scheduler.depths() == {0: 2, 2: 1}
    assert scheduler.remove(high) is True
    assert scheduler.depths() == {0: 2}

    assert drain(scheduler) == [first, last]
    assert len(scheduler) == 0
    assert scheduler.depths() == {}
    assert scheduler.pop() is None
    assert scheduler.remove(first) is False


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_ticket_cannot_wait_twice(factory: Callable[[], Scheduler]) -> None:
    scheduler = factory()
    t = ticket("a")
    scheduler.push(t)
    with pytest.raises(ValueError, match="waiting already"):
        scheduler.push(t)
    assert len(scheduler) == 1


# --- fifo and priority -----------------------------------------------------------------


def test_fifo_serves_in_arrival_order_whatever_the_priority() -> None:
    scheduler = FifoScheduler()
    priorities = {"a": 0, "b": 5, "c": 1, "d": 9, "e": 0}
    tickets = [ticket(tenant, priority=p) for tenant, p in priorities.items()]
    for t in tickets:
        scheduler.push(t)
    assert scheduler.depths() == {0: 2, 5: 1, 1: 1, 9: 1}
    assert drain(scheduler) == tickets
    assert scheduler.service() == {}


def test_priority_bands_jump_the_queue_and_keep_arrival_order_within() -> None:
    scheduler = PriorityScheduler()
    low1, low2 = ticket("a"), ticket("b")
    high1, high2 = ticket("c", priority=3), ticket("a", priority=3)
    mid = ticket("b", priority=1)
    negative = ticket("c", priority=-2)
    for t in (low1, negative, high1, low2, mid, high2):
        scheduler.push(t)
    assert scheduler.pop() is high1
    # A newcomer to the top band goes before the lower bands' older waiters.
    top = ticket("d", priority=7)
    scheduler.push(top)
    assert drain(scheduler) == [top, high2, mid, low1, low2, negative]


def test_priority_reuses_a_band_that_emptied() -> None:
    scheduler = PriorityScheduler()
    scheduler.push(first := ticket("a", priority=4))
    assert scheduler.pop() is first
    low, again = ticket("a"), ticket("b", priority=4)
    scheduler.push(low)
    scheduler.push(again)
    assert drain(scheduler) == [again, low]


# --- fair_share --------------------------------------------------------------------------


def test_a_light_tenant_is_not_starved_by_a_heavy_one() -> None:
    rng = random.Random(7)
    scheduler = FairShareScheduler()

    def sized(tenant: str) -> AdmissionTicket:
        return ticket(tenant, input_tokens=rng.randint(10, 400), output_tokens=rng.randint(1, 300))

    heavy = [sized("heavy") for _ in range(100)]
    light = [sized("light") for _ in range(10)]
    # The heavy tenant arrives first with all of its backlog: fifo would serve light last.
    for t in heavy + light:
        scheduler.push(t)
    bound = 2 * max(t.estimated_service for t in heavy + light)
    served_tokens = {"tenant:heavy": 0.0, "tenant:light": 0.0}
    served: set[AdmissionTicket] = set()
    order = []
    while len(scheduler):
        t = serve_one(scheduler, used=0.5)
        served.add(t)
        order.append(t)
        served_tokens[t.share_key] += cost(t, used=0.5)
        if waiting_keys(heavy + light, served) == {"tenant:heavy", "tenant:light"}:
            counters = scheduler.service()
            assert abs(counters["tenant:heavy"] - counters["tenant:light"]) <= bound
            assert abs(served_tokens["tenant:heavy"] - served_tokens["tenant:light"]) <= bound
    assert served == set(heavy + light)
    assert len(order) == len(served)
    last_light = max(order.index(t) for t in light)
    heavy_left = sum(1 for t in order[last_light:] if t in heavy)
    assert heavy_left >= 50, f"light finished at {last_light} with {heavy_left} heavy left"


def test_a_weight_two_tenant_gets_twice_the_service() -> None:
    scheduler = FairShareScheduler()
    double = [ticket("double", weight=2.0) for _ in range(200)]
    single = [ticket("single") for _ in range(200)]
    for a, b in zip(single, double, strict=True):
        scheduler.push(a)
        scheduler.push(b)
    tokens: dict[str, float] = {"tenant:double": 0, "tenant:single": 0}
    for _ in range(150):
        t = serve_one(scheduler)
        tokens[t.share_key] += t.estimated_service
    bound = 2 * max(t.estimated_service for t in single)
    # Weighted service stays within the bound, so raw service is about two to one.
    assert abs(tokens["tenant:double"] / 2 - tokens["tenant:single"]) <= bound
    assert tokens["tenant:double"] > 1.8 * tokens["tenant:single"]
    counters = scheduler.service()
    assert abs(counters["tenant:double"] - counters["tenant:single"]) <= bound


def test_a_returning_tenant_is_lifted_and_gets_no_burst() -> None:
    scheduler = FairShareScheduler()
    early = ticket("idle")
    scheduler.push(early)
    for tenant in ("a", "b"):
        for _ in range(300):
            scheduler.push(ticket(tenant))
    assert serve_one(scheduler) is early
    for _ in range(200):
        serve_one(scheduler)
    before = dict(scheduler.service())
    assert min(before["tenant:a"], before["tenant:b"]) >= 100 * early.estimated_service

    returned = [ticket("idle") for _ in range(60)]
    for t in returned:
        scheduler.push(t)
    lifted = scheduler.service()["tenant:idle"]
    assert lifted == min(before["tenant:a"], before["tenant:b"])

    since: dict[str, float] = {"tenant:a": 0, "tenant:b": 0, "tenant:idle": 0}
    bound = 2 * early.estimated_service
    for _ in range(90):
        t = serve_one(scheduler)
        since[t.share_key] += t.estimated_service
        assert since["tenant:idle"] <= min(since["tenant:a"], since["tenant:b"]) + bound
    assert since["tenant:idle"] >= since["tenant:a"] - bound


def test_an_idle_tenant_admitted_at_once_is_lifted_too() -> None:
    scheduler = FairShareScheduler()
    for tenant in ("a", "b"):
        for _ in range(20):
            scheduler.push(ticket(tenant))
    for _ in range(20):
        serve_one(scheduler)
    floor = min(scheduler.service().values())
    direct = ticket("direct")
    scheduler.started(direct)
    assert scheduler.service()["tenant:direct"] == floor + direct.estimated_service
    # Its next request waits behind the others' instead of jumping them all.
    scheduler.push(later := ticket("direct"))
    assert scheduler.pop() is not later
    scheduler.finished(direct, 0, 0)
    assert scheduler.service()["tenant:direct"] == floor


def test_started_counts_every_admitted_request_and_finished_corrects_it() -> None:
    scheduler = FairShareScheduler()
    t = ticket("a", weight=2.0, input_tokens=100, output_tokens=100)
    still = ticket("a", weight=2.0, input_tokens=10, output_tokens=0)
    scheduler.started(t)
    assert scheduler.service() == {"tenant:a": 150.0}
    scheduler.started(still)
    other = ticket("b")
    scheduler.started(other)
    # "b" was idle: lifted to the smallest active counter (155) before its charge.
    assert scheduler.service() == {"tenant:a": 155.0, "tenant:b": 155.0 + 200}
    scheduler.finished(t, 100, 10)
    assert scheduler.service() == {"tenant:a": 65.0, "tenant:b": 355.0}
    # Nothing runs for "a" any more and it is at or below the active minimum: dropped (a
    # return would be lifted at least that far anyway).
    scheduler.finished(still, 10, 0)
    assert scheduler.service() == {"tenant:b": 355.0}
    # Nothing is active: the last counter goes too.
    scheduler.finished(other, 0, 0)
    assert scheduler.service() == {}
    # A finish for a request that never started counts nothing.
    scheduler.finished(ticket("c"), 500, 500)
    assert scheduler.service() == {}


def test_idle_counters_are_swept_once_the_others_pass_them() -> None:
    scheduler = FairShareScheduler()
    for tenant in ("a", "b"):
        for _ in range(2000):
            scheduler.push(ticket(tenant))
    for i in range(300):
        # A one-shot tenant is lifted, served once, then idle above the active minimum.
        scheduler.push(ticket(f"once-{i}"))
        for _ in range(3):
            serve_one(scheduler)
    counters = scheduler.service()
    assert len(counters) < 150
    assert {"tenant:a", "tenant:b"} <= counters.keys()


def test_bands_come_before_fairness() -> None:
    scheduler = FairShareScheduler()
    for _ in range(10):
        hog = ticket("hog", priority=1)
        scheduler.started(hog)
        scheduler.finished(hog, hog.input_tokens, hog.output_tokens)
    scheduler.started(keep_active := ticket("hog", priority=1))
    assert scheduler.service()["tenant:hog"] > 0
    high = [ticket("hog", priority=1) for _ in range(3)]
    low = [ticket("fresh") for _ in range(3)]
    for a, b in zip(low, high, strict=True):
        scheduler.push(a)
        scheduler.push(b)
    assert scheduler.depths() == {0: 3, 1: 3}
    assert drain(scheduler) == high + low
    scheduler.finished(keep_active, 0, 0)


def test_fair_share_always_pops_the_least_served_key_of_the_top_band() -> None:
    """Random pushes, pops, removals, direct admissions and finishes against a plain model of
    the rule (which also exercises the heaps' lazy deletion and rebuilds)."""
    rng = random.Random(11)
    scheduler = FairShareScheduler()
    waiting: list[AdmissionTicket] = []
    running: list[AdmissionTicket] = []
    for _ in range(4000):
        roll = rng.random()
        if roll < 0.4:
            t = ticket(
                rng.choice("abcdef"),
                priority=rng.choice([0, 0, 1, 2]),
                weight=rng.choice([1.0, 2.0]),
                input_tokens=rng.randint(1, 50),
                output_tokens=rng.randint(1, 50),
            )
            scheduler.push(t)
            waiting.append(t)
        elif roll < 0.65 and waiting:
            top = max(t.priority for t in waiting)
            band = [t for t in waiting if t.priority == top]
            counters = scheduler.service()
            heads: dict[str, AdmissionTicket] = {}
            for t in band:
                heads.setdefault(t.share_key, t)
            expected = min(heads.values(), key=lambda t: counters[t.share_key])
            least = counters[expected.share_key]
            chosen = scheduler.pop()
            assert chosen is not None
            assert chosen is heads[chosen.share_key]
            assert counters[chosen.share_key] == least
            # Ties go to the key whose oldest waiter came first.
            assert chosen is next(t for t in band if counters[t.share_key] == least)
            waiting.remove(chosen)
            scheduler.started(chosen)
            running.append(chosen)
        elif roll < 0.75 and waiting:
            gone = waiting.pop(rng.randrange(len(waiting)))
            assert scheduler.remove(gone) is True
        elif roll < 0.8:
            direct = ticket(rng.choice("abcdefgh"))
            scheduler.started(direct)
            running.append(direct)
        elif running:
            done = running.pop(rng.randrange(len(running)))
            scheduler.finished(done, done.input_tokens, rng.randint(0, done.output_tokens))
        assert len(scheduler) == len(waiting)
        depths: dict[int, int] = {}
        for t in waiting:
            depths[t.priority] = depths.get(t.priority, 0) + 1
        assert scheduler.depths() == depths
        active = {t.share_key for t in waiting + running}
        assert active <= scheduler.service().keys()


def test_a_popped_key_keeps_its_counter_until_started() -> None:
    scheduler = FairShareScheduler()
    scheduler.started(first := ticket("a"))
    scheduler.started(ticket("b"))
    scheduler.push(waiter := ticket("a"))
    scheduler.finished(first, 0, 0)  # it used nothing: "a" is owed its estimate back
    assert scheduler.service() == {"tenant:a": 0.0, "tenant:b": 400.0}
    assert scheduler.pop() is waiter
    # Between pop and started "a" has nothing waiting or running, but is not treated as idle
    # (which would drop its counter and lift it to 400 on started).
    scheduler.started(waiter)
    assert scheduler.service()["tenant:a"] == waiter.estimated_service


# --- urgency: who may take a group's headroom -------------------------------------------


def test_fifo_has_no_urgent_waiter() -> None:
    scheduler = FifoScheduler()
    scheduler.push(ticket("a", priority=5))
    assert scheduler.pop(urgent=True) is None
    assert len(scheduler) == 1


def test_priority_is_urgent_from_its_urgent_band_up() -> None:
    scheduler = PriorityScheduler(urgent_priority=2)
    low, mid = ticket("a", priority=1), ticket("b", priority=1)
    scheduler.push(low)
    assert scheduler.pop(urgent=True) is None
    high = ticket("c", priority=2)
    scheduler.push(mid)
    scheduler.push(high)
    assert scheduler.pop(urgent=True) is high
    assert scheduler.pop(urgent=True) is None
    assert drain(scheduler) == [low, mid]
    with pytest.raises(TypeError):
        PriorityScheduler(urgent_priority="high")  # type: ignore[arg-type]


def start(scheduler: Scheduler, tenant: str, count: int) -> None:
    """``count`` requests of ``tenant`` go through the queue and keep running."""
    for _ in range(count):
        scheduler.push(ticket(tenant))
        popped = scheduler.pop()
        assert popped is not None
        assert popped.tenant == tenant
        scheduler.started(popped)


def test_fair_share_lets_a_tenant_under_its_share_of_slots_take_the_headroom() -> None:
    scheduler = FairShareScheduler()
    start(scheduler, "heavy", 3)
    start(scheduler, "light", 1)
    heavy, light = ticket("heavy"), ticket("light")
    scheduler.push(heavy)
    scheduler.push(light)
    # light's counter is not the smallest (it was lifted to heavy's when it joined), but it
    # runs one request against heavy's three: it is under its share, heavy is not
    assert scheduler.pop(urgent=True) is light
    scheduler.started(light)
    assert scheduler.pop(urgent=True) is None  # heavy is the busiest: never urgent
    assert scheduler.pop() is heavy


def test_fair_share_urgency_weighs_running_requests_by_weight() -> None:
    scheduler = FairShareScheduler()
    start(scheduler, "a", 2)
    for _ in range(3):
        scheduler.push(ticket("b", weight=2.0))
        popped = scheduler.pop()
        assert popped is not None
        scheduler.started(popped)
    # b runs 3 at weight 2 (1.5 per unit) against a's 2: b is under its share, a is not
    a_next, b_next = ticket("a"), ticket("b", weight=2.0)
    scheduler.push(a_next)
    scheduler.push(b_next)
    assert scheduler.pop(urgent=True) is b_next


def test_fair_share_alone_or_in_an_urgent_band() -> None:
    scheduler = FairShareScheduler(urgent_priority=3)
    start(scheduler, "solo", 2)
    scheduler.push(ticket("solo"))
    assert scheduler.pop(urgent=True) is None  # nobody busier: not under any share
    high = ticket("other", priority=3)
    scheduler.push(high)
    assert scheduler.pop(urgent=True) is high


def test_fair_share_can_put_a_tenant_under_its_share_first_in_every_pop() -> None:
    plain, first = FairShareScheduler(), FairShareScheduler(under_share_first=True)
    for scheduler in (plain, first):
        start(scheduler, "heavy", 3)
        start(scheduler, "light", 1)
        scheduler.push(ticket("heavy"))
        scheduler.push(ticket("light"))  # lifted to heavy's counter: a tie, heavy is older
    plain_next, first_next = plain.pop(), first.pop()
    assert plain_next is not None
    assert first_next is not None
    assert plain_next.tenant == "heavy"  # the counters' order
    assert first_next.tenant == "light"  # one running against three: under its share
    with pytest.raises(TypeError):
        FairShareScheduler(under_share_first="yes")  # type: ignore[arg-type]
