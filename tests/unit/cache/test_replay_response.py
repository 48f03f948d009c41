"""A stored Responses API answer replayed as a stream: every event valid, the answer intact."""

from __future__ import annotations

import json

from gateway.cache.streams import ResponsesAssembler, replay_response
from gateway.sse import SSEParser
from gateway.translate.responses import chat_response_to_response
from tests.support.spec import validate

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}


def test_a_replayed_response_is_valid_and_reassembles_to_itself() -> None:
    response = chat_response_to_response(
        CHAT, {"model": "m", "input": "weather?"}, response_id="resp_abc", created_at=1
    )
    events = replay_response(json.dumps(response).encode())
    parsed = SSEParser().feed(b"".join(events))
    payloads = [json.loads(e.data) for e in parsed]
    for payload in payloads:
        validate("ResponseStreamEvent", payload)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    kinds = [p["type"] for p in payloads]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "response.function_call_arguments.done" in kinds
    text = "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta")
    assert text == "Let me look."
    assembler = ResponsesAssembler()
    for event in events:
        assembler.feed(event)
    assert assembler.complete
    assert json.loads(assembler.result() or b"{}") == response
