"""Routing strategies over the gateway's own view of its backends (no I/O, no event loop)."""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Sequence
from typing import Any

from gateway.routing.base import BackendView, Choice, RouteRequest
from gateway.tokens import TOKENS_PER_MESSAGE, estimate_tokens


def _rng(seed: int | None) -> random.Random:
    return random.Random(seed)


class WeightedStrategy:
    """Random choice in proportion to the backends' ``weight``."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = _rng(seed)

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        weights = [max(b.weight, 0.0) for b in backends]
        if not any(weights):
            return self._rng.randrange(len(backends)), "uniform"
        return self._rng.choices(range(len(backends)), weights)[0], "weighted"


class LeastInflightStrategy:
    """The backend with the fewest requests in flight from this gateway; random tie-break."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = _rng(seed)

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        least = min(b.in_flight for b in backends)
        ties = [i for i, b in enumerate(backends) if b.in_flight == least]
        return self._rng.choice(ties), "least_inflight"


def ewma_cost(backend: BackendView, default_s: float) -> float:
    """Peak-EWMA latency times (in-flight + 1): expected wait if sent there now."""
    latency = backend.latency_s if backend.latency_s is not None else default_s
    return latency * (backend.in_flight + 1)


class PowerOfTwoEwmaStrategy:
    """Power of two choices on peak-EWMA latency x in-flight (as Finagle and Linkerd do).

    Two random backends, the cheaper one wins: nearly as good as scanning all, without herding.
    A backend with no latency yet is priced at ``default_latency_s`` so it gets explored.
    """

    def __init__(self, default_latency_s: float = 0.0, seed: int | None = None) -> None:
        self.default = default_latency_s
        self._rng = _rng(seed)

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        if len(backends) == 1:
            return 0, "only"
        a, b = self._rng.sample(range(len(backends)), 2)
        cost_a = ewma_cost(backends[a], self.default)
        cost_b = ewma_cost(backends[b], self.default)
        return (a if cost_a <= cost_b else b), "p2c"


def _hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


class SessionStrategy:
    """Consistent hashing with bounded load (Mirrokni et al.) on a session key.

    The key is the ``header`` (default ``x-session-id``) or else the request's ``user`` field. A
    session sticks to its backend on a hash ring of ``replicas`` points per backend, unless that
    backend already carries more than ``(1 + epsilon)`` times the average in-flight load, in which
    case the next backend on the ring takes it. No key: least in flight.
    """

    def __init__(
        self, header: str = "x-session-id", epsilon: float = 0.25, replicas: int = 100
    ) -> None:
        if epsilon < 0:
            raise ValueError("`epsilon` must be at least 0")
        self.header = header.lower()
        self.epsilon = epsilon
        self.replicas = replicas
        self._rings: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}
        self._fallback = LeastInflightStrategy()

    def _ring(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        ring = self._rings.get(names)
        if ring is None:
            points = sorted((_hash(f"{n}#{r}"), n) for n in names for r in range(self.replicas))
            ring = self._rings[names] = ([p for p, _ in points], [n for _, n in points])
            if len(self._rings) > 64:  # backends change rarely; keep the cache small
                self._rings.pop(next(iter(self._rings)))
        return ring

    def key_of(self, request: RouteRequest) -> str | None:
        value = request.headers.get(self.header)
        if value:
            return str(value)
        user = getattr(request.payload, "user", None)
        return str(user) if user else None

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        key = self.key_of(request)
        if key is None:
            return self._fallback.choose(request, backends)
        names = tuple(sorted(b.name for b in backends))
        index_of = {b.name: i for i, b in enumerate(backends)}
        points, owners = self._ring(names)
        total = sum(b.in_flight for b in backends) + 1
        bound = math.ceil(total / len(backends) * (1 + self.epsilon))
        start = bisect.bisect(points, _hash(key)) % len(points)
        seen: set[str] = set()
        for step in range(len(points)):  # bounded: each backend is considered once
            name = owners[(start + step) % len(points)]
            if name in seen:
                continue
            seen.add(name)
            backend = backends[index_of[name]]
            if backend.in_flight < bound:
                return index_of[name], "sticky" if len(seen) == 1 else "spilled"
        return self._fallback.choose(request, backends)


def request_tokens(payload: Any) -> tuple[int, int]:
    """(prompt, output) token estimates of a request: the gateway's estimator over its messages
    or prompt, and its ``max_completion_tokens``/``max_tokens`` (256 when it sets neither)."""
    prompt = estimate_tokens(getattr(payload, "prompt", None) or "")
    for message in getattr(payload, "messages", None) or []:
        prompt += TOKENS_PER_MESSAGE + estimate_tokens(message.content or "")
    output = (
        getattr(payload, "max_completion_tokens", None)
        or getattr(payload, "max_tokens", None)
        or 256
    )
    return prompt, int(output)


class CostStrategy:
    """The cheapest backend whose context window fits the request, by configured prices.

    Cost = input price x estimated prompt tokens + output price x expected output tokens.
    Equal prices: fewest in flight. When none fits, the largest window.
    """

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        prompt, output = request_tokens(request.payload)
        fitting = [
            i
            for i, b in enumerate(backends)
            if not b.context_window or b.context_window >= prompt + output
        ]
        if not fitting:
            widest = max(range(len(backends)), key=lambda i: backends[i].context_window)
            return widest, "widest_window"

        def price(i: int) -> tuple[float, int]:
            b = backends[i]
            return (b.input_price * prompt + b.output_price * output, b.in_flight)

        return min(fitting, key=price), "cheapest"


class PriorityStrategy:
    """An ordered preference list (backend names): the first available one; failover down the
    list. Backends not listed come after, in configured order."""

    def __init__(self, order: list[str] | None = None) -> None:
        self.order = {name: rank for rank, name in enumerate(order or [])}

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        rank = min(
            range(len(backends)),
            key=lambda i: (self.order.get(backends[i].name, len(self.order)), i),
        )
        return rank, "preferred" if backends[rank].name in self.order else "failover"
