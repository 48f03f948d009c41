"""Request plumbing shared by the simulator's APIs: admission, faults, token streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import msgspec
from litestar import Request, Response

from gateway.schemas.validation import split_validation_message
from gateway_sim.engine import SimRequest
from gateway_sim.state import SimState

T = TypeVar("T")
_json = msgspec.json.Encoder()


ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
"""vLLM's error ``type`` by status."""


class SimRequestError(Exception):
    """A request the simulated server rejects (400 unless said otherwise)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


class StreamDroppedError(Exception):
    """Raised inside a stream to abort its connection (injected fault)."""


def openai_error(
    status: int, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    """vLLM's error response: OpenAI's envelope with vLLM's error types and the status as code,
    ``{"error": {"message", "type": "BadRequestError", "param", "code": 400}}``."""
    kind = ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return Response(
        _json.encode(body), status_code=status, media_type="application/json", headers=headers
    )


def decode(kind: type[T], raw: Any) -> T:
    """Validate ``raw`` (decoded JSON) as ``kind``.

    Raises:
        SimRequestError: naming the field.
    """
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        param, problem = split_validation_message(str(exc))
        raise SimRequestError(problem, param) from None
    except RecursionError:
        raise SimRequestError("the body nests too deeply") from None


async def admit(
    state: SimState,
    request: Request[Any, Any, Any],
    kind: str,
    error: Callable[..., Response[Any]] = openai_error,
) -> tuple[dict[str, Any], Response[Any] | None]:
    """Record an inference request, wait at its gate if one holds it before handling
    (:mod:`gateway_sim.gates`), and roll the fault dice.

    Returns:
        The decoded body, and a response to send instead when a fault fires.
    Raises:
        SimRequestError: the body is not a JSON object.
    """
    body = await request.body()
    stats = state.stats
    stats.requests[kind] = stats.requests.get(kind, 0) + 1
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise SimRequestError("invalid JSON body") from None
    except RecursionError:
        raise SimRequestError("the body nests too deeply") from None
    if not isinstance(raw, dict):
        raise SimRequestError("the body must be a JSON object")
    stats.recent.append({"path": request.url.path, "headers": dict(request.headers), "body": raw})
    gate = state.gate_for(request.headers)
    if gate is not None:
        await gate.wait_before()
    faults = state.config.faults
    delay = faults.delay_ms + (faults.spike_ms if state.roll(faults.spike_rate) else 0.0)
    if delay:
        await anyio.sleep(delay / 1000)
    if faults.down:
        stats.injected_errors += 1
        return raw, error(503, "Injected fault: the engine is down")
    for status, rate in faults.error_rates.items():
        if state.roll(rate):
            stats.injected_errors += 1
            headers = {"retry-after": str(faults.retry_after_s)} if status == 429 else None
            return raw, error(status, f"Injected fault: status {status}", headers=headers)
    return raw, None


def _account(state: SimState, sequence: SimRequest) -> None:
    state.stats.completed += 1
    state.stats.prompt_tokens += sequence.prompt_tokens
    state.stats.generation_tokens += sequence.generated


async def run_to_completion(state: SimState, sequence: SimRequest) -> None:
    """Wait until the engine has generated every token of ``sequence``.

    Raises:
        SimRequestError: 503 when the replica goes down meanwhile.
    """
    try:
        while not sequence.done:
            await sequence.progress.wait()
            sequence.progress.clear()
            if state.config.faults.down:
                raise SimRequestError("Injected fault: the engine is down", status=503)
    finally:
        if not sequence.done:
            state.engine.abort(sequence)
            state.stats.cancelled += 1
    _account(state, sequence)


async def stream_tokens(
    state: SimState, sequence: SimRequest, render: Callable[[int, int], list[bytes]]
) -> AsyncIterator[bytes]:
    """Yield ``render(start, end)`` chunks as the engine produces tokens ``start:end``.

    Applies the stream faults (stall, drop, down). A client that goes away aborts the sequence
    in the engine, freeing its batch slot and KV blocks.
    """
    faults = state.config.faults
    drop_after = faults.drop_stream_after
    if not drop_after and state.roll(faults.drop_rate):
        drop_after = max(sequence.output_tokens // 2, 1)
    stall_at = sequence.output_tokens // 2 if state.roll(faults.stall_rate) else -1
    sent = chunks = 0
    try:
        while True:
            await sequence.progress.wait()
            sequence.progress.clear()
            if faults.down:
                raise StreamDroppedError("the engine went down")
            end = sequence.generated
            for chunk in render(sent, end):
                if drop_after and chunks >= drop_after:
                    state.stats.injected_errors += 1
                    raise StreamDroppedError(f"dropped after {chunks} chunks")
                chunks += 1
                yield chunk
            if sent <= stall_at < end:
                await anyio.sleep(faults.stall_ms / 1000)
            sent = end
            if sequence.done:
                break
    finally:
        if not sequence.done:
            state.engine.abort(sequence)
            state.stats.cancelled += 1
    _account(state, sequence)


def sse(obj: Any) -> bytes:
    """One ``data:`` event."""
    return b"data: " + _json.encode(obj) + b"\n\n"
