"""The governance stage of the pipeline: cost policies, the limiter's reservation, and the one
accounting of every request (its usage record, the reservation's settlement, spend metrics).

Three calls from :class:`~gateway.pipeline.pipeline.Pipeline`:

- :meth:`Governor.steer`, before the cache: the caller's cost policy may send the request to
  another model group or refuse it (pure, no I/O);
- :meth:`Governor.reserve`, after the cache, before dispatch: every limit and budget that applies
  is reserved in one limiter call (for a virtual key with limits; nothing otherwise), and the
  response carries OpenAI's ``x-ratelimit-*`` headers;
- :meth:`Governor.finish`, exactly once per request however it ended: the reservation is settled
  with the real use and a :class:`~gateway.governance.sinks.UsageRecord` goes to the ledger.

A caller without an account (anonymous, a static key) and a gateway without usage sinks cost a
few attribute reads here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Protocol

from gateway.clock import Clock
from gateway.cost.base import CostPolicy, Decision, GroupFacts, Situation
from gateway.errors import GatewayError, RateLimitError, ServiceUnavailableError
from gateway.governance.limiter import (
    Demand,
    Grant,
    Limiter,
    LimiterUnavailableError,
    Rule,
    RuleState,
)
from gateway.governance.metrics import GovernanceMetrics
from gateway.governance.pricing import Price
from gateway.governance.sinks import UsageRecord as LedgerRecord
from gateway.pipeline.context import RequestContext
from gateway.providers.base import Endpoint
from gateway.routing.backends import ModelCatalog
from gateway.tokens import estimate_prompt_tokens

log = logging.getLogger("gateway.governance")

# Bodies up to this size are estimated from their length (a token is ~4 bytes of JSON, an
# over-estimate that the settlement corrects); longer ones (images, documents) are counted.
_LENGTH_ESTIMATE_MAX = 16 * 1024


class Ledger(Protocol):
    """Where usage records go (:class:`~gateway.governance.ledger.UsageLedger`)."""

    @property
    def active(self) -> bool: ...

    def record(self, rec: LedgerRecord) -> None: ...


class Prices(Protocol):
    """What the governor needs of the price book (:mod:`gateway.governance.pricing`)."""

    def worst_case_nanos(self, group: str, prompt_tokens: int, completion_tokens: int) -> int: ...

    def group_facts(self, group: str) -> GroupFacts: ...

    def get(self, backend: str) -> Price | None: ...


def format_reset(seconds: float) -> str:
    """A duration as OpenAI's rate-limit headers write it (``20ms``, ``1s``, ``6m0s``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    secs = f"{rest:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _tightest(states: tuple[RuleState, ...], kind: str) -> RuleState | None:
    found: RuleState | None = None
    for state in states:
        if state.rule.kind == kind and (found is None or state.remaining < found.remaining):
            found = state
    return found


def rate_limit_headers(grant: Grant) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers from the tightest requests and tokens rules."""
    headers: dict[str, str] = {}
    for kind, suffix in (("requests", "requests"), ("tokens", "tokens")):
        state = _tightest(grant.states, kind)
        if state is not None:
            headers[f"x-ratelimit-limit-{suffix}"] = str(state.rule.limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{suffix}"] = format_reset(state.reset_s)
    return headers


def _refusal(rule: Rule, retry_after_s: float) -> tuple[str, str]:
    """The error code and message for a demand ``rule`` refused."""
    who = rule.scope.replace("|model:", " for model ")
    if rule.kind == "budget":
        return "budget_exceeded", (
            f"Budget exceeded for {who}: ${rule.limit / 1e9:.2f} per {rule.window} is spent "
            f"or reserved by requests in flight."
        )
    what = {
        "requests": f"{rule.limit} requests per minute",
        "tokens": f"{rule.limit} tokens per minute",
        "parallel": f"{rule.limit} requests in parallel",
    }[rule.kind]
    return "rate_limit_exceeded", (
        f"Rate limit reached for {who}: {what}. Retry after {retry_after_s:.3g} s."
    )


def needs_of(raw: Mapping[str, object]) -> frozenset[str]:
    """The capabilities a request body uses (for ``cheapest_capable``)."""
    needs: set[str] = set()
    if raw.get("tools") or raw.get("functions"):
        needs.add("tools")
    fmt = raw.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        needs.add("json_schema")
    messages = raw.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, list) and any(
                isinstance(part, Mapping) and part.get("type") in ("image_url", "image")
                for part in content
            ):
                needs.add("vision")
                break
    return frozenset(needs)


class Governor:
    """The governance stage (see the module docstring).

    Args:
        limiter: reserves and settles limits and budgets.
        ledger: receives a usage record per request.
        prices: worst-case costs and model group facts.
        pricing: the cost policy that prices usage.
        policies: named cost-policy instances (``governance.cost_policies``).
        catalog: the model groups (a policy's reroute is resolved there).
        metrics: governance metrics.
        clock: wall time for usage records.
        reserve_output_tokens: output reserved when a request names no ceiling.
    """

    def __init__(
        self,
        *,
        limiter: Limiter,
        ledger: Ledger,
        prices: Prices,
        pricing: CostPolicy,
        policies: Mapping[str, CostPolicy],
        catalog: ModelCatalog,
        metrics: GovernanceMetrics,
        clock: Clock,
        reserve_output_tokens: int,
    ) -> None:
        self.limiter = limiter
        self.ledger = ledger
        self.prices = prices
        self.pricing = pricing
        self.policies = dict(policies)
        self.catalog = catalog
        self.metrics = metrics
        self.clock = clock
        self.reserve_output_tokens = reserve_output_tokens

    # -- before the cache ---------------------------------------------------------------------

    def steer(self, ctx: RequestContext) -> None:
        """Apply the caller's (or the group's) cost policy; give the response the caller's
        latest rate-limit headers (a reservation, if one follows, refreshes them).

        Raises:
            RateLimitError: the policy refused the request (429 ``budget_exceeded``).
        """
        group = ctx.model_group
        account = ctx.principal.account
        name = group.settings.cost_policy
        if account is not None:
            if account.rate_headers:  # replaced by fresh ones if this request reserves
                ctx.response_headers.update(account.rate_headers)
            name = account.cost_policy() or name
        if name is None:
            return
        policy = self.policies.get(name)
        if policy is None:  # validated at start-up; a key naming an unknown one proceeds
            return
        decision = policy.decide(self._situation(ctx))
        if decision is not None:
            self._apply(ctx, decision, name)

    def _situation(self, ctx: RequestContext) -> Situation:
        principal = ctx.principal
        limiter = self.limiter
        used: dict[str, float] = {}
        for scope in principal.budget_scopes:
            fraction = limiter.budget_used(scope)
            if fraction is not None:
                used[scope] = fraction
        groups = {
            g.name: self.prices.group_facts(g.name)
            for g in self.catalog.groups
            if principal.may_use(g.name)
        }
        prompt = self._prompt_estimate(ctx)
        return Situation(
            group=ctx.model_group.name,
            prompt_tokens=prompt,
            output_tokens=self._output_ceiling(ctx),
            needs=needs_of(ctx.raw),
            key_id=principal.key_id,
            tenant=principal.tenant,
            budget_used=used,
            groups=groups,
        )

    def _apply(self, ctx: RequestContext, decision: Decision, policy: str) -> None:
        if decision.action == "reject":
            self.metrics.rejected("policy", ctx.principal.tenant)
            raise RateLimitError(
                f"Request refused by cost policy `{policy}`: {decision.reason}.",
                code="budget_exceeded",
            )
        target = decision.group
        if target is None or target == ctx.model_group.name:
            return
        ctx.group = self.catalog.resolve(target)
        ctx.response_headers["x-gateway-cost-policy"] = (
            f"{policy}; rerouted={target}; reason={decision.reason}"
        )

    # -- after the cache ----------------------------------------------------------------------

    async def reserve(self, ctx: RequestContext) -> None:
        """Reserve every limit and budget of a virtual key's request (nothing for others).

        Raises:
            RateLimitError: a limit or budget refused it (429, ``Retry-After``).
            ServiceUnavailableError: the shared limiter is down and fails closed (503).
        """
        account = ctx.principal.account
        if account is None:
            return
        group = ctx.model_group.name
        rules = account.rules_for(group)
        if not rules:
            return
        if ctx.composite:  # a run: its steps reserve their own tokens and money
            prompt = output = cost = 0
        else:
            prompt = self._prompt_estimate(ctx)
            output = self._output_ceiling(ctx)
            cost = 0
            if any(rule.kind == "budget" for rule in rules):
                cost = self.prices.worst_case_nanos(group, prompt, output)
        demand = Demand(
            request_id=ctx.request_id,
            tag=account.tag,
            rules=rules,
            tokens=prompt + output,
            cost=cost,
            lease_s=ctx.model_group.settings.timeouts.total + 60.0,
        )
        try:
            grant = await self.limiter.reserve(demand)
        except LimiterUnavailableError:
            raise ServiceUnavailableError(
                "Rate limits cannot be checked right now; try again shortly.",
                code="limiter_unavailable",
                headers={"retry-after": "1"},
            ) from None
        headers = rate_limit_headers(grant)
        self.metrics.budgets(grant.states)
        if grant.reservation is None:
            denied = grant.denied
            assert denied is not None
            self.metrics.rejected(denied.kind, ctx.principal.tenant)
            code, message = _refusal(denied, grant.retry_after_s)
            retry = grant.retry_after_s if math.isfinite(grant.retry_after_s) else 3600.0
            headers["retry-after"] = str(max(1, math.ceil(retry)))
            headers["retry-after-ms"] = str(max(1, math.ceil(retry * 1000)))
            raise RateLimitError(message, code=code, headers=headers)
        ctx.reservation = grant.reservation
        account.rate_headers = headers
        self.metrics.child(self.metrics.reserved_tokens, ctx.principal.tenant or "-").inc(
            demand.tokens
        )
        ctx.response_headers.update(headers)

    def _prompt_estimate(self, ctx: RequestContext) -> int:
        body = ctx.body
        if len(body) <= _LENGTH_ESTIMATE_MAX:
            return len(body) // 4 + 1
        return estimate_prompt_tokens(ctx.raw)

    def _output_ceiling(self, ctx: RequestContext) -> int:
        payload = ctx.payload
        for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
            value = getattr(payload, name, None)
            if isinstance(value, int) and value > 0:
                return value
        if ctx.dialect.endpoint == Endpoint.EMBEDDINGS:
            return 0
        configured = ctx.model_group.settings.reserve_output_tokens
        return configured if configured is not None else self.reserve_output_tokens

    # -- once, at the end ---------------------------------------------------------------------

    def _busy_share(self, ctx: RequestContext, backend: str) -> float:
        """For a backend priced by GPU time: the request's share of the replica's busy time,
        its duration divided by the requests the replica was serving (0 for the others)."""
        price = self.prices.get(backend)
        if price is None or price.gpu_hour_usd is None or ctx.group is None:
            return 0.0
        concurrent = 1 + next((b.in_flight for b in ctx.group.backends if b.name == backend), 0)
        return (time.perf_counter() - ctx.started) / concurrent

    def finish(
        self,
        ctx: RequestContext,
        status: int,
        backend: str,
        prompt: int = 0,
        completion: int = 0,
        cached: int = 0,
        *,
        error: BaseException | None = None,
        busy_s: float = 0.0,
    ) -> None:
        """Account a finished request exactly once (later calls do nothing): settle its
        reservation with the real use and record its usage. Never raises.

        A run (an agent's, a workflow's) is recorded without tokens or money: its steps, each
        accounted on its own, carry them; ``ctx.cost_nanos`` keeps the run's total."""
        if ctx.settled:
            return
        ctx.settled = True
        if ctx.composite:
            prompt = completion = cached = 0
        reservation = ctx.reservation
        ledger = self.ledger
        if reservation is None and not ledger.active and ctx.step is None:
            return  # nothing to settle or record (a step is priced anyway: its run's budget)
        try:
            group = ctx.group.name if ctx.group is not None else "-"
            principal = ctx.principal
            if (prompt or completion) and not busy_s:
                busy_s = self._busy_share(ctx, backend)
            now = self.clock.time()
            # One record: the pricing policy reads its usage part, the ledger all of it.
            record = LedgerRecord(
                group,
                backend,
                prompt,
                completion,
                cached,
                busy_s,
                request_id=ctx.request_id,
                key_id=principal.key_id,
                tenant=principal.tenant,
                cost_nanos=0,
                status=status,
                started_at=now - (time.perf_counter() - ctx.started),
                finished_at=now,
                endpoint=ctx.dialect.endpoint,
                cached=ctx.served_from == "hit",
                coalesced=ctx.served_from == "coalesced",
                reserved_tokens=reservation.demand.tokens if reservation else 0,
                error_code=error.code if isinstance(error, GatewayError) else None,
            )
            if (step := ctx.step) is not None:
                record.parent_id, record.agent = step.parent_id, step.agent
                record.step, record.route = step.number, step.route
            cost = (self.pricing.cost(record) or 0) if prompt or completion else 0
            if reservation is not None:
                if prompt or completion:
                    tokens = prompt + completion
                elif status in (200, 499):  # answered or cut short, usage unknown
                    tokens, cost = reservation.demand.tokens, reservation.demand.cost
                else:  # failed before the upstream did any work
                    tokens = 0
                self.limiter.settle(reservation, tokens, cost)
                self.metrics.child(self.metrics.settled_tokens, principal.tenant or "-").inc(tokens)
            if not ctx.composite:
                ctx.cost_nanos = cost
            self.metrics.spent(principal.tenant, group, principal.key_id, cost)
            if ledger.active:
                record.cost_nanos = cost
                ledger.record(record)
        except Exception:  # accounting must never fail a request that already ended
            log.exception("request %s: its usage could not be accounted", ctx.request_id)
