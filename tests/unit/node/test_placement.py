"""The built-in placement strategies on two GPUs: the exact placements of three deployments by
each, tensor-parallel engines, engines that fit nowhere, and priority displacement."""

from __future__ import annotations

import gateway_node
import pytest
from gateway_node.placement import (
    BestFitStrategy,
    LeastUtilizedStrategy,
    PriorityStrategy,
    RoundRobinStrategy,
)

from gateway.config_loader import ConfigError
from gateway.node.base import EngineDemand, GpuSlot, PlacedEngine, Placement, PlacementStrategy
from gateway.node.placing import FreeMemory, mib
from gateway.plugins import build_registered, collect_registries, make_plugin_manager


def gpu(index: int, free: float, utilization: float | None = None) -> GpuSlot:
    return GpuSlot(index, "NVIDIA H200", 80000, free, utilization)


def demand(name: str, memory: float, gpus: int = 1, priority: int = 0) -> EngineDemand:
    return EngineDemand(name, name.rsplit("-", 1)[0], memory, gpus, priority)


def engine(name: str, memory: float, gpus: tuple[int, ...], priority: int) -> PlacedEngine:
    return PlacedEngine(name, name.rsplit("-", 1)[0], memory, gpus, priority)


# GPU 0 is empty and quiet; GPU 1 has 30000 MiB in use (another tenant) and is busy.
TWO_GPUS = [gpu(0, 80000, utilization=20), gpu(1, 50000, utilization=60)]
# Three deployments, one engine each: chat 30000 MiB, embed 10000 MiB, big 40000 MiB.
THREE = [
    demand("chat-0", 30000, priority=0),
    demand("embed-0", 10000, priority=1),
    demand("big-0", 40000, priority=2),
]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        # Tightest first: chat and embed fill GPU 1 (50000 -> 20000 -> 10000), big needs GPU 0.
        (BestFitStrategy(), {"chat-0": (1,), "embed-0": (1,), "big-0": (0,)}),
        # GPU 0 is the quieter one and still fits big after chat and embed (80000 -> 40000).
        (LeastUtilizedStrategy(), {"chat-0": (0,), "embed-0": (0,), "big-0": (0,)}),
        # Alternating from GPU 0: chat on 0, embed on 1, big back on 0 (50000 free there).
        (RoundRobinStrategy(), {"chat-0": (0,), "embed-0": (1,), "big-0": (0,)}),
        # Highest priority first, each tightest: big on 1 (-> 10000), embed on 1 (-> 0),
        # chat on 0.
        (PriorityStrategy(), {"big-0": (1,), "embed-0": (1,), "chat-0": (0,)}),
    ],
    ids=["best_fit", "least_utilized", "round_robin", "priority"],
)
def test_three_deployments_on_two_gpus(
    strategy: PlacementStrategy, expected: dict[str, tuple[int, ...]]
) -> None:
    placement = strategy.place(THREE, TWO_GPUS, [])
    assert placement == Placement(assigned=expected)
    assert list(placement.assigned) == list(expected)  # the order they were placed in


@pytest.mark.parametrize(
    "strategy",
    [BestFitStrategy, LeastUtilizedStrategy, RoundRobinStrategy, PriorityStrategy],
)
def test_tensor_parallel_engine_gets_distinct_gpus_and_the_next_sees_less(
    strategy: type[PlacementStrategy],
) -> None:
    demands = [demand("tp-0", 40000, gpus=2), demand("tp-1", 40000, gpus=2)]
    placement = strategy().place(demands, TWO_GPUS, [])
    assert placement.assigned == {"tp-0": (0, 1)}
    # What tp-0 took is gone: GPU 0 has 40000 left, GPU 1 10000.
    assert placement.unplaced == {
        "tp-1": "needs 2 GPUs with 40000 MiB free; only GPU 0 fits, "
        "the next most free is 10000 MiB on GPU 1"
    }
    assert placement.displaced == []


@pytest.mark.parametrize(
    "strategy",
    [BestFitStrategy, LeastUtilizedStrategy, RoundRobinStrategy, PriorityStrategy],
)
def test_an_engine_that_fits_nowhere_is_reported_not_forced(
    strategy: type[PlacementStrategy],
) -> None:
    demands = [demand("huge-0", 90000), demand("wide-0", 1000, gpus=3), demand("ok-0", 5000)]
    placement = strategy().place(demands, TWO_GPUS, [])
    assert placement.unplaced == {
        "huge-0": "needs 1 GPU with 90000 MiB free; the most free is 80000 MiB on GPU 0",
        "wide-0": "needs 3 GPUs with 1000 MiB free; the node has 2",
    }
    assert list(placement.assigned) == ["ok-0"]


def test_reasons_name_fractional_memory_and_an_empty_node() -> None:
    assert mib(1023.5) == "1023.5"
    free = FreeMemory([])
    assert free.reason(demand("a-0", 10)) == "needs 1 GPU with 10 MiB free; the node has 0"
    assert BestFitStrategy().place([demand("a-0", 10)], [], []).unplaced == {
        "a-0": "needs 1 GPU with 10 MiB free; the node has 0"
    }


def test_best_fit_breaks_ties_by_index() -> None:
    gpus = [gpu(2, 40000), gpu(0, 40000), gpu(1, 60000)]
    assert BestFitStrategy().place([demand("a-0", 1000)], gpus, []).assigned == {"a-0": (0,)}


def test_least_utilized_puts_unknown_utilization_after_known_and_ties_by_free_memory() -> None:
    gpus = [gpu(0, 80000, None), gpu(1, 30000, 90), gpu(2, 50000, 10), gpu(3, 60000, 10)]
    placement = LeastUtilizedStrategy().place(
        [demand("a-0", 20000), demand("b-0", 20000), demand("c-0", 20000, gpus=3)], gpus, []
    )
    # a: GPUs 2 and 3 are quietest, 3 has more free; b: 3 has 40000 left, 2 has 50000.
    # c: the three with 20000 free, by utilization: 2 and 3 (10), 1 (90); the unknown 0 last.
    assert placement.assigned == {"a-0": (3,), "b-0": (2,), "c-0": (1, 2, 3)}


def test_round_robin_keeps_its_cursor_across_calls_and_skips_gpus_that_do_not_fit() -> None:
    strategy = RoundRobinStrategy()
    gpus = [gpu(0, 80000), gpu(1, 5000), gpu(2, 80000)]
    first = strategy.place([demand("a-0", 10000)], gpus, [])
    second = strategy.place([demand("b-0", 10000)], gpus, [])  # skips GPU 1: too small
    third = strategy.place([demand("c-0", 10000)], gpus, [])  # wraps around to GPU 0
    fourth = strategy.place([demand("d-0", 1000), demand("e-0", 1000, gpus=2)], gpus, [])
    assert [first.assigned, second.assigned, third.assigned] == [
        {"a-0": (0,)},
        {"b-0": (2,)},
        {"c-0": (0,)},
    ]
    # d takes GPU 1 (the next after 0), e the two after it: 2, then 0.
    assert fourth.assigned == {"d-0": (1,), "e-0": (0, 2)}
    assert RoundRobinStrategy().place([demand("a-0", 10000)], gpus, []).assigned == {"a-0": (0,)}


def test_priority_displaces_only_what_frees_enough_on_the_gpu_that_needs_it() -> None:
    gpus = [gpu(0, 10000), gpu(1, 20000)]
    running = [
        engine("low-0", 40000, (0,), priority=0),  # lowest, but GPU 0 would have only 50000
        engine("mid-0", 40000, (1,), priority=1),  # GPU 1 would have 60000: enough
        engine("top-0", 30000, (0,), priority=5),
    ]
    placement = PriorityStrategy().place([demand("new-0", 60000, priority=2)], gpus, running)
    assert placement == Placement(assigned={"new-0": (1,)}, displaced=["mid-0"])


def test_priority_displaces_lowest_first_and_their_memory_counts_as_free_afterwards() -> None:
    gpus = [gpu(0, 10000), gpu(1, 10000)]
    running = [
        engine("spare-0", 40000, (0, 1), priority=1),
        engine("batch-0", 35000, (0,), priority=0),
        engine("batch-1", 35000, (1,), priority=0),
    ]
    demands = [
        demand("small-0", 5000, priority=1),
        demand("tp-0", 40000, gpus=2, priority=3),
        demand("late-0", 6000, priority=1),
    ]
    placement = PriorityStrategy().place(demands, gpus, running)
    # tp-0 goes first: batch-0 and batch-1 (priority 0) free 45000 on each GPU, enough, so
    # spare-0 (priority 1) stays though displacing it alone would have sufficed.
    assert placement.displaced == ["batch-0", "batch-1"]
    # What tp-0 left of the freed memory (5000 on each) takes small-0 on GPU 0; late-0 needs
    # more than the 5000 left on GPU 1 and may not displace spare-0 (equal priority).
    assert placement.assigned == {"tp-0": (0, 1), "small-0": (0,)}
    assert placement.unplaced == {
        "late-0": "needs 1 GPU with 6000 MiB free; the most free is 5000 MiB on GPU 1"
    }


def test_priority_never_displaces_equal_or_higher_priority() -> None:
    gpus = [gpu(0, 10000), gpu(1, 20000)]
    running = [engine("peer-0", 60000, (0,), priority=2), engine("boss-0", 50000, (1,), 7)]
    placement = PriorityStrategy().place([demand("new-0", 50000, priority=2)], gpus, running)
    assert placement == Placement(
        unplaced={"new-0": "needs 1 GPU with 50000 MiB free; the most free is 20000 MiB on GPU 1"}
    )


def test_priority_places_high_first_and_keeps_the_given_order_among_equals() -> None:
    demands = [demand("a-0", 30000), demand("b-0", 30000, priority=1), demand("c-0", 30000)]
    placement = PriorityStrategy().place(demands, [gpu(0, 60000)], [])
    assert list(placement.assigned) == ["b-0", "a-0"]
    assert list(placement.unplaced) == ["c-0"]


def test_strategies_are_pure_for_the_same_input() -> None:
    running = [engine("low-0", 40000, (1,), priority=0)]
    for strategy in (BestFitStrategy(), LeastUtilizedStrategy(), PriorityStrategy()):
        first = strategy.place(THREE, TWO_GPUS, running)
        assert strategy.place(THREE, TWO_GPUS, running) == first


def test_the_plugin_registers_the_four_and_they_take_no_options() -> None:
    pm = make_plugin_manager(entry_points=False, extra=[("gateway_node", gateway_node)])
    registry = collect_registries(pm).placement_strategies
    for name in ("best_fit", "least_utilized", "priority", "round_robin"):
        strategy = build_registered(registry, name, {}, "node.yaml", "node.placement")
        assert isinstance(strategy, PlacementStrategy)
        with pytest.raises(ConfigError, match=r"node\.placement\.options"):
            build_registered(registry, name, {"spread": True}, "node.yaml", "node.placement")
