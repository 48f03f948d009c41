"""GuardrailChain: order, first block wins, rewrites handed on, bytes untouched unless rewritten,
and streams framed from arbitrary byte chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from gateway.errors import GuardrailBlockedError, InvalidRequestError
from gateway.guardrails.base import Guardrail, GuardrailContext, GuardrailVerdict
from gateway.guardrails.chain import GuardrailChain
from tests.unit.guardrails.support import chunk, collect, context, pieces, sse

pytestmark = pytest.mark.anyio


class Probe:
    """A guardrail that records what it saw and answers a fixed verdict per check.

    ``rewrite`` maps a seen body/chunk to its replacement (None: allow); ``block`` blocks when
    it returns a message.
    """

    def __init__(self, name: str, seen: list[tuple[str, Any]], **behaviour: Any) -> None:
        self.name = name
        self.seen = seen
        self.rewrite = behaviour.get("rewrite")
        self.block = behaviour.get("block")

    def _verdict(self, what: Mapping[str, Any]) -> GuardrailVerdict:
        self.seen.append((self.name, what))
        if self.block is not None and (message := self.block(what)):
            return GuardrailVerdict.block(message)
        if self.rewrite is not None and (replacement := self.rewrite(what)) is not None:
            return GuardrailVerdict.rewrite(replacement)
        return GuardrailVerdict.allow()

    async def check_request(self, context: GuardrailContext) -> GuardrailVerdict:
        return self._verdict(context.body)

    async def check_response(
        self, context: GuardrailContext, body: Mapping[str, Any]
    ) -> GuardrailVerdict:
        return self._verdict(body)

    async def check_chunk(
        self, context: GuardrailContext, chunk: Mapping[str, Any]
    ) -> GuardrailVerdict:
        context.state[self.name] = context.state.get(self.name, 0) + 1
        return self._verdict(chunk)


def test_probe_is_a_guardrail() -> None:
    assert isinstance(Probe("a", []), Guardrail)


async def test_request_rewrites_go_to_the_next_guardrail_and_the_caller() -> None:
    seen: list[tuple[str, Any]] = []
    chain = GuardrailChain(
        [
            ("first", Probe("first", seen, rewrite=lambda b: {**b, "n": 1})),
            ("second", Probe("second", seen)),
            ("third", Probe("third", seen, rewrite=lambda b: {**b, "n": b["n"] + 1})),
        ]
    )
    ctx = context({"model": "m", "messages": []})
    assert await chain.check_request(ctx) == {"model": "m", "messages": [], "n": 2}
    assert [(name, body.get("n")) for name, body in seen] == [
        ("first", None),
        ("second", 1),
        ("third", 1),
    ]
    assert ctx.body == {"model": "m", "messages": []}  # the caller's context is left alone


async def test_unchanged_request_returns_none() -> None:
    seen: list[tuple[str, Any]] = []
    chain = GuardrailChain([("a", Probe("a", seen)), ("b", Probe("b", seen))])
    assert await chain.check_request(context()) is None
    assert [name for name, _ in seen] == ["a", "b"]


async def test_first_block_wins_and_later_guardrails_do_not_run() -> None:
    seen: list[tuple[str, Any]] = []
    chain = GuardrailChain(
        [
            ("ok", Probe("ok", seen)),
            ("no-1", Probe("no-1", seen, block=lambda _: "first reason")),
            ("no-2", Probe("no-2", seen, block=lambda _: "second reason")),
        ]
    )
    with pytest.raises(GuardrailBlockedError) as caught:
        await chain.check_request(context())
    error = caught.value
    assert isinstance(error, InvalidRequestError)
    assert (error.status, error.code, error.guardrail) == (400, "guardrail_blocked", "no-1")
    assert error.message == "Blocked by guardrail `no-1`: first reason"
    assert json.loads(error.to_json())["error"] == {
        "message": "Blocked by guardrail `no-1`: first reason",
        "type": "invalid_request_error",
        "param": None,
        "code": "guardrail_blocked",
    }
    assert [name for name, _ in seen] == ["ok", "no-1"]


async def test_response_bytes_pass_untouched_unless_rewritten() -> None:
    # Spacing a re-encode would not keep: the same object must come back.
    body = b'{"id": "x",  "choices": [{"index": 0, "message": {"content": "hi"}}]}'
    seen: list[tuple[str, Any]] = []
    allow_all = GuardrailChain([("a", Probe("a", seen)), ("b", Probe("b", seen))])
    assert await allow_all.check_response(context(), body) is body
    assert seen[0][1]["choices"][0]["message"]["content"] == "hi"

    rewriting = GuardrailChain(
        [
            ("up", Probe("up", seen, rewrite=lambda b: {**b, "id": b["id"].upper()})),
            ("again", Probe("again", seen, rewrite=lambda b: {**b, "id": b["id"] + "!"})),
        ]
    )
    out = await rewriting.check_response(context(), body)
    assert json.loads(out) == {**json.loads(body), "id": "X!"}


async def test_blocked_response_raises() -> None:
    chain = GuardrailChain([("stop", Probe("stop", [], block=lambda b: f"no {b['id']}"))])
    with pytest.raises(GuardrailBlockedError, match="Blocked by guardrail `stop`: no x"):
        await chain.check_response(context(), b'{"id": "x", "choices": []}')


STREAM = sse(
    [
        b": keep-alive\n\n",
        chunk("Hel"),
        chunk("lo"),
        b": another comment\n\n",
        chunk(finish="stop"),
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"total_tokens": 3},
        },
        b"data: [DONE]\n\n",
    ]
)


async def test_stream_untouched_at_every_split_point() -> None:
    for cut in range(len(STREAM) + 1):
        seen: list[tuple[str, Any]] = []
        chain = GuardrailChain([("a", Probe("a", seen))])
        ctx = context()
        assert await collect(chain.filter_stream(ctx, pieces(STREAM, [cut]))) == STREAM
        # Every chunk event (usage-only included) was checked; comments and [DONE] were not.
        assert len(seen) == ctx.state["a"] == 4
        assert seen[3][1]["choices"] == []


async def test_stream_byte_by_byte_and_merged() -> None:
    chain = GuardrailChain([("a", Probe("a", []))])
    one_by_one = await collect(chain.filter_stream(context(), pieces(STREAM, range(len(STREAM)))))
    assert one_by_one == STREAM
    assert await collect(chain.filter_stream(context(), pieces(STREAM, []))) == STREAM


async def test_stream_rewrites_are_re_encoded_in_order_and_handed_on() -> None:
    def shout(c: Mapping[str, Any]) -> dict[str, Any] | None:
        delta = c["choices"][0]["delta"] if c["choices"] else {}
        if "content" not in delta:
            return None
        return {
            **c,
            "choices": [{**c["choices"][0], "delta": {"content": delta["content"].upper()}}],
        }

    seen: list[tuple[str, Any]] = []
    chain = GuardrailChain(
        [("shout", Probe("shout", seen, rewrite=shout)), ("b", Probe("b", seen))]
    )
    out = await collect(chain.filter_stream(context(), pieces(STREAM, [7, 50, 51])))
    rewritten: list[dict[str, Any] | bytes] = [shout(chunk(t)) or {} for t in ("Hel", "lo")]
    # Rewritten events are re-encoded; the rest are the bytes that came in, in order.
    assert out == sse([b": keep-alive\n\n", *rewritten]) + STREAM[STREAM.index(b": another") :]
    handed_on = [c["choices"][0]["delta"] for name, c in seen if name == "b" and c["choices"]]
    assert handed_on == [{"content": "HEL"}, {"content": "LO"}, {}]


async def test_block_mid_stream_raises_and_closes_the_source() -> None:
    forwarded: list[bytes] = []
    closed = [False]
    chain = GuardrailChain(
        [("no-lo", Probe("no-lo", [], block=lambda c: "lo!" if "lo" in json.dumps(c) else None))]
    )
    with pytest.raises(GuardrailBlockedError, match="`no-lo`: lo!"):
        await collect(
            chain.filter_stream(context(), pieces(STREAM, range(0, len(STREAM), 9), closed)),
            forwarded,
        )
    assert b"Hel" in b"".join(forwarded)
    assert b'"lo"' not in b"".join(forwarded)
    assert closed[0]


async def test_closing_early_closes_the_source() -> None:
    closed = [False]
    chain = GuardrailChain([("a", Probe("a", []))])
    stream = chain.filter_stream(context(), pieces(STREAM, range(0, len(STREAM), 5), closed))
    assert await anext(stream)
    assert not closed[0]
    await stream.aclose()
    assert closed[0]


async def test_a_last_event_without_its_blank_line_is_still_checked() -> None:
    seen: list[tuple[str, Any]] = []
    chain = GuardrailChain([("a", Probe("a", seen, rewrite=lambda c: {**c, "id": "new"}))])
    data = sse([chunk("x")]).rstrip(b"\n")
    out = await collect(chain.filter_stream(context(), pieces(data, [3])))
    assert json.loads(out.removeprefix(b"data: "))["id"] == "new"
    assert len(seen) == 1


async def test_non_json_data_and_named_events_pass() -> None:
    data = b"event: ping\ndata: not json\n\n" + b"data: [1, 2]\n\n" + sse([chunk("a")])
    chain = GuardrailChain([("a", Probe("a", [], rewrite=lambda c: {**c, "id": "new"}))])

    async def source() -> AsyncIterator[bytes]:
        yield data

    out = await collect(chain.filter_stream(context(), source()))
    assert out.startswith(b"event: ping\ndata: not json\n\ndata: [1, 2]\n\n")
    assert json.loads(out.split(b"data: ")[-1])["id"] == "new"
