"""The built-in guardrails, built through the plugin registry and run through a real chain."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from gateway_guardrails.pii_redact import PiiRedactGuardrail
from gateway_guardrails.redaction import Redactor, StreamRedactor, luhn_valid
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GuardrailBlockedError
from gateway.guardrails.base import Guardrail, GuardrailAction
from gateway.guardrails.chain import GuardrailChain
from gateway.plugins import collect_registries, make_plugin_manager
from tests.unit.guardrails.support import chunk, collect, contents, context, pieces, sse

pytestmark = pytest.mark.anyio

REGISTRY = collect_registries(make_plugin_manager()).guardrails


def build(kind: str, **options: Any) -> Guardrail:
    factory = REGISTRY.get(kind)
    assert factory is not None, kind
    guardrail = factory(**options)
    assert isinstance(guardrail, Guardrail)
    return guardrail


def pii(**options: Any) -> PiiRedactGuardrail:
    guardrail = build("pii_redact", **options)
    assert isinstance(guardrail, PiiRedactGuardrail)
    return guardrail


def chat(*contents: Any) -> dict[str, Any]:
    roles = ["system", "user", "assistant"]
    return {
        "model": "m",
        "messages": [{"role": roles[i % 3], "content": c} for i, c in enumerate(contents)],
    }


def completion(*texts: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
    }


def test_the_plugin_registers_the_three() -> None:
    assert {"max_input_chars", "regex_block", "pii_redact"} <= set(REGISTRY.names())
    assert REGISTRY.owner("pii_redact") == "guardrails"


@pytest.mark.parametrize(
    ("kind", "options", "option"),
    [
        ("max_input_chars", {"max_chars": 0}, "max_chars"),
        ("max_input_chars", {"max_chars": True}, "max_chars"),
        ("max_input_chars", {"max_chars": "10"}, "max_chars"),
        ("regex_block", {"patterns": ["ok", "(unclosed"]}, "(unclosed"),
        ("regex_block", {"patterns": []}, "patterns"),
        ("regex_block", {"patterns": ["x"], "where": "sideways"}, "where"),
        ("regex_block", {"patterns": ["x"], "message": 3}, "message"),
        ("pii_redact", {"kinds": ["email", "ssn"]}, "kinds"),
        ("pii_redact", {"kinds": [], "patterns": {}}, "nothing to redact"),
        ("pii_redact", {"patterns": {"id": "[bad"}}, "patterns.id"),
        ("pii_redact", {"patterns": {"any": "x*"}}, "patterns.any"),
        ("pii_redact", {"replacement": "<{kind}>"}, "replacement"),
        ("pii_redact", {"replacement": "<{label.x}>"}, "replacement"),
        ("pii_redact", {"replacement": 7}, "replacement"),
        ("pii_redact", {"where": "nowhere"}, "where"),
        ("pii_redact", {"stream_window": 0}, "stream_window"),
    ],
)
def test_bad_options_name_the_option(kind: str, options: dict[str, Any], option: str) -> None:
    with pytest.raises(ValueError, match=option.replace("(", r"\(").replace("[", r"\[")):
        build(kind, **options)


# --- max_input_chars ---------------------------------------------------------------------------


async def test_max_input_chars_counts_every_role_and_text_part() -> None:
    chain = GuardrailChain([("size", build("max_input_chars", max_chars=10))])
    parts = [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": {"url": "x" * 99}}]
    at_limit = chat("1234", parts, "567")  # 4 + 3 + 3: the image's URL is not text
    assert await chain.check_request(context(at_limit)) is None
    with pytest.raises(GuardrailBlockedError, match="`size`: the messages hold 11 characters"):
        await chain.check_request(context(chat("1234", parts, "5678")))
    assert await chain.check_response(context(), b'{"choices": []}') == b'{"choices": []}'


# --- regex_block -------------------------------------------------------------------------------


async def test_regex_block_on_requests_and_responses() -> None:
    both = GuardrailChain([("words", build("regex_block", patterns=[r"\bsecret\b", "k[e3]y"]))])
    with pytest.raises(GuardrailBlockedError, match="`words`: the request matches"):
        await both.check_request(context(chat("hi", [{"type": "text", "text": "my k3y"}])))
    assert await both.check_request(context(chat("secrets are fine"))) is None
    body = json.dumps(completion("fine", "the secret is out")).encode()
    with pytest.raises(GuardrailBlockedError, match="`words`: the response matches"):
        await both.check_response(context(), body)

    responses_only = GuardrailChain(
        [("r", build("regex_block", patterns=["secret"], where="response", message="nope"))]
    )
    assert await responses_only.check_request(context(chat("secret"))) is None
    with pytest.raises(GuardrailBlockedError, match="Blocked by guardrail `r`: nope"):
        await responses_only.check_response(context(), body)
    requests_only = GuardrailChain([("q", build("regex_block", patterns=["x"], where="request"))])
    assert await requests_only.check_response(context(), body) is body


async def test_regex_block_catches_a_match_split_over_chunks() -> None:
    chain = GuardrailChain([("words", build("regex_block", patterns=["forbidden word"]))])
    stream = sse(
        [chunk("a forb"), chunk("idden"), chunk(" wo"), chunk("rd!"), chunk(finish="stop")]
    )
    forwarded: list[bytes] = []
    closed = [False]
    with pytest.raises(GuardrailBlockedError, match="`words`: the response matches"):
        await collect(
            chain.filter_stream(context(), pieces(stream, range(0, len(stream), 10), closed)),
            forwarded,
        )
    # Everything before the completing chunk went on; that chunk and the rest did not.
    assert contents(b"".join(forwarded)) == ["a forb", "idden", " wo"]
    assert closed[0]


async def test_regex_block_keeps_choices_apart() -> None:
    chain = GuardrailChain([("words", build("regex_block", patterns=["ab"]))])
    stream = sse([chunk("a", index=0), chunk("a", index=1), chunk("b", index=1)])
    with pytest.raises(GuardrailBlockedError):
        await collect(chain.filter_stream(context(), pieces(stream, [])))
    interleaved = sse([chunk("a", index=0), chunk("x", index=1), chunk("b", index=1)])
    assert await collect(chain.filter_stream(context(), pieces(interleaved, []))) == interleaved


# --- pii_redact: what it finds -----------------------------------------------------------------

PII = pii()
REDACT = PII.redactor.redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail john.doe+x@mail.example.co.uk.", "mail [REDACTED:email]."),
        ("card 4111 1111 1111 1111 exp 2027", "card [REDACTED:card] exp 2027"),
        ("card 4111-1111-1111-1111", "card [REDACTED:card]"),
        ("amex 378282246310005!", "amex [REDACTED:card]!"),
        ("4111 1111 1111 1111 2024", "[REDACTED:card] 2024"),
        ("call +1 555 123 4567 now", "call [REDACTED:phone] now"),
        ("(555) 123-4567", "[REDACTED:phone]"),
        ("555-123-4567 or 555.987.6543", "[REDACTED:phone] or [REDACTED:phone]"),
        ("London +44 20 7946 0958", "London [REDACTED:phone]"),
        ("+1 (555) 123-4567", "[REDACTED:phone]"),
        ("+15551234567", "[REDACTED:phone]"),
    ],
)
def test_pii_found(text: str, expected: str) -> None:
    assert REDACT(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "In 2024, pi was 3.14159 and order 12345 shipped on 2024-01-15.",
        "card 4111 1111 1111 1112",  # fails Luhn
        "id 1701432000000 and 0000000000000",  # 13 digits, but no card network starts so
        "versions 1.2.3, port 8080, +5 points, 12:30, 50%, $1,299.99",
        "email me at john at example dot com, or @handle",
        "call 555-1234",  # too short for a phone
        "from 2019-2024, hosts 192.168.1.1 and 10.0.0.255, 1999-2000-2001",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert REDACT(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert luhn_valid("5555555555554444")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("378282246310006")


def test_kinds_patterns_and_replacement() -> None:
    only_email = pii(kinds=["email"], replacement="<{label}>")
    text = "a@b.io 4111 1111 1111 1111 EMP-1234"
    assert only_email.redactor.redact(text) == "<email> 4111 1111 1111 1111 EMP-1234"
    custom = pii(kinds=[], patterns={"employee": r"EMP-\d{4}"})
    assert custom.redactor.redact(text) == "a@b.io 4111 1111 1111 1111 [REDACTED:employee]"


# --- pii_redact: requests and responses --------------------------------------------------------


async def test_pii_rewrites_requests_so_it_never_reaches_a_model() -> None:
    chain = GuardrailChain([("pii", PII)])
    body = chat("system: a@b.io", [{"type": "text", "text": "card 4111111111111111"}], "ok")
    original = copy.deepcopy(body)
    rewritten = await chain.check_request(context(body))
    assert rewritten is not None
    assert [m["content"] for m in rewritten["messages"]] == [
        "system: [REDACTED:email]",
        [{"type": "text", "text": "card [REDACTED:card]"}],
        "ok",
    ]
    assert body == original
    assert await chain.check_request(context(chat("nothing here"))) is None


async def test_pii_rewrites_responses_and_leaves_clean_ones_as_bytes() -> None:
    chain = GuardrailChain([("pii", PII)])
    dirty = json.dumps(completion("write to a@b.io", "none")).encode()
    out = json.loads(await chain.check_response(context(), dirty))
    assert [c["message"]["content"] for c in out["choices"]] == [
        "write to [REDACTED:email]",
        "none",
    ]
    clean = json.dumps(completion("nothing")).encode()
    assert await chain.check_response(context(), clean) is clean
    requests_only = GuardrailChain([("pii", pii(where="request"))])
    assert await requests_only.check_response(context(), dirty) is dirty


async def test_rewrite_then_block_in_order() -> None:
    # The block sees the redacted text: the address it looks for is gone.
    redact_first = GuardrailChain(
        [("pii", PII), ("no-mail", build("regex_block", patterns=["a@b"]))]
    )
    assert await redact_first.check_request(context(chat("a@b.io"))) is not None
    block_first = GuardrailChain(
        [("no-mail", build("regex_block", patterns=["a@b"])), ("pii", PII)]
    )
    with pytest.raises(GuardrailBlockedError, match="no-mail"):
        await block_first.check_request(context(chat("a@b.io")))


# --- pii_redact: streams -----------------------------------------------------------------------

SAMPLE = (
    "Hi john.doe@example.com, call +1 555 123 4567 or (555) 123-4567; "
    "card 4111 1111 1111 1111, not 4111 1111 1111 1112. In 2024 order 12345 cost 3.14159."
)
# A long run of digits and spaces: the hold-back is a window there, not a stop, so a cut can
# fall inside a card number.
NUMBERS = "refs 10 20 30 40 50 60 70 80 90 4111 1111 1111 1111 (555) 123-4567 77 88 99 100 200"
SECRETS = ["john.doe@example.com", "555 123 4567", "123-4567", "4111 1111 1111 1111"]


def stream_redact(pieces_: list[str], redactor: Redactor = PII.redactor) -> str:
    stream = StreamRedactor(redactor)
    return "".join(stream.feed(p) for p in pieces_) + stream.finish()


@pytest.mark.parametrize("sample", [SAMPLE, NUMBERS])
def test_stream_redaction_at_every_split_point(sample: str) -> None:
    whole = REDACT(sample)
    assert not any(s in whole for s in SECRETS)
    assert whole.count("[REDACTED:") == (4 if sample is SAMPLE else 2)
    for cut in range(len(sample) + 1):
        assert stream_redact([sample[:cut], sample[cut:]]) == whole, cut
        for second in range(cut, len(sample) + 1, 7):
            parts = [sample[:cut], sample[cut:second], sample[second:]]
            assert stream_redact(parts) == whole, (cut, second)
    assert stream_redact(list(sample)) == whole


def test_stream_emits_nothing_unredacted_at_any_moment() -> None:
    # What has been emitted after each piece is a prefix of the final redaction.
    whole = REDACT(SAMPLE)
    stream = StreamRedactor(PII.redactor)
    emitted = ""
    for char in SAMPLE:
        emitted += stream.feed(char)
        assert whole.startswith(emitted)
    assert emitted + stream.finish() == whole


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(SAMPLE)), max_size=12))
def test_stream_redaction_any_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(SAMPLE)]
    parts = [SAMPLE[a:b] for a, b in itertools.pairwise(bounds)]
    assert stream_redact(parts) == REDACT(SAMPLE)


def test_stream_redaction_with_custom_patterns() -> None:
    custom = pii(patterns={"ticket": r"TICKET-[0-9]{3,8}"}, stream_window=20)
    text = "see TICKET-1234567 and a@b.io plus TICKET-12"
    whole = custom.redactor.redact(text)
    assert whole == "see [REDACTED:ticket] and [REDACTED:email] plus TICKET-12"
    for cut in range(len(text) + 1):
        assert stream_redact([text[:cut], text[cut:]], custom.redactor) == whole


async def test_pii_stream_through_the_chain() -> None:
    """The held tail is flushed on the finish chunk; nothing is lost or repeated; usage-only
    chunks, comments and [DONE] pass; other guardrails see the redacted chunks."""
    words = ["Mail ", "jo", "hn@exa", "mple.com", " or call +1 555", " 123 45", "67 now."]
    events: list[Any] = [
        b": hi\n\n",
        {**chunk(), "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
    ]
    events += [chunk(w) for w in words]
    events += [
        chunk(finish="stop"),
        {"choices": [], "usage": {"total_tokens": 1}},
        b"data: [DONE]\n\n",
    ]
    data = sse(events)
    whole = REDACT("".join(words))
    assert whole == "Mail [REDACTED:email] or call [REDACTED:phone] now."
    for step in (1, 7, 50, len(data)):
        chain = GuardrailChain(
            [("pii", PII), ("leak", build("regex_block", patterns=["john", "4567"]))]
        )
        out = await collect(chain.filter_stream(context(), pieces(data, range(0, len(data), step))))
        assert out.startswith(b": hi\n\n")
        assert out.endswith(b"data: [DONE]\n\n")
        texts = contents(out)
        assert "".join(t or "" for t in texts) == whole
        assert (texts[-2] or "").endswith("now.")  # the finish chunk carries the tail
        assert texts[-1] is None  # the usage chunk


async def test_pii_stream_keeps_choices_apart_and_flushes_each() -> None:
    events = [
        chunk("a@b", index=0),
        chunk("x@y", index=1),
        chunk(".io", index=1),
        chunk(".io end", index=0),
        chunk(finish="stop", index=1),
        chunk(finish="stop", index=0),
    ]
    out = await collect(
        GuardrailChain([("pii", PII)]).filter_stream(context(), pieces(sse(events), []))
    )
    by_choice: dict[int, str] = {0: "", 1: ""}
    for line in out.split(b"\n\n"):
        if line:
            choice = json.loads(line.removeprefix(b"data: "))["choices"][0]
            by_choice[choice["index"]] += choice["delta"].get("content", "")
    assert by_choice == {0: "[REDACTED:email] end", 1: "[REDACTED:email]"}


async def test_pii_on_requests_only_leaves_streams_alone() -> None:
    chain = GuardrailChain([("pii", pii(where="request"))])
    data = sse([chunk("a@b.io"), chunk(finish="stop")])
    assert await collect(chain.filter_stream(context(), pieces(data, [3]))) == data


async def test_a_chunk_without_content_is_allowed_untouched() -> None:
    ctx = context()
    verdict = await PII.check_chunk(
        ctx, {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    )
    assert verdict.action is GuardrailAction.ALLOW
    assert (await PII.check_chunk(ctx, {"choices": []})).action is GuardrailAction.ALLOW
