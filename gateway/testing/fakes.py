"""A fake upstream for plugin authors' tests: :class:`FakeProvider`.

It speaks the Provider contract in OpenAI's wire format without a network: it answers chat,
completions and embeddings requests (plainly or streamed) from a script, records every request,
fails on demand with the gateway's own upstream errors, and reports itself healthy or not.
Its methods may be called from the test's thread while the gateway's loop serves requests.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec

from gateway.errors import GatewayError, UpstreamConnectError
from gateway.hookspecs import RegisterProvider, hookimpl
from gateway.providers.base import (
    BackendSpec,
    Endpoint,
    ProviderContext,
    UpstreamRequest,
    UpstreamResponse,
)

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()
KNOWN_OPTIONS = ("reply",)


class FakeProvider:
    """A scripted :class:`gateway.providers.Provider` (and ``HealthChecked``).

    Options (the backend's ``options:``): ``reply``, the answer when none is queued (``ok``).

    Attributes:
        spec: the backend it serves.
        requests: every request it received, in order.
        healthy: what :meth:`health` answers.
    """

    def __init__(self, spec: BackendSpec, context: ProviderContext) -> None:
        unknown = set(spec.options) - set(KNOWN_OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; known: {list(KNOWN_OPTIONS)}")
        self.spec = spec
        self.requests: list[UpstreamRequest] = []
        self.healthy = True
        self._default_reply = str(spec.options.get("reply", "ok"))
        self._replies: deque[str] = deque()
        self._failures: deque[GatewayError] = deque()
        self._ids = itertools.count(1)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of :attr:`requests`, decoded."""
        return [_decode.decode(r.body) for r in self.requests]

    def queue_replies(self, *texts: str) -> None:
        """Answer the next requests with ``texts``, one each, before the default reply."""
        self._replies.extend(texts)

    def fail_next(self, error: GatewayError | None = None, times: int = 1) -> None:
        """Fail the next ``times`` requests with ``error`` (default: a refused connection,
        :class:`~gateway.errors.UpstreamConnectError`, which the gateway retries elsewhere)."""
        self._failures.extend([error or UpstreamConnectError("fake upstream refused")] * times)

    async def health(self) -> bool:
        """:attr:`healthy`."""
        return self.healthy

    def _head(self) -> dict[str, Any]:
        created = int(time.time())
        return {"id": f"fake-{next(self._ids)}", "created": created, "model": self.spec.model}

    def _take(self, request: UpstreamRequest) -> str:
        self.requests.append(request)
        if self._failures:
            raise self._failures.popleft()
        return self._replies.popleft() if self._replies else self._default_reply

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        text = self._take(request)
        body = _decode.decode(request.body)
        usage = _usage(request.body, text)
        head = {
            "id": f"fake-{next(self._ids)}",
            "created": int(time.time()),
            "model": self.spec.model,
        }
        if request.endpoint == Endpoint.EMBEDDINGS:
            inputs = body.get("input")
            count = len(inputs) if isinstance(inputs, list) else 1
            data = [
                {"object": "embedding", "index": i, "embedding": [0.0] * 4} for i in range(count)
            ]
            answer: dict[str, Any] = {"object": "list", "data": data, "model": self.spec.model}
            answer["usage"] = {
                "prompt_tokens": usage["prompt_tokens"],
                "total_tokens": usage["prompt_tokens"],
            }
        elif request.endpoint == Endpoint.COMPLETIONS:
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            answer = {**head, "object": "text_completion", "choices": [choice], "usage": usage}
        else:
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            answer = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        return UpstreamResponse(200, _json.encode(answer))

    async def open_stream(self, request: UpstreamRequest) -> FakeStream:
        text = self._take(request)
        body = _decode.decode(request.body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {
            "id": f"fake-{next(self._ids)}",
            "created": int(time.time()),
            "model": self.spec.model,
        }
        words = text.split(" ")
        pieces = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
        events: list[dict[str, Any]] = []
        if request.endpoint == Endpoint.COMPLETIONS:
            kind = "text_completion"
            events += [{"index": 0, "text": p, "finish_reason": None} for p in pieces]
            events.append({"index": 0, "text": "", "finish_reason": "stop"})
        else:
            kind = "chat.completion.chunk"
            events.append({"index": 0, "delta": {"role": "assistant", "content": ""}})
            events += [{"index": 0, "delta": {"content": p}, "finish_reason": None} for p in pieces]
            events.append({"index": 0, "delta": {}, "finish_reason": "stop"})
        chunks = [{**head, "object": kind, "choices": [choice]} for choice in events]
        if include_usage:
            chunks.append(
                {**head, "object": kind, "choices": [], "usage": _usage(request.body, text)}
            )
        return FakeStream(_json.encode(c) for c in chunks)


def _usage(prompt: bytes, text: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = max(len(prompt) // 4, 1), len(text.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class FakeStream:
    """A :class:`FakeProvider`'s stream: SSE events, then ``[DONE]``.

    Attributes:
        closed: whether the gateway closed it (early, when the client went away).
    """

    def __init__(self, events: Iterable[bytes]) -> None:
        self._events = [b"data: " + e + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            if self.closed:
                return
            yield event

    async def aclose(self) -> None:
        self.closed = True


class FakeProviders:
    """A plugin registering the provider type ``fake``, which remembers what it built.

    ``gateway.testing.plugin_manager`` registers one; look providers up by backend name.
    """

    def __init__(self) -> None:
        self._built: dict[str, FakeProvider] = {}

    @hookimpl
    def register_providers(self, register: RegisterProvider) -> None:
        """Register ``fake``."""
        register("fake", self.build)

    def build(self, spec: BackendSpec, context: ProviderContext) -> FakeProvider:
        """The provider factory: a :class:`FakeProvider` for ``spec``, remembered by name."""
        provider = FakeProvider(spec, context)
        self._built[spec.name] = provider
        return provider

    def __getitem__(self, backend: str) -> FakeProvider:
        """The fake provider of backend ``backend``.

        Raises:
            KeyError: no ``fake`` backend of that name was built.
        """
        return self._built[backend]
