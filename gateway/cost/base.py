"""The cost-policy contract, registered through ``register_cost_policies``.

A cost policy does one or both of two jobs:

- **price** usage (:meth:`CostPolicy.cost`): what a finished request cost, in nano-dollars. The
  built-in ``price_table`` prices from the config's per-backend prices, else the offline
  ``genai-prices`` table, else zero.
- **decide** before dispatch (:meth:`CostPolicy.decide`), from the request, the caller and their
  budgets' state: proceed, send it to another model group (``downgrade``, ``cheapest_capable``),
  or refuse it (``reject``).

Policies are named instances in ``governance.cost_policies`` and attached to a key, a tenant or
a model group (``cost_policy:``; the most specific wins). Both methods are on the request path:
they must be pure, cheap and free of I/O. :class:`BaseCostPolicy` answers "no opinion" to both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

_NONE: Mapping[str, float] = MappingProxyType({})


@dataclass(slots=True)
class UsageRecord:
    """What a request consumed.

    Attributes:
        model: the public model group name.
        backend: the backend that served it.
        prompt_tokens: input tokens (cached ones included).
        completion_tokens: output tokens.
        cached_tokens: input tokens served from a prefix or prompt cache.
        busy_s: the request's share of its backend's busy time (its upstream time divided by
            the requests the backend was serving), for GPU-time pricing.
    """

    model: str
    backend: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    busy_s: float = 0.0


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """What a policy may know of a model group.

    Attributes:
        name: the public name.
        context_window: the longest prompt plus output its backends all accept (0: unknown).
        capabilities: what it supports (``tools``, ``vision``, ``json_schema``...); None: all.
        input_per_mtok: its dearest backend's input price, US dollars per million tokens.
        output_per_mtok: the same for output.
    """

    name: str
    context_window: int = 0
    capabilities: frozenset[str] | None = None
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def fits(self, tokens: int, needs: frozenset[str]) -> bool:
        """Whether a request of ``tokens`` (prompt plus output) needing ``needs`` fits."""
        if self.context_window and tokens > self.context_window:
            return False
        return self.capabilities is None or needs <= self.capabilities

    def price(self, prompt_tokens: int, output_tokens: int) -> float:
        """The US-dollar price of that many tokens."""
        return (prompt_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True, slots=True)
class Situation:
    """A request about to be dispatched, as a policy sees it.

    Attributes:
        group: the model group asked for (resolved from an alias).
        prompt_tokens: the prompt's estimated tokens.
        output_tokens: the output reserved (``max_tokens`` or the group's default).
        needs: the capabilities the request uses.
        key_id: the caller's key id (None when anonymous).
        tenant: the caller's tenant.
        budget_used: per scope (``key:<id>``, ``tenant:<name>``), the highest fraction of any of
            its budgets used, as last seen (missing: no budget or not yet known).
        groups: every model group the caller may use, by name.
    """

    group: str
    prompt_tokens: int
    output_tokens: int
    needs: frozenset[str]
    key_id: str | None
    tenant: str | None
    budget_used: Mapping[str, float] = field(default_factory=lambda: _NONE)
    groups: Mapping[str, GroupFacts] = field(default_factory=dict)

    @property
    def used(self) -> float:
        """The highest budget fraction used over the caller's scopes (0 when none known)."""
        return max(self.budget_used.values(), default=0.0)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decided.

    Attributes:
        action: ``reroute`` to ``group``, or ``reject`` (429 ``budget_exceeded``) with
            ``reason``.
        group: the group to send the request to instead.
        reason: why, for the ``x-gateway-cost-policy`` header, logs and the error message.
    """

    action: Literal["reroute", "reject"]
    group: str | None = None
    reason: str = ""


@runtime_checkable
class CostPolicy(Protocol):
    """Prices usage and/or decides before dispatch (see the module docstring)."""

    def cost(self, usage: UsageRecord) -> int | None:
        """The cost of ``usage`` in nano-dollars, or None to leave it to the next policy."""
        ...

    def decide(self, situation: Situation) -> Decision | None:
        """What to do with the request, or None to proceed as asked."""
        ...


class BaseCostPolicy:
    """A policy with no opinion; subclass and override one method."""

    def cost(self, usage: UsageRecord) -> int | None:
        return None

    def decide(self, situation: Situation) -> Decision | None:
        return None


class CostPolicyFactory(Protocol):
    """What ``register_cost_policies`` registers."""

    def __call__(self, **options: Any) -> CostPolicy: ...
