"""Embedding micro-batching: requests that arrive close together share one upstream call.

Per model group, requests with the same parameters (everything but ``input``: encoding format,
dimensions, and whether the inputs are text or token arrays) join an open batch; the batch goes
upstream when it reaches ``max_inputs`` inputs or ``max_tokens`` estimated tokens, or when its
oldest request has waited ``max_wait_ms``, whichever comes first, so no request waits past its
deadline. Results are split back in order (each caller's ``index`` from 0) and the upstream's
usage is shared out in proportion to each caller's estimated tokens. When a batch fails, each of
its requests is retried alone, so every caller gets its own answer or its own error.

Chat and completions are never batched here: vLLM batches them continuously itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.background import Spawn
from gateway.codec import decode_object
from gateway.errors import GatewayError, UpstreamUnavailableError
from gateway.tokens import estimate_tokens

_encode = msgspec.json.Encoder(order="sorted").encode
_plain_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

Send = Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True)
class BatchLimits:
    """When a batch goes upstream."""

    max_inputs: int = 64
    max_tokens: int = 8192
    max_wait_ms: float = 2.0


def as_inputs(value: Any) -> tuple[list[Any], str]:
    """A request's ``input`` as a list of single inputs, and their kind (``text``/``tokens``)."""
    if isinstance(value, str):
        return [value], "text"
    if value and all(isinstance(v, int) for v in value):
        return [value], "tokens"
    kind = "tokens" if value and isinstance(value[0], list) else "text"
    return list(value), kind


@dataclass
class _Waiter:
    inputs: list[Any]
    tokens: int
    body: bytes
    future: asyncio.Future[bytes]


@dataclass
class _Batch:
    params: dict[str, Any]
    waiters: list[_Waiter] = field(default_factory=list)
    inputs: int = 0
    tokens: int = 0
    timer: asyncio.TimerHandle | None = None


class EmbeddingBatcher:
    """Merges one model group's embedding requests (see the module docstring).

    ``send(body)`` performs one upstream call (routing, retries included) and returns the JSON
    response body or raises :class:`GatewayError`; ``spawn`` runs each batch's call (the app's
    background task group, so a caller going away cancels nothing).
    """

    def __init__(self, limits: BatchLimits, send: Send, spawn: Spawn) -> None:
        self.limits = limits
        self.send = send
        self._spawn = spawn
        self._open: dict[bytes, _Batch] = {}
        self.batches = 0
        self.batched_requests = 0

    async def submit(self, body: bytes) -> bytes:
        """The response body for one client request (its own indexes and usage)."""
        request = decode_object(body)  # 400 for what the validating decoder skipped
        inputs, kind = as_inputs(request.get("input"))
        params = {k: v for k, v in request.items() if k != "input"}
        key = _encode({"kind": kind, **params})
        tokens = sum(estimate_tokens(i) for i in inputs)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(inputs, tokens, body, loop.create_future())
        batch = self._open.get(key)
        if batch is not None and (
            batch.inputs + len(inputs) > self.limits.max_inputs
            or batch.tokens + tokens > self.limits.max_tokens
        ):
            self._flush(key)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch(params)
            batch.timer = loop.call_later(self.limits.max_wait_ms / 1000, self._flush, key)
        batch.waiters.append(waiter)
        batch.inputs += len(inputs)
        batch.tokens += tokens
        if batch.inputs >= self.limits.max_inputs or batch.tokens >= self.limits.max_tokens:
            self._flush(key)
        # Shielded: a caller going away must not cancel the batch the others share.
        return await asyncio.shield(waiter.future)

    def _flush(self, key: bytes) -> None:
        batch = self._open.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        try:
            self._spawn(self._run(batch))
        except RuntimeError:  # the app is stopping: no one will run the batch
            stopping = UpstreamUnavailableError("The gateway is shutting down.")
            for waiter in batch.waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(stopping)

    async def _run(self, batch: _Batch) -> None:
        waiters = batch.waiters
        if len(waiters) == 1:
            await self._alone(waiters[0])
            return
        self.batches += 1
        self.batched_requests += len(waiters)
        combined = _plain_encode({**batch.params, "input": [i for w in waiters for i in w.inputs]})
        try:
            response = _decode(await self.send(combined))
            data = sorted(response["data"], key=lambda d: d["index"])
            if len(data) != batch.inputs:
                raise ValueError("the upstream answered a different number of embeddings")
        except (GatewayError, ValueError, KeyError, TypeError, msgspec.DecodeError):
            await asyncio.gather(*(self._alone(w) for w in waiters))
            return
        usage = response.get("usage") or {}
        total = usage.get("prompt_tokens") or 0
        estimated = sum(w.tokens for w in waiters) or 1
        offset = shared = 0
        for n, waiter in enumerate(waiters):
            part = data[offset : offset + len(waiter.inputs)]
            offset += len(waiter.inputs)
            tokens = (
                total - shared
                if n == len(waiters) - 1
                else round(total * waiter.tokens / estimated)
            )
            shared += tokens
            answer = {
                **response,
                "data": [{**d, "index": i} for i, d in enumerate(part)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
            if not waiter.future.done():
                waiter.future.set_result(_plain_encode(answer))

    async def _alone(self, waiter: _Waiter) -> None:
        try:
            result = await self.send(waiter.body)
        except GatewayError as exc:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
            return
        if not waiter.future.done():
            waiter.future.set_result(result)
