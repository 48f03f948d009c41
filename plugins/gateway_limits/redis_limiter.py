"""The ``redis`` limiter: one set of limits for a fleet of gateways, counted in Redis.

- A reservation is ONE call: an atomic Lua script (:mod:`gateway_limits.script`) that checks and
  takes every rule on Redis's clock, all or nothing. Waiting settlements ride along in that call
  (on a Cluster only those of the same hash tag; on one Redis, any); the rest are flushed in
  batches (only ops no reservation carried off within ``flush_interval_s``; one call per tag on
  a Cluster), so in steady state a request costs one Redis call. On one Redis (``redis://``,
  ``unix://``) every call goes through the lean pipelined client of :mod:`gateway_limits.resp`;
  a Cluster (and ``rediss://``) through redis-py. Scripts run by EVALSHA,
  falling back to EVAL (which caches the script on that node) after a restart or on a new
  Cluster node.
- Every key of a demand shares its hash tag, so it runs on Redis Cluster (``cluster: true``).
- A heartbeat (one call a second) records this replica in ``<prefix>:replicas``; the count of
  replicas seen in the last 5 s sizes the local share when degraded.
- When Redis is unreachable: ``fail_closed`` raises :class:`LimiterUnavailableError` from
  reserve; ``fail_open`` (the default) degrades to a local share (:mod:`gateway_limits.failover`),
  leaves Redis alone on the request path, probes it every 0.5 s and switches back when it
  answers. Settlements are retried until Redis is back (at most ``max_pending`` wait; beyond it
  the oldest are dropped and counted). A call that timed out may have been applied: its
  settlements are retried anyway (charged twice rather than lost: the limits stay safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, Literal, cast

from redis.exceptions import NoScriptError, RedisError

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.governance.limiter import (
    Alert,
    Demand,
    Grant,
    LimiterEvents,
    LimiterUnavailableError,
    Reservation,
    Rule,
    RuleState,
)
from gateway_limits import resp, script
from gateway_limits.connection import Script, check_number, connect
from gateway_limits.failover import LocalShare
from gateway_limits.ops import (
    MAX_BATCH,
    Arg,
    Op,
    PendingOps,
    charge,
    encode,
    rows,
    rules_arg,
    settlement,
)
from gateway_limits.usage import BudgetUsage

log = logging.getLogger(__name__)

FAILURES = (RedisError, resp.RespError, OSError, TimeoutError)
"""A failed call: Redis unreachable (redis-py's connection and timeout errors, Cluster errors,
sockets, :mod:`~gateway_limits.resp`'s connection and timeout errors, which are OSErrors) or
refusing (an OOM, a script error): either way the limiter cannot count there, so
``fail_open`` degrades and ``fail_closed`` refuses. NOSCRIPT is handled before."""
HEARTBEAT_S = 1.0
PROBE_S = 0.5
CLOSE_WAIT_S = 5.0


class RedisLimiter:
    """Limits shared by every replica through one Redis (or Redis Cluster).

    Args:
        url: ``redis://`` / ``rediss://`` / ``unix://`` URL (with ``cluster``: a startup node).
        cluster: talk to a Redis Cluster.
        on_error: ``fail_open`` (enforce a local share while Redis is unreachable) or
            ``fail_closed`` (refuse: reserve raises :class:`LimiterUnavailableError`).
        replicas: the fleet size assumed until heartbeats have been seen.
        timeout_s: the most one Redis call may take.
        flush_interval_s: how long a settlement may wait for a reservation to carry it.
        prefix: the first part of every key.
        max_pending: the most settlements kept waiting for Redis.
        max_connections: the most connections to a Redis Cluster node (or a ``rediss://``
            Redis); a call beyond them waits for one (within ``timeout_s``). The lean client
            of one Redis pipelines every call on one connection.
        clock, events: from the gateway.

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        url: str,
        cluster: bool = False,
        on_error: Literal["fail_open", "fail_closed"] = "fail_open",
        replicas: int = 1,
        timeout_s: float = 0.5,
        flush_interval_s: float = 0.02,
        prefix: str = "gw",
        max_pending: int = 100_000,
        max_connections: int = 64,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: LimiterEvents | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"`url` must be a redis:// URL, got {url!r}")
        if not isinstance(cluster, bool):
            raise TypeError(f"`cluster` must be true or false, got {cluster!r}")
        if on_error not in ("fail_open", "fail_closed"):
            raise ValueError(f"`on_error` must be fail_open or fail_closed, got {on_error!r}")
        check_number("replicas", replicas, integer=True)
        check_number("timeout_s", timeout_s)
        check_number("flush_interval_s", flush_interval_s)
        check_number("max_pending", max_pending, integer=True)
        check_number("max_connections", max_connections, integer=True)
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"`prefix` must be a non-empty string, got {prefix!r}")
        self.on_error = on_error
        self.timeout_s = float(timeout_s)
        self.flush_interval_s = float(flush_interval_s)
        self.prefix = prefix
        self.replicas = replicas
        """The fleet size: the last heartbeat's count (``replicas`` until one was seen)."""
        self.replica_id = secrets.token_hex(8)
        self.degraded = False
        self._cluster = cluster
        self.calls: Counter[str] = Counter()
        """Redis calls made, by purpose (``reserve``, ``flush``, ``states``, ``heartbeat``)."""
        self._events = events or LimiterEvents()
        self._client = connect(url, cluster, self.timeout_s, max_connections)
        """redis-py's client: every call on a Cluster; on one Redis only for others (it opens
        no connection unless used)."""
        self._lean: resp.RespClient | None = None
        if not cluster and not url.startswith("rediss://"):
            self._lean = resp.RespClient(url, self.timeout_s)
        self._reserve = Script(script.RESERVE)
        self._states = Script(script.STATES)
        self._heartbeat = Script(script.HEARTBEAT)
        self._pending = PendingOps(max_pending)
        self._local = LocalShare(clock)
        self._usage = BudgetUsage()
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._probe: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._closing = False

    # -- the contract --------------------------------------------------------------------------

    async def reserve(self, demand: Demand) -> Grant:
        if self.degraded:
            return self._local.reserve(demand, self.replicas)
        ops = self._take(demand.tag)
        keys, argv = encode(demand, ops, self._key)
        try:
            reply = await self._eval(self._reserve, keys, argv, "reserve")
        except FAILURES as exc:
            self._pending.put_back(ops)
            self._unavailable(exc)
            return self._local.reserve(demand, self.replicas)
        self._feedback(ops, reply[4])
        return self._grant(demand, reply)

    def settle(self, reservation: Reservation, tokens: int, cost: int) -> None:
        try:
            now = time.monotonic()
            op: Op | None
            if reservation.local:
                self._local.settle(reservation, tokens, cost)
                op = charge(reservation.demand, reservation.windows, tokens, cost, now)
            else:
                op = settlement(reservation, tokens, cost, now)
            if op is not None and self._pending.add(op) >= MAX_BATCH:
                self._kick.set()
        except Exception:  # never raises: the request is over; a bug must not fail it
            log.exception("settling request %s failed", reservation.demand.request_id)

    async def states(self, rules: Sequence[Rule], tag: str) -> list[RuleState]:
        if not self.degraded and rules:
            keys = [self._key(tag, rule) for rule in rules]
            try:
                reply = await self._eval(self._states, keys, [rules_arg(tuple(rules))], "states")
            except FAILURES as exc:
                self._unavailable(exc)
            else:
                return [self._state(r, raw) for r, raw in zip(rules, rows(reply), strict=True)]
        return self._local.states(rules, tag, self.replicas)

    def budget_used(self, scope: str) -> float | None:
        return self._usage.get(scope)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._flush_loop(), name="redis-limiter-flush"),
                asyncio.create_task(self._heartbeat_loop(), name="redis-limiter-heartbeat"),
                asyncio.create_task(self._sweep_loop(), name="redis-limiter-sweep"),
            ]

    async def aclose(self) -> None:
        self._closing = True  # a failure now starts no probe
        tasks = [*self._tasks, *([self._probe] if self._probe else [])]
        self._tasks, self._probe = [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        deadline = time.monotonic() + CLOSE_WAIT_S
        while self._pending.count and time.monotonic() < deadline:
            if not await self.flush(force=True):
                await asyncio.sleep(0.05)
        if self._pending.count:
            log.warning("limiter: %d settlements not written to Redis", self._pending.count)
        if self._lean is not None:
            await self._lean.aclose()
        await self._client.aclose()

    # -- settlements ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Settlements (and charges) waiting to be written to Redis."""
        return self._pending.count

    @property
    def dropped(self) -> int:
        """Settlements given up because more than ``max_pending`` were waiting."""
        return self._pending.dropped

    async def flush(self, *, force: bool = False) -> bool:
        """Send queued ops: all of them (``force``) or those due (queued ``flush_interval_s``
        ago, or a full batch), in one call per tag on a Cluster, in calls of up to
        :data:`MAX_BATCH` ops of any tags on one Redis. Answers whether every call succeeded."""
        before = time.monotonic() - self.flush_interval_s
        due = list(self._pending.by_tag) if force else self._pending.due(before)
        batches: list[list[Op]] = []
        if self._cluster:
            batches = [self._pending.take(tag) for tag in due]
        elif due:
            while self._pending.count and (force or not batches):
                batches.append(self._pending.take_any(due[0]))
        results = await asyncio.gather(*(self._send(ops) for ops in batches if ops))
        return all(results)

    async def _send(self, ops: list[Op]) -> bool:
        keys, argv = encode(None, ops, self._key)
        try:
            reply = await self._eval(self._reserve, keys, argv, "flush")
        except FAILURES as exc:
            self._pending.put_back(ops)
            self._failed(exc)
            return False
        self._feedback(ops, reply[4])
        return True

    def _take(self, tag: str) -> list[Op]:
        """The ops a call for ``tag`` can carry (only ``tag``'s on a Cluster: one slot)."""
        return self._pending.take(tag) if self._cluster else self._pending.take_any(tag)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.flush_interval_s)
            self._kick.clear()
            if self.degraded or time.monotonic() < self._retry_at:
                continue
            if not await self.flush():
                self._retry_at = time.monotonic() + PROBE_S  # do not hammer a failing Redis

    # -- the fleet and failures ----------------------------------------------------------------

    async def beat(self, *, count: bool = True) -> int:
        """Record this replica; the number of replicas seen in the last 5 s, kept as the fleet
        size unless ``count`` is False (raises on failure)."""
        seen = await self._eval(
            self._heartbeat, [f"{self.prefix}:replicas"], [self.replica_id], "heartbeat"
        )
        if count:
            self.replicas = max(1, int(seen))
        return max(1, int(seen))

    async def _heartbeat_loop(self) -> None:
        while True:
            if not self.degraded:
                try:
                    await self.beat()
                except FAILURES as exc:
                    self._failed(exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_S)
            try:
                # a restarted Redis has not seen the others beat yet: keep the last fleet size
                await self.beat(count=False)
            except FAILURES:
                continue
            self.degraded = False
            self._probe = None
            log.warning("limiter: Redis is back; limits are shared again")
            self._emit_degraded(False)
            self._kick.set()  # the retried settlements and the outage's charges
            return

    def _failed(self, exc: BaseException) -> None:
        """A call failed: enter the degraded mode (``fail_open``; once per outage)."""
        if self.on_error == "fail_closed" or self.degraded:
            return
        self.degraded = True
        log.warning(
            "limiter: Redis is unreachable (%r); enforcing a local share (1/%d of each limit)",
            exc,
            self.replicas,
        )
        self._emit_degraded(True)
        if not self._closing:
            self._probe = asyncio.create_task(self._probe_loop(), name="redis-limiter-probe")

    def _unavailable(self, exc: BaseException) -> None:
        """A call on the request path failed: raise (``fail_closed``) or degrade."""
        if self.on_error == "fail_closed":
            raise LimiterUnavailableError(f"the limiter's Redis failed: {exc!r}") from exc
        self._failed(exc)

    def _emit_degraded(self, on: bool) -> None:
        try:
            self._events.degraded(on)
        except Exception:
            log.exception("the degraded callback failed")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(60.0)
            self._local.sweep()

    # -- plumbing ------------------------------------------------------------------------------

    def _key(self, tag: str, rule: Rule) -> str:
        return f"{self.prefix}:{{{tag}}}:{rule.name}"

    async def _eval(self, s: Script, keys: list[str], argv: Sequence[Arg], purpose: str) -> Any:
        self.calls[purpose] += 1
        started = time.perf_counter()
        ok = False
        lean = self._lean
        try:
            if lean is not None:  # it bounds each call by timeout_s itself
                try:
                    reply = await lean.evalsha(s.sha, len(keys), *keys, *argv)
                except resp.NoScriptError:
                    reply = await lean.eval(s.source, len(keys), *keys, *argv)
                ok = True
                return reply
            client = cast(Any, self._client)  # both clients; their stubs type the reply loosely
            async with asyncio.timeout(self.timeout_s):
                try:
                    reply = await cast(
                        Awaitable[Any], client.evalsha(s.sha, len(keys), *keys, *argv)
                    )
                except NoScriptError:
                    reply = await cast(
                        Awaitable[Any], client.eval(s.source, len(keys), *keys, *argv)
                    )
            ok = True
            return reply
        finally:
            try:
                self._events.backend_call(time.perf_counter() - started, ok)
            except Exception:
                log.exception("the backend_call callback failed")

    def _state(self, rule: Rule, raw: list[str]) -> RuleState:
        remaining, reset, used, held, _ = raw
        if rule.kind == "budget":
            self._usage.record(rule, int(used) + int(held))
        return RuleState(rule, int(remaining), float(reset), int(used))

    def _grant(self, demand: Demand, reply: list[Any]) -> Grant:
        admitted, denied, retry, text, _ = reply
        raw_states = rows(text)
        states = tuple(self._state(r, raw) for r, raw in zip(demand.rules, raw_states, strict=True))
        if not admitted:
            return Grant(None, states, demand.rules[int(denied) - 1], float(retry))
        windows = tuple(
            str(raw[4])
            for r, raw in zip(demand.rules, raw_states, strict=True)
            if r.kind == "budget"
        )
        return Grant(Reservation(demand, demand.tokens, windows), states)

    def _feedback(self, ops: list[Op], feedback: str) -> None:
        """Budgets as settled: remember their use, send the alerts that fired."""
        for o, e, spent, held, fired in rows(feedback):
            rule, wid = ops[int(o) - 1].entries[int(e) - 1]
            self._usage.record(rule, int(spent) + int(held))
            for threshold in fired.split(",") if fired != "_" else ():
                alert = Alert(rule, wid, float(threshold), int(spent), rule.limit)
                try:
                    self._events.alert(alert)
                except Exception:
                    log.exception("the alert callback failed")
