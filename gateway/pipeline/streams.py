"""The stream relay: forward an open upstream stream to the client as it comes.

Each upstream chunk goes out as soon as it arrives (converted to the client's format when the
backend speaks another); a failure after the first byte becomes an error event in the stream's
own format instead of a silent truncation; however the stream ends once it started (finished,
failed, client gone), the upstream is closed, the in-flight slot released and the request
accounted (before it starts, :meth:`Pipeline._stream` owns that cleanup).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio

from gateway.errors import GatewayError, status_of
from gateway.pipeline.context import RequestContext, StreamConverter
from gateway.pipeline.guarding import Guarding
from gateway.pipeline.telemetry import Account, InFlight, Telemetry, usage_in_stream_tail
from gateway.routing.dispatch import OpenStream


async def relay_stream(
    opened: OpenStream,
    ctx: RequestContext,
    converter: StreamConverter | None,
    telemetry: Telemetry,
    in_flight: InFlight,
    account: Account,
    guards: Guarding | None = None,
) -> AsyncGenerator[bytes, None]:
    """The client's stream of SSE bytes for ``opened`` (see the module docstring); ``guards``
    check (and may rewrite or block) the upstream's chunks before they are converted."""
    backend = opened.backend
    store = ctx.cache_store
    status = 499  # stays so if the client goes away first
    previous = last = b""
    first = True
    recorder = store.assembler() if store is not None else None
    try:
        chunks = opened.chunks()
        if guards is not None and guards.context is not None:
            chunks = guards.chain.filter_stream(guards.context, chunks)
        async for chunk in chunks:
            if first:
                first = False
                telemetry.first_token(ctx, backend)
            previous, last = last, chunk
            out = converter.feed(chunk) if converter else chunk
            if out:
                if recorder is not None:  # entries are kept in the client's format
                    recorder.feed(out)
                yield out
        if converter and (tail := converter.finish()):
            if recorder is not None:
                recorder.feed(tail)
            yield tail
        status = 200
        backend.health.on_success()
        if recorder is not None and store is not None and (done := recorder.result()):
            store.save(done)
    except GatewayError as exc:
        status = status_of(exc)
        backend.health.on_failure()
        if store is not None:
            store.release(exc)  # plain followers get the same error
        yield ctx.dialect.errors.event(exc)
    finally:
        if store is not None:
            store.release()  # no-op when the answer was stored
        with anyio.CancelScope(shield=True):
            await opened.aclose()
        in_flight.dec()
        telemetry.answered(ctx, backend.name, status)
        tail = previous + last
        if (trace := ctx.trace) is not None:
            trace.answered(tail)
        account(ctx, backend.name, status, usage_in_stream_tail(tail))
